"""The store's database opened underneath the library, as an attacker with the file or
the database role would: SQLite through sqlite3, PostgreSQL through psycopg.

:func:`raw` gives a connection that takes the store's SQL (``?`` parameters, the table
``events``) on either backend; :func:`unguarded` also lifts the append-only triggers, as
an owner of the tables can, so that tests can edit and delete what was recorded.

An event's feed position is a column of ``events`` on SQLite and a row of ``feed`` on
PostgreSQL (``events`` is a view there): :func:`insert_event`, :func:`renumber` and
:func:`set_position` change an event and its position together, on either backend, as
someone who knows the format would.
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


def errors() -> tuple[type[Exception], ...]:
    """The exception classes of both drivers (what a refused raw statement raises)."""
    import psycopg

    return (sqlite3.Error, psycopg.Error)


def dicts(conn: Any, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    """The rows of a query as dicts by column name, on either backend."""
    cursor = conn.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def insert_event(conn: Any, row: dict[str, Any]) -> None:
    """Insert a forged event row; its ``position`` (if any) goes where the backend keeps it."""
    if isinstance(conn, PgRaw):
        fields = {k: v for k, v in row.items() if k != "position"}
        conn.execute(f"INSERT INTO event_log ({', '.join(fields)}) VALUES "
                     f"({', '.join('?' * len(fields))})", list(fields.values()))
        if row.get("position") is not None:  # numbered at once, not left pending
            conn.execute("DELETE FROM feed_pending WHERE case_id = ? AND seq = ?",
                         (row["case_id"], row["seq"]))
            conn.execute("INSERT INTO feed (position, case_id, seq) VALUES (?, ?, ?)",
                         (row["position"], row["case_id"], row["seq"]))
        return
    conn.execute(f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                 list(row.values()))


def renumber(conn: Any, case_id: str, seq: int, new_seq: int) -> None:
    """Give event ``seq`` of a case the sequence number ``new_seq`` (keeping its position)."""
    conn.execute("UPDATE events SET seq = ? WHERE case_id = ? AND seq = ?",
                 (new_seq, case_id, seq))
    if isinstance(conn, PgRaw):
        conn.execute("UPDATE feed SET seq = ? WHERE case_id = ? AND seq = ?",
                     (new_seq, case_id, seq))


def set_position(conn: Any, case_id: str, seq: int, position: int) -> None:
    """Give an event another feed position (the unique key on positions, which refuses a
    repeated one, is dropped first, as the tables' owner can)."""
    if isinstance(conn, PgRaw):
        conn.execute("ALTER TABLE feed DROP CONSTRAINT IF EXISTS feed_pkey")
        conn.execute("UPDATE feed SET position = ? WHERE case_id = ? AND seq = ?",
                     (position, case_id, seq))
        return
    conn.execute("DROP INDEX IF EXISTS events_position")
    conn.execute("UPDATE events SET position = ? WHERE case_id = ? AND seq = ?",
                 (position, case_id, seq))


def connect(url: str) -> Any:
    """A raw connection (sqlite3 in autocommit mode, or PgRaw) to the store at ``url``."""
    if postgres.is_database_url(url):
        return PgRaw(url)
    return sqlite3.connect(url, isolation_level=None)


def dump(url: str) -> list[str]:
    """Everything the store holds, as lines to compare before and after: SQLite's own
    dump of the file; on PostgreSQL, every row of every table in the store's schema, and
    the triggers that guard them."""
    with raw(url) as conn:
        if not isinstance(conn, PgRaw):
            return list(conn.iterdump())
        lines = [f"trigger {name} on {table}: {enabled}" for name, table, enabled in
                 conn.execute("SELECT t.tgname, c.relname, t.tgenabled FROM pg_trigger t "
                              "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n "
                              "ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND "
                              "n.nspname = current_schema() ORDER BY 1")]
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE "
                                             "schemaname = current_schema() ORDER BY 1")]
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            lines.extend(sorted(f"{table}: {tuple(row)!r}" for row in rows))
        return lines


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
