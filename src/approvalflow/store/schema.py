"""The database schema, its versions, and the migrations between them."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from .rows import utc_now
from .timers import migrate_5_to_6

if TYPE_CHECKING:
    import sqlite_utils

#: The schema this version writes. 1: events, cases, workflows tables with hash chain.
#: 2: a ``store_meta`` table recording when and by which approvalflow the file was
#: created or last migrated. 3: the ``workflows`` table is append-only (triggers), and a
#: case's creation commits to its workflow's text (``events.workflow_digest``, hashed).
#: 4: every event has a feed ``position`` (gap-free, in commit order, unique; not hashed)
#: and may record the person who acted (``events.by``, hashed when present).
#: 5: the projection tables (store/projections.py: ``case_awaiting``, ``case_due``,
#: ``case_data``, ``case_fields``, index ``cases_last_on``), filled from the log.
#: 6: a ``timers`` table (case, timed step, due date) kept with every event.
SCHEMA_VERSION = 6


def _migrate_0_to_1(db: sqlite_utils.Database) -> None:
    db.table("workflows").create({"name": str, "version": int, "digest": str, "source": str,
                            "stored_at": str}, pk=("name", "version"))
    db.table("events").create({
        "case_id": str, "seq": int, "kind": str, "trigger": str, "actor": str, "on_date": str,
        "recorded_at": str, "source": str, "target": str, "note": str, "data": str,
        "workflow": str, "workflow_version": int, "key": str, "prev_hash": str, "hash": str,
    }, pk=("case_id", "seq"), not_null={"kind", "trigger", "actor", "on_date", "recorded_at",
                                         "source", "target", "data", "workflow",
                                         "workflow_version", "prev_hash", "hash"})
    db.execute("CREATE UNIQUE INDEX events_key ON events (case_id, key) WHERE key IS NOT NULL")
    db.execute("CREATE INDEX events_on ON events (on_date)")
    db.table("cases").create({
        "case_id": str, "workflow": str, "workflow_version": int, "state": str, "seq": int,
        "last_on": str, "head_hash": str, "is_final": int, "created_at": str, "updated_at": str,
    }, pk="case_id", not_null={"workflow", "workflow_version", "state", "seq", "last_on",
                               "head_hash", "is_final", "created_at", "updated_at"})
    db.execute("CREATE INDEX cases_workflow ON cases (workflow)")
    for op in ("UPDATE", "DELETE"):
        db.execute(f"CREATE TRIGGER events_no_{op.lower()} BEFORE {op} ON events BEGIN "
                   f"SELECT RAISE(ABORT, 'events are append-only'); END")


def _migrate_1_to_2(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _migrate_2_to_3(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE events ADD COLUMN workflow_digest TEXT")
    for op in ("UPDATE", "DELETE"):
        db.execute(f"CREATE TRIGGER workflows_no_{op.lower()} BEFORE {op} ON workflows BEGIN "
                   f"SELECT RAISE(ABORT, 'workflows are append-only'); END")


def _migrate_3_to_4(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE events ADD COLUMN by TEXT")
    db.execute("ALTER TABLE events ADD COLUMN position INTEGER")
    # The events already stored get positions in the order they were inserted (their
    # rowids: one writer at a time, so that is the order they were committed in). The
    # append-only trigger is lifted for this one update, inside the migration's
    # transaction, and put back before it commits.
    db.execute("DROP TRIGGER events_no_update")
    rowids = [r[0] for r in db.execute("SELECT rowid FROM events ORDER BY rowid")]
    db.conn.executemany("UPDATE events SET position = ? WHERE rowid = ?",
                        [(n, rowid) for n, rowid in enumerate(rowids, start=1)])
    db.execute("CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN "
               "SELECT RAISE(ABORT, 'events are append-only'); END")
    db.execute("CREATE UNIQUE INDEX events_position ON events (position)")


def _migrate_4_to_5(db: sqlite_utils.Database) -> None:
    # The projections, all in this one function (other migrations may be numbered
    # around it): create the tables, then fill them by replaying every case.
    from .projections import create_tables, fill

    create_tables(db.conn)
    fill(db.conn)


#: migrations[n] brings a database from schema n to n + 1. Every pending migration runs
#: in one transaction, with the new user_version and the store_meta record.
MIGRATIONS = {0: _migrate_0_to_1, 1: _migrate_1_to_2, 2: _migrate_2_to_3,
              3: _migrate_3_to_4, 4: _migrate_4_to_5, 5: migrate_5_to_6}


def package_version() -> str:
    import importlib.metadata  # only when a file is created or migrated: ~7 ms at start-up

    try:
        return "approvalflow " + importlib.metadata.version("approvalflow")
    except importlib.metadata.PackageNotFoundError:
        return "approvalflow (version unknown)"


def record_meta(conn: sqlite3.Connection, *, created: bool, start: int) -> None:
    now, by = utc_now().isoformat(), package_version()
    rows = ({"created_at": now, "created_by": by} if created else
            {"migrated_at": now, "migrated_by": by, "migrated_from": str(start)})
    conn.executemany("INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)",
                     list(rows.items()))
