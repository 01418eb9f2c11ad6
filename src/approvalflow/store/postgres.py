"""The event log on PostgreSQL (psycopg 3): everything in which it differs from SQLite.

The store's logic (deciding, hashing, chaining, verify, projections, timers, migrations)
is the same code for both backends and is written in SQL that both understand. What
PostgreSQL needs otherwise lives here, and only here:

- **The connection** (:class:`PgConnection`) speaks the small part of Python's sqlite3
  interface the store uses (``execute``, ``executemany``, ``cursor``, ``in_transaction``,
  rows read by position or by name), in autocommit mode, so the store's explicit
  ``BEGIN`` / ``COMMIT`` mean the same on both. Statements are rewritten once each
  (:func:`dialect`): ``?`` parameters become ``%s``, a write transaction is a
  ``READ COMMITTED`` one whose case row is locked ``FOR UPDATE`` where SQLite holds the
  whole file, and a read snapshot (``BEGIN``) is ``REPEATABLE READ``.
- **The schema** (:data:`SCHEMA`), created at the current version in one transaction.
  ``event_log`` and ``workflows`` refuse UPDATE and DELETE by trigger. Every text
  column sorts by code point (``COLLATE "C"``), as SQLite does, so both backends list
  cases in the same order.
- **Feed positions.** A PostgreSQL sequence is neither gap-free nor in commit order,
  and a counter row taken inside each writing transaction would make every writer wait
  for the one before it to reach the disk (no group commit). So an event is written
  without a position: a trigger notes it in ``feed_pending``, and right after each
  commit the writer numbers every pending event (:func:`number_pending`), under an
  advisory lock, in one short transaction: the next positions after the highest, in
  the order the events were inserted. An event is numbered only once its transaction
  has committed, and numbering transactions run one at a time, so positions are
  gap-free and follow the order in which events became visible; a rolled-back write
  leaves nothing pending. A writer that dies between its commit and the numbering
  leaves its events pending for the next writer or feed reader, which numbers them; a
  numbering that can't take the lock within the timeout leaves them pending too, and
  never fails a write that has committed. ``verify`` counts a pending event as
  committed, not yet numbered (``feed_pending`` lists it), not as one without a position.
  The ``events`` view joins each event to its position (``NULL`` while pending), so
  every read is the same SQL as on SQLite.
"""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import InvalidInputError, StoreError
from .rows import register_database_errors

try:  # an optional extra: approvalflow[postgres]
    import psycopg
    import psycopg.errors
    import psycopg.pq
except ImportError:  # pragma: no cover - checked by is_available()
    psycopg = None  # type: ignore[assignment]

__all__ = ["is_database_url", "database_url", "PgConnection", "connect", "create_schema",
           "schema_version",
           "number_pending", "position_of", "own_pending", "lock_case", "lock_every_case",
           "SCHEMA", "redact"]

#: The schema version PostgreSQL stores are created at (the same tables as SQLite's 6).
PG_SCHEMA_VERSION = 6
#: The advisory lock keys: one for numbering the feed, one for creating the schema.
_FEED_LOCK = 0x6166_6565_6400  # "afeed"
_SCHEMA_LOCK = 0x6166_7363_6800  # "afsch"

_TEXT = 'TEXT COLLATE "C"'

#: The tables, as SQLite's schema 6 has them (store/schema.py, projections.py, timers.py).
SCHEMA = f"""
CREATE TABLE store_meta (key {_TEXT} PRIMARY KEY, value {_TEXT} NOT NULL);
CREATE TABLE workflows (name {_TEXT}, version BIGINT, digest {_TEXT}, source {_TEXT},
    stored_at {_TEXT}, PRIMARY KEY (name, version));
CREATE TABLE event_log (
    id BIGSERIAL UNIQUE,
    case_id {_TEXT} NOT NULL, seq BIGINT NOT NULL, kind {_TEXT} NOT NULL,
    trigger {_TEXT} NOT NULL, actor {_TEXT} NOT NULL, on_date {_TEXT} NOT NULL,
    recorded_at {_TEXT} NOT NULL, source {_TEXT} NOT NULL, target {_TEXT} NOT NULL,
    note {_TEXT}, data {_TEXT} NOT NULL, workflow {_TEXT} NOT NULL,
    workflow_version BIGINT NOT NULL, key {_TEXT}, prev_hash {_TEXT} NOT NULL,
    hash {_TEXT} NOT NULL, workflow_digest {_TEXT}, by {_TEXT},
    PRIMARY KEY (case_id, seq));
CREATE UNIQUE INDEX events_key ON event_log (case_id, key) WHERE key IS NOT NULL;
CREATE INDEX events_on ON event_log (on_date);
CREATE TABLE feed (position BIGINT PRIMARY KEY, case_id {_TEXT} NOT NULL,
    seq BIGINT NOT NULL, UNIQUE (case_id, seq));
CREATE TABLE feed_pending (id BIGINT PRIMARY KEY, case_id {_TEXT} NOT NULL,
    seq BIGINT NOT NULL);
CREATE VIEW events AS
    SELECT e.case_id, e.seq, e.kind, e.trigger, e.actor, e.on_date, e.recorded_at,
           e.source, e.target, e.note, e.data, e.workflow, e.workflow_version, e.key,
           e.prev_hash, e.hash, e.workflow_digest, e.by, f.position
    FROM event_log e LEFT JOIN feed f ON f.case_id = e.case_id AND f.seq = e.seq;
CREATE TABLE cases (case_id {_TEXT} PRIMARY KEY, workflow {_TEXT} NOT NULL,
    workflow_version BIGINT NOT NULL, state {_TEXT} NOT NULL, seq BIGINT NOT NULL,
    last_on {_TEXT} NOT NULL, head_hash {_TEXT} NOT NULL, is_final INTEGER NOT NULL,
    created_at {_TEXT} NOT NULL, updated_at {_TEXT} NOT NULL);
CREATE INDEX cases_workflow ON cases (workflow);
CREATE INDEX cases_last_on ON cases (last_on);
CREATE TABLE case_awaiting (actor {_TEXT} NOT NULL, case_id {_TEXT} NOT NULL,
    trigger {_TEXT} NOT NULL, guarded INTEGER NOT NULL, PRIMARY KEY (actor, case_id, trigger));
CREATE TABLE case_due (case_id {_TEXT} NOT NULL, n INTEGER NOT NULL, kind {_TEXT} NOT NULL,
    step {_TEXT} NOT NULL, label {_TEXT} NOT NULL, due {_TEXT} NOT NULL, fixed INTEGER NOT NULL,
    at_risk_from {_TEXT}, actors {_TEXT} NOT NULL, PRIMARY KEY (case_id, n));
CREATE INDEX case_due_due ON case_due (due);
CREATE TABLE case_data (case_id {_TEXT} PRIMARY KEY, data {_TEXT} NOT NULL);
CREATE TABLE case_fields (path {_TEXT} NOT NULL, value {_TEXT} NOT NULL,
    case_id {_TEXT} NOT NULL);
CREATE UNIQUE INDEX case_fields_key ON case_fields (md5(path), md5(value), case_id);
CREATE TABLE timers (case_id {_TEXT} NOT NULL, trigger {_TEXT} NOT NULL,
    due_on {_TEXT} NOT NULL, PRIMARY KEY (case_id, trigger));
CREATE INDEX timers_due ON timers (due_on);
CREATE FUNCTION approvalflow_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only', TG_ARGV[0];
END $$;
CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON event_log
    FOR EACH STATEMENT EXECUTE FUNCTION approvalflow_append_only('events');
CREATE TRIGGER workflows_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON workflows
    FOR EACH STATEMENT EXECUTE FUNCTION approvalflow_append_only('workflows');
CREATE FUNCTION approvalflow_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO feed_pending (id, case_id, seq) VALUES (NEW.id, NEW.case_id, NEW.seq);
    RETURN NULL;
END $$;
CREATE TRIGGER events_pending AFTER INSERT ON event_log
    FOR EACH ROW EXECUTE FUNCTION approvalflow_pending();
"""

#: Statements whose PostgreSQL form is not a plain rewrite of the parameters.
_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    # a write transaction: READ COMMITTED, with the case's row locked below (said
    # explicitly: a bare BEGIN would be taken for a read snapshot by the next rule)
    (re.compile(r"^BEGIN IMMEDIATE$"), "BEGIN ISOLATION LEVEL READ COMMITTED"),
    # a read snapshot (verify): one consistent view of every table
    (re.compile(r"^BEGIN$"), "BEGIN ISOLATION LEVEL REPEATABLE READ"),
    # the feed's highest position, read for the next event's: none here (numbered after
    # the commit), so the store leaves the event's position to the numbering
    (re.compile(r"\(SELECT COALESCE\(MAX\(position\), 0\) FROM events\)"), "NULL::bigint"),
    # the head check of a step: lock the case's row until the commit, so a second
    # writer of the same case waits, then sees the new head and is refused
    (re.compile(r"^(SELECT seq, head_hash\b[^;]* FROM cases WHERE case_id = \?\d*)$"),
     r"\1 FOR UPDATE"),
    # an event is inserted without its feed position (numbered after the commit): the
    # position's column and its value (a subquery, or the last parameter) are left out
    (re.compile(r"INSERT INTO events \((.*), position\) VALUES \((.*), \(SELECT COALESCE\("
                r"MAX\(position\), 0\) \+ 1 FROM events\)\)", re.S),
     r"INSERT INTO event_log (\1) VALUES (\2)"),
    (re.compile(r"INSERT INTO events \((.*), position\) VALUES \((.*), \?\d*\)$", re.S),
     r"INSERT INTO event_log (\1) VALUES (\2)"),
    (re.compile(r" RETURNING position$"), " RETURNING NULL::bigint AS position"),
    (re.compile(r" INDEXED BY \w+"), ""),
    # a list of ids passed as one JSON array
    (re.compile(r"SELECT value FROM json_each\((\?\d*)\)"),
     r"SELECT json_array_elements_text(\1::json)"),
    (re.compile(r"typeof\(position\) = 'integer'"), "position IS NOT NULL"),
    # a data field is looked up by the digests of its key path and value (the index holds
    # those: a B-tree entry can't hold text of more than about 2,700 bytes, and case data
    # may), then compared in full
    (re.compile(r"case_fields WHERE path = (\?\d+) AND value = (\?\d+)"),
     r"case_fields WHERE md5(path) = md5(\1) AND md5(value) = md5(\2) AND path = \1 "
     r"AND value = \2"),
)

_SQL: dict[str, tuple[str, tuple[int, ...]]] = {}
_PARAMETER = re.compile(r"\?(\d*)")


def _numbered(sql: str) -> str:
    """``sql`` with each parameter numbered as SQLite numbers them (``?`` is one more
    than the highest number before it; ``?N`` is parameter N)."""
    top = 0

    def number(match: re.Match[str]) -> str:
        nonlocal top
        n = int(match.group(1)) if match.group(1) else top + 1
        top = max(top, n)
        return f"?{n}"

    return _PARAMETER.sub(number, sql)


def statement(sql: str) -> tuple[str, tuple[int, ...]]:
    """The PostgreSQL form of one of the store's statements, and which of its parameters
    (by index) go to psycopg's ``%s`` in order (memoised). SQLite's numbered parameters
    (``?4``) become positional ones, and a rewrite may leave one out."""
    found = _SQL.get(sql)
    if found is None:
        text = _numbered(sql)
        for pattern, replacement in _REWRITES:
            text = pattern.sub(replacement, text)
        order = tuple(int(m.group(1)) - 1 for m in _PARAMETER.finditer(text))
        found = _SQL[sql] = (_PARAMETER.sub("%s", text.replace("%", "%%")), order)
    return found


def dialect(sql: str) -> str:
    """The PostgreSQL form of a statement whose parameters keep their order."""
    text, order = statement(sql)
    if order != tuple(range(len(order))):
        raise ValueError(f"{sql!r} reorders its parameters: use statement()")
    return text


def _arrange(order: tuple[int, ...], params: Sequence[Any]) -> tuple[Any, ...] | None:
    if not order:
        return None
    if len(order) == len(params) and order == tuple(range(len(order))):
        return tuple(params)
    return tuple(params[i] for i in order)


def is_available() -> bool:
    return psycopg is not None


_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(path: object) -> bool:
    """Whether ``path`` names a PostgreSQL server (``postgresql://`` or ``postgres://``,
    in any case: a URL's scheme is case-insensitive)."""
    return isinstance(path, str) and path[:len(_SCHEMES[0])].lower().startswith(_SCHEMES)


def database_url(url: str) -> str:
    """``url`` with its scheme in lower case, the only form libpq reads as a URL
    (``PostgreSQL://host/db`` is the same server as ``postgresql://host/db``)."""
    scheme, sep, rest = url.partition("://")
    return scheme.lower() + sep + rest


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL urllib can parse: hide whatever precedes an "@"
        return re.sub(r"//[^/@]*@", "//***@", url)
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _driver_says(error: BaseException, url: str) -> str:
    """The driver's message on one line (it spans several), without the URL's password
    (libpq quotes a URL it can't parse whole)."""
    return " ".join(str(error).replace(url, redact(url)).split())


# --------------------------------------------------------------------------- rows


class PgRow(tuple):  # type: ignore[type-arg]
    """A row read by position (a tuple) or by column name, as sqlite3.Row is."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


_ROW_CLASSES: dict[tuple[str, ...], type[PgRow]] = {}


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    names = tuple(c.name for c in description)
    cls = _ROW_CLASSES.get(names)
    if cls is None:
        cls = _ROW_CLASSES[names] = type("PgRow", (PgRow,), {
            "__slots__": (), "_index": {n: i for i, n in enumerate(names)}})
    return cls


#: A connection keeps up to this many psycopg cursors for reuse (a new cursor for every
#: statement cost about a third more CPU per statement), each only once it has given
#: every row it had, and only if that result was small (a kept cursor holds its last one).
_IDLE_CURSORS = 4
_KEEP_ROWS = 16


class PgCursor:
    """The part of sqlite3.Cursor the store uses."""

    def __init__(self, conn: PgConnection) -> None:
        conn.check_thread()  # before psycopg's cursor, which a closed connection refuses
        self._owner = conn
        self._cursor: Any = None  # taken for a statement, given back once it is read
        self._rowcount = -1
        self.row_factory: Any = None  # accepted and ignored: rows read by position work

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        self._owner.check_thread()
        cursor = self._cursor
        if cursor is None:
            cursor = self._cursor = self._owner._take_cursor()
        text, order = statement(sql)
        cursor.execute(text, _arrange(order, params), prepare=None)
        if cursor.description is None:
            self._give_back()  # no rows to read: only the row count is left
        return self

    def executemany(self, sql: str, params: Any) -> PgCursor:
        self._owner.check_thread()
        if self._cursor is None:
            self._cursor = self._owner._take_cursor()
        text, order = statement(sql)
        self._cursor.executemany(text, [_arrange(order, p) for p in params])
        return self

    def _give_back(self) -> None:
        cursor, self._cursor = self._cursor, None
        self._rowcount = int(cursor.rowcount)
        self._owner._give_back(cursor)

    def fetchone(self) -> Any:
        cursor = self._cursor
        if cursor is None or cursor.description is None:
            return None
        row = cursor.fetchone()
        if row is None or cursor.rownumber >= cursor.pgresult.ntuples:
            self._give_back()  # every row read: later calls return None, as psycopg's do
        return row

    def fetchall(self) -> list[Any]:
        cursor = self._cursor
        if cursor is None or cursor.description is None:
            return []
        rows: list[Any] = cursor.fetchall()
        self._give_back()
        return rows

    def __iter__(self) -> Iterator[Any]:
        cursor = self._cursor
        if cursor is None or cursor.description is None:
            return iter(())
        return self._rows(cursor)

    def _rows(self, cursor: Any) -> Iterator[Any]:
        yield from cursor
        if self._cursor is cursor:
            self._give_back()

    @property
    def rowcount(self) -> int:
        return self._rowcount if self._cursor is None else int(self._cursor.rowcount)


_WRONG_THREAD = ("This store was opened in another thread ({owner}); a store belongs to the "
                 "thread that opened it. Open one store per thread or per request "
                 "(approvalflow.open_store in each; they may share the database).")


class PgConnection:
    """A psycopg connection in autocommit mode, used like the store's sqlite3 connection."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._owner = threading.get_ident()
        self._owner_name = threading.current_thread().name
        self._is_closed = False
        #: The positions the last feed numbering by this connection gave (number_pending).
        self.numbered: dict[tuple[str, int], int] = {}
        self._idle: list[Any] = []  # psycopg cursors whose results were all read

    def check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise StoreError(_WRONG_THREAD.format(owner=repr(self._owner_name)))
        if self._is_closed:
            raise StoreError("The store is closed.")

    def _take_cursor(self) -> Any:
        return self._idle.pop() if self._idle else self._raw.cursor(row_factory=_row_factory)

    def _give_back(self, cursor: Any) -> None:
        result = cursor.pgresult
        if len(self._idle) < _IDLE_CURSORS and (result is None or result.ntuples <= _KEEP_ROWS):
            self._idle.append(cursor)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        return PgCursor(self).execute(sql, params)

    def executemany(self, sql: str, params: Any) -> PgCursor:
        return PgCursor(self).executemany(sql, params)

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """``execute`` for a statement whose rows nobody reads (SqliteConnection.run)."""
        PgCursor(self).execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The one row a query gives, or None (SqliteConnection.one)."""
        return PgCursor(self).execute(sql, params).fetchone()

    def cursor(self) -> PgCursor:
        return PgCursor(self)

    @property
    def in_transaction(self) -> bool:
        status = self._raw.info.transaction_status
        return bool(status != psycopg.pq.TransactionStatus.IDLE)

    @property
    def failed(self) -> bool:
        """Whether the open transaction failed: PostgreSQL then refuses every statement
        but ROLLBACK, and turns a COMMIT into a rollback without an error."""
        status = self._raw.info.transaction_status
        return bool(status == psycopg.pq.TransactionStatus.INERROR)

    def close(self) -> None:
        self.check_thread()
        self._raw.close()
        self._is_closed = True


def connect(url: str, *, timeout: float, durability: str, readonly: bool) -> PgConnection:
    """A connection to the server at ``url``, set up as the store expects."""
    if psycopg is None:
        raise StoreError(f"{redact(url)!r} is a PostgreSQL database, and PostgreSQL needs "
                         f"psycopg: pip install 'approvalflow[postgres]'.")
    try:
        raw = psycopg.connect(url, autocommit=True,
                              connect_timeout=max(1, min(int(timeout), 3600)))
    except psycopg.Error as e:
        raise StoreError(f"Could not connect to {redact(url)!r}: {_driver_says(e, url)} "
                         f"(check the URL, and that the server runs and lets this user "
                         f"in).") from e
    except Exception as e:  # a malformed URL
        raise InvalidInputError(f"{redact(url)!r} is not a PostgreSQL URL psycopg "
                                f"understands: {_driver_says(e, url)}.") from e
    conn = PgConnection(raw)
    # lock_timeout is how long a writer waits for another one (SQLite's busy timeout);
    # PostgreSQL takes 0 for "wait for ever", so no wait at all is its shortest, 1 ms
    millis = max(1, int(timeout * 1000))
    conn.execute(f"SET lock_timeout = {millis}")
    conn.execute("SET synchronous_commit = " + ("on" if durability == "full" else "off"))
    if readonly:
        conn.execute("SET default_transaction_read_only = on")
    return conn


def schema_version(conn: PgConnection) -> int:
    """The schema version recorded in ``store_meta``; 0 in a database without our tables."""
    # read from the catalog under the statement's snapshot: to_regclass answers from the
    # session's cache, which can still say "no such table" after another client's
    # creation of the schema has committed (the clients that waited for it would then
    # take the schema for somebody else's)
    exists = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = "
                          "current_schema() AND tablename = 'store_meta')").fetchone()[0]
    if not exists:
        return 0
    row = conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def create_schema(conn: PgConnection, *, created_at: str, created_by: str) -> None:
    """Create the tables (inside the caller's transaction), unless another client just did."""
    conn.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
    if schema_version(conn) != 0:
        return
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    if tables:
        raise StoreError(f"The database's schema holds tables {sorted(tables)} but is not an "
                         f"approvalflow store; use another database or schema.")
    conn._raw.execute(SCHEMA)
    conn.executemany("INSERT INTO store_meta (key, value) VALUES (?, ?)",
                     [("schema_version", str(PG_SCHEMA_VERSION)), ("created_at", created_at),
                      ("created_by", created_by)])


#: How many of the events it numbered the numbering hands back (the newest): the writer's
#: own event is among them unless many writers committed at once.
_NUMBERED_KEPT = 64
#: Numbering the feed takes two messages (two round trips): the first opens the
#: transaction and waits for the advisory lock (a client that dies while it waits leaves
#: its events pending, for the next writer or reader); the second numbers and commits.
#: Each statement runs on its own READ COMMITTED snapshot, so the numbering sees every
#: event numbered before the lock was granted. The second hands back the positions it
#: gave the newest events, so the writer needs no query for its own.
_LOCK_FEED = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({_FEED_LOCK})"
_NUMBER_PENDING = (
    "WITH moved AS (DELETE FROM feed_pending RETURNING id, case_id, seq), "
    "base AS (SELECT COALESCE(MAX(position), 0) AS top FROM feed), "
    "numbered AS (INSERT INTO feed (position, case_id, seq) "
    "SELECT base.top + row_number() OVER (ORDER BY moved.id), moved.case_id, moved.seq "
    "FROM moved, base RETURNING position, case_id, seq) "
    f"SELECT case_id, seq, position AS numbered FROM numbered ORDER BY position DESC "
    f"LIMIT {_NUMBERED_KEPT}; "
    "COMMIT")


def number_pending(conn: PgConnection) -> None:
    """Give every committed, unnumbered event its feed position (one transaction)."""
    if conn.in_transaction:
        return  # inside a bulk block or a read snapshot: the block's end numbers them
    conn.numbered = {}
    try:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM feed_pending)").fetchone()[0] is False:
            return
        # several statements in one message: never a prepared statement
        conn._raw.execute(_LOCK_FEED, prepare=False)
        cursor = conn._raw.execute(_NUMBER_PENDING, prepare=False)
    except psycopg.OperationalError:
        # another numbering held the lock past the timeout, or the connection was lost:
        # leave the events pending for the next writer or reader (no gap either way); a
        # write that has committed must not be reported as failed (a reader's own read
        # says what is wrong with the connection)
        with contextlib.suppress(psycopg.Error, StoreError):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.numbered = numbered_positions(cursor)


def numbered_positions(cursor: Any) -> dict[tuple[str, int], int]:
    """The positions the numbering message handed back, by (case id, seq)."""
    while True:
        description = cursor.description
        if description is not None and description[-1].name == "numbered":
            return {(case_id, seq): position for case_id, seq, position in cursor.fetchall()}
        if not cursor.nextset():
            return {}


def position_of(conn: PgConnection, case_id: str, seq: int) -> int | None:
    found = conn.numbered.get((case_id, seq))
    if found is not None:  # numbered by this connection just now
        return found
    row = conn.execute("SELECT position FROM feed WHERE case_id = ? AND seq = ?",
                       (case_id, seq)).fetchone()
    return None if row is None else int(row[0])


def own_pending(conn: PgConnection) -> frozenset[tuple[str, int]]:
    """Inside a write: (case id, seq) of the events this transaction inserted (its own rows
    in ``feed_pending``, which the trigger wrote with the transaction's id)."""
    rows = conn.execute("SELECT case_id, seq FROM feed_pending "
                        "WHERE xmin = pg_current_xact_id_if_assigned()::xid").fetchall()
    return frozenset((r[0], r[1]) for r in rows)


def data_version(conn: PgConnection) -> int:
    """A number that changes when events are numbered (``tail --follow`` polls it)."""
    return int(conn.execute("SELECT COALESCE(MAX(position), 0) FROM feed").fetchone()[0])


def lock_case(conn: PgConnection, case_id: str) -> None:
    """Hold a stored case's row until the transaction ends, as a step's head check does."""
    conn.execute("SELECT 1 FROM cases WHERE case_id = ? FOR UPDATE", (case_id,))


def lock_every_case(conn: PgConnection) -> None:
    """Hold off every writer until the transaction ends (a rebuild of the tables derived
    from every case): EXCLUSIVE mode lets readers in but no step (which locks its case's
    row FOR UPDATE) and no creation (which inserts a row)."""
    conn.execute("LOCK TABLE cases IN EXCLUSIVE MODE")


def lock(conn: PgConnection, key: str) -> None:
    """Hold an advisory lock on ``key`` until the transaction ends (a case id being
    created, a workflow version being stored): where SQLite's one writer needs none."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))


if psycopg is not None:
    register_database_errors(psycopg.Error)
