"""The store's database opened underneath the library, as an attacker with the file or
the database role would: SQLite through sqlite3, PostgreSQL through psycopg.

:func:`raw` gives a connection that takes the store's SQL (``?`` parameters, the table
``events``) on either backend; :func:`unguarded` also lifts the append-only triggers, as
an owner of the tables can, so that tests can edit and delete what was recorded.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

from approvalflow.store import postgres


class PgRaw:
    """A psycopg connection in autocommit mode that takes the store's statements."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, params: Any = ()) -> Any:
        # the events are stored in event_log (with their positions in feed) on PostgreSQL
        sql = re.sub(r"^(UPDATE|DELETE FROM|INSERT INTO) events\b", r"\1 event_log", sql.strip())
        return self.conn.execute(postgres.dialect(sql), tuple(params) or None)

    def executescript(self, script: str) -> None:
        for statement in filter(str.strip, script.split(";")):
            self.execute(statement)

    def commit(self) -> None:
        pass

    def close(self) -> None:
        self.conn.close()


def connect(url: str) -> Any:
    """A raw connection (sqlite3 in autocommit mode, or PgRaw) to the store at ``url``."""
    if postgres.is_database_url(url):
        return PgRaw(url)
    return sqlite3.connect(url, isolation_level=None)


@contextlib.contextmanager
def raw(url: str) -> Iterator[Any]:
    conn = connect(url)
    try:
        yield conn
    finally:
        conn.close()


_SQLITE_TRIGGERS = {
    "events_no_update": "BEFORE UPDATE ON events",
    "events_no_delete": "BEFORE DELETE ON events",
    "workflows_no_update": "BEFORE UPDATE ON workflows",
    "workflows_no_delete": "BEFORE DELETE ON workflows",
}


@contextlib.contextmanager
def unguarded(url: str) -> Iterator[Any]:
    """A raw connection with the append-only triggers lifted (put back at the end)."""
    with raw(url) as conn:
        if isinstance(conn, PgRaw):
            conn.conn.execute("ALTER TABLE event_log DISABLE TRIGGER events_no_change")
            conn.conn.execute("ALTER TABLE workflows DISABLE TRIGGER workflows_no_change")
            try:
                yield conn
            finally:
                conn.conn.execute("ALTER TABLE event_log ENABLE TRIGGER events_no_change")
                conn.conn.execute("ALTER TABLE workflows ENABLE TRIGGER workflows_no_change")
            return
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                              "'trigger'")}
        lifted = [name for name in _SQLITE_TRIGGERS if name in present]
        for name in lifted:
            conn.execute(f"DROP TRIGGER {name}")
        try:
            yield conn
        finally:
            for name in lifted:
                table = "events" if name.startswith("events") else "workflows"
                conn.execute(f"CREATE TRIGGER {name} {_SQLITE_TRIGGERS[name]} BEGIN SELECT "
                             f"RAISE(ABORT, '{table} are append-only'); END")
