"""The event log in one SQLite file: the connection, and everything in which SQLite
differs from PostgreSQL (store/postgres.py) below the store's shared SQL.

- :class:`SqliteConnection`: sqlite3's connection, refusing use from another thread or
  after close with a StoreError;
- :func:`connect`: WAL mode, the busy timeout, ``synchronous`` for the durability asked,
  ``max_page_count``; :func:`connect_readonly` for a read-only file or folder;
- :func:`user_version` (the schema version) and :func:`data_version` (what
  ``tail --follow`` polls).

One write is one ``BEGIN IMMEDIATE`` transaction: SQLite lets one writer at a time hold
the file, so the store's own statements need no locks; its schema and migrations are in
store/schema.py.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import StoreError

__all__ = ["SqliteConnection", "connect", "connect_readonly", "enable_wal", "user_version",
           "data_version", "foreign_database", "DURABILITY"]

DURABILITY = {"full": "FULL", "normal": "NORMAL"}

_WRONG_THREAD = ("This store was opened in another thread ({owner}); a store belongs to the "
                 "thread that opened it. Open one store per thread or per request "
                 "(approvalflow.open_store in each; they may share the file).")


_get_ident = threading.get_ident
_execute = sqlite3.Connection.execute
_executemany = sqlite3.Connection.executemany


class SqliteConnection(sqlite3.Connection):
    """sqlite3's connection, refusing use from another thread or after close with a
    StoreError (sqlite3 would raise ProgrammingError, and only for some calls)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = threading.get_ident()
        self._owner_name = threading.current_thread().name
        self._is_closed = False
        # the cursor run() and one() execute on (see there); its rows are tuples
        self._runner = sqlite3.Connection.cursor(self)
        self._runner.row_factory = None

    def check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise StoreError(_WRONG_THREAD.format(owner=repr(self._owner_name)))
        if self._is_closed:
            raise StoreError("The store is closed.")

    # execute and executemany run for every statement: the check is inlined, and the
    # base class named directly (super() costs a lookup per call)
    def execute(self, *args: Any) -> sqlite3.Cursor:
        if _get_ident() != self._owner or self._is_closed:
            self.check_thread()
        return _execute(self, *args)

    def run(self, sql: str, params: Any = ()) -> None:
        """``execute`` for a statement whose rows nobody reads (a write, BEGIN, COMMIT), on
        a cursor the connection keeps: ``execute`` makes a cursor per statement, and a
        step runs five such. A cursor that ran a statement without rows holds nothing
        open, so the next statement may reuse it."""
        if _get_ident() != self._owner or self._is_closed:
            self.check_thread()
        self._runner.execute(sql, params)

    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None:
        """The one row a query gives (a tuple), or None: read whole on the cursor
        :meth:`run` keeps, so that no statement is left open on it."""
        if _get_ident() != self._owner or self._is_closed:
            self.check_thread()
        rows = self._runner.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        if _get_ident() != self._owner or self._is_closed:
            self.check_thread()
        return _executemany(self, *args)

    def cursor(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self.check_thread()
        cursor: sqlite3.Cursor = super().cursor(*args, **kwargs)
        return cursor

    def backup(self, *args: Any, **kwargs: Any) -> None:
        self.check_thread()
        super().backup(*args, **kwargs)

    def close(self) -> None:
        self.check_thread()
        super().close()
        self._is_closed = True


def connect_readonly(path: str, timeout: float) -> SqliteConnection:
    """Open ``path`` read-only (SQLite's ``mode=ro``), so a read-only file or folder can be read.

    A WAL database read-only needs its ``-shm`` file, or a folder where SQLite may create
    it. In a read-only folder without a ``-wal`` file (the database was closed cleanly)
    nobody can write, so the file is opened as ``immutable``; with a ``-wal`` file and no
    ``-shm`` file the events in the ``-wal`` can't be read, and that is said.
    """
    uri = Path(path).absolute().as_uri()
    conn: SqliteConnection | None = None
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None,
                               timeout=timeout, check_same_thread=True, factory=SqliteConnection)
        conn.execute("PRAGMA user_version").fetchone()
        return conn
    except sqlite3.OperationalError as e:
        if conn is not None:
            conn.close()
        if "unable to open" not in str(e) and "readonly" not in str(e):
            raise
    folder = Path(path).absolute().parent
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise StoreError(f"Can't read {path!r}: permission denied (the file is not readable "
                         f"for this user).") from None
    if os.path.exists(path + "-wal") and not os.path.exists(path + "-shm"):
        raise StoreError(
            f"Can't read {path!r} read-only: its -wal file holds recent events, and SQLite "
            f"needs a -shm file beside it (or a writable folder) to read them. Copy the "
            f"database together with its -wal file to a writable folder, or open it where "
            f"it is from an account that may write to {str(folder)!r}.")
    conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None,
                           timeout=timeout, check_same_thread=True, factory=SqliteConnection)
    return conn


def connect(path: str, *, timeout: float, durability: str, readonly: bool,
            max_pages: int | None) -> SqliteConnection:
    """The store's connection to the file at ``path`` (or ``:memory:``), set up."""
    if readonly:
        conn = connect_readonly(path, timeout)
    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=timeout,
                               check_same_thread=True, factory=SqliteConnection)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if path != ":memory:" and not readonly:
            foreign = foreign_database(conn, path)
            if foreign:  # before WAL: switching would change another program's file
                raise StoreError(foreign)
            mode = enable_wal(conn, timeout)
            if mode.lower() != "wal":
                raise StoreError(f"Could not switch {path!r} to WAL mode (it is in {mode!r}).")
        if not readonly:
            conn.execute(f"PRAGMA synchronous = {DURABILITY[durability]}")
        if max_pages is not None:
            conn.execute(f"PRAGMA max_page_count = {max_pages}")
    except BaseException:
        conn.close()
        raise
    return conn


#: Tables every approvalflow database has had since its first schema version.
_OWN_TABLES = frozenset({"events", "cases", "workflows"})


def foreign_database(conn: sqlite3.Connection, path: str) -> str | None:
    """Why the SQLite file at ``path`` is another program's database (tables but no
    schema version, or a schema version this approvalflow wrote without its tables),
    else None. A newer schema version is left to the caller: its tables are unknown."""
    from .schema import SCHEMA_VERSION

    version = user_version(conn)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.discard("sqlite_sequence")
    if version == 0 and tables:
        return (f"{path!r} holds tables {sorted(tables)} but is not an approvalflow database; "
                f"use another file.")
    if 0 < version <= SCHEMA_VERSION and not tables >= _OWN_TABLES:
        return (f"{path!r} has schema version {version} but not approvalflow's tables "
                f"(it holds {sorted(tables)}): it is not an approvalflow database; use "
                f"another file.")
    return None


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version of the file (SQLite's ``user_version``)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def data_version(conn: sqlite3.Connection) -> int:
    """A number that changes when another connection commits."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def enable_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Switch to WAL and return the journal mode. SQLite answers "database is locked" at
    once, without its busy handler, while another process is switching the same new
    file; so retry here until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
