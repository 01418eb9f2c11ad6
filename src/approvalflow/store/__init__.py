"""The event log: SQLite through sqlite-utils. All SQL of approvalflow lives here.

- ``events`` is append-only (triggers refuse UPDATE and DELETE); each row carries a
  SHA-256 hash over its canonical bytes and the previous event's hash in the case.
- ``cases`` holds each case's current state and head hash, updated in the same
  transaction as the event that changes it.
- ``workflows`` keeps the exact text of every workflow version a case was created
  with, so replay uses the definition the case ran on, whatever the files say now.
- the projection tables (``projections.py``: who may act, what is due, the case data
  and its key paths) are derived from the log, written in the same transaction as
  each event, checked by ``verify`` and recomputed by ``rebuild``; ``queries.py``
  answers questions across cases from them.

One fire is one ``BEGIN IMMEDIATE`` transaction: expected-version check, event insert,
current-state update, commit; or rollback and nothing written. Every event takes the
next feed position inside that transaction (:mod:`.feed`); after each commit, the
callbacks given to :meth:`Store.subscribe` hear of the events it stored. sqlite3 errors are
translated into :class:`~approvalflow.errors.StoreError` in one place, ``translate``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import math
import os
import sqlite3
import threading
import unicodedata
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..canonical import canonical_json, check_data, check_text, date_or_today, shortened, to_date
from ..case import MAX_ID_LENGTH, Case, Event, check_actor, check_person
from ..definition import TransitionDef, Workflow
from ..engine import CaseState, Decision, engine_for
from ..errors import (
    CaseExistsError,
    CaseNotFoundError,
    ConcurrencyError,
    DefinitionError,
    InvalidInputError,
    SchemaVersionError,
    StoreError,
)
from ..files import special_kind
from ..forecast import DueItem, due_items, sort_due
from ..loading import bundled_workflows, load_workflow, loads_workflow
from ..replay import replay
from ..versioning import migrated_state
from . import postgres, projections, sqlite
from . import rows as _rows
from .feed import Subscriber, notify, read_feed
from .queries import Awaited, CaseList, find_cases
from .queries import awaiting as awaiting_cases
from .queries import due as due_from_tables
from .rows import (
    EVENT_COLUMNS,
    GENESIS,
    INSERT_CASE,
    SELECT_HEAD,
    SELECT_NEW,
    UPDATE_CASE,
    UPDATE_CASE_SAME_DAY,
    built_event,
    date_text,
    fields_hash,
    insert_fields,
    is_database_error,
    json_list,
    row_to_event,
    store_error,
    stored_event,
    translate,
    utc_now,
    utc_text,
)
from .schema import MIGRATIONS, SCHEMA_VERSION, package_version, record_meta
from .timers import TickReport, rebuild_timers, sync_timers, timer_rows
from .timers import tick as _tick
from .verification import VerifyReport, verify_store

if TYPE_CHECKING:
    from types import TracebackType

    import pandas
    import sqlite_utils  # imported when first needed (Store.db): it imports pandas

    from ..versioning import MigrationPlan
    from ..views import Svg
    from .copying import CopyReport

__all__ = ["Store", "open_store", "CaseSummary", "CaseList", "Awaited", "VerifyReport",
           "TickReport", "SCHEMA_VERSION", "replay"]

#: What a bulk block says once the database failed inside it (a full disk, say).
_BULK_FAILED = ("A step inside this bulk block failed in the database (such as a full disk); "
                "nothing of the block is stored. Leave the block and start again.")
DURABILITY = sqlite.DURABILITY
#: The longest busy timeout open_store takes, in seconds (a day).
MAX_TIMEOUT = 86_400
#: The longest database path open_store takes (PATH_MAX on Linux).
MAX_PATH_LENGTH = 4096


@attrs.frozen
class CaseSummary:
    """A case's current state as the ``cases`` table has it (no replay)."""

    case_id: str
    workflow: str
    workflow_version: int
    state: frozenset[str]
    version: int
    last_on: dt.date
    is_final: bool
    updated_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "workflow": self.workflow,
                "workflow_version": self.workflow_version, "state": sorted(self.state),
                "version": self.version, "last_on": self.last_on.isoformat(),
                "is_final": self.is_final, "updated_at": self.updated_at.isoformat()}


class MigrationNeededError(StoreError):
    """A database opened read-only has an older schema: it must be opened writable once
    to be migrated."""


_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _remove_database(path: str | os.PathLike[str]) -> None:
    """Delete a database file and its -wal, -shm and -journal files, where they exist."""
    for suffix in _FILE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{os.fspath(path)}{suffix}")


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) \
            or not 1 <= version <= 2**63 - 1:
        raise InvalidInputError(f"A workflow version is a whole number from 1 to 2**63 - 1, "
                                f"not {version!r}.")
    return version


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not math.isfinite(timeout) or not 0 <= timeout <= MAX_TIMEOUT:
        raise InvalidInputError(f"timeout must be a number of seconds from 0 to {MAX_TIMEOUT}, "
                                f"not {timeout!r}.")
    return float(timeout)


def _check_path(path: object) -> str:
    if not isinstance(path, str | os.PathLike):
        raise InvalidInputError(f"The database path must be a string or a path, not "
                                f"{type(path).__name__} {path!r}.")
    text = os.fspath(path)
    if not isinstance(text, str) or "\x00" in text or not text \
            or len(text) > MAX_PATH_LENGTH:
        shown = repr(text) if len(text) <= 80 else repr(text[:80]) + "..."
        raise InvalidInputError(f"The database path {shown} can't name a file: give text "
                                f"without NUL characters, at most {MAX_PATH_LENGTH} long, "
                                f"or ':memory:'.")
    return text


class _Write:
    """Store._write's transaction: one IMMEDIATE transaction, all or nothing; inside a
    bulk block, part of the block's. The database's errors become StoreError (as
    ``translate`` does them), and the subscribers hear of the events once the caller has
    advanced its Case (``Store._after_commit``).

    Every step runs one, so it is a class with two methods rather than generator-based
    context managers nested three deep (``translate``, ``_writer_turn``).
    """

    __slots__ = ("_store", "_what", "_mark", "_locked")

    def __init__(self, store: Store, what: str) -> None:
        self._store, self._what = store, what
        self._mark: int | None = None
        self._locked = False

    def __enter__(self) -> None:
        store = self._store
        if store._closed:
            raise StoreError("The store is closed.")
        if store.readonly:
            raise StoreError(f"Can't {self._what}: the store {store.where!r} was opened "
                             f"read-only (readonly=True); open it without readonly to write.")
        try:
            if store._bulk_depth:
                if store._bulk_failed or not store._conn.in_transaction \
                        or store._transaction_failed():
                    raise StoreError(_BULK_FAILED)
                return
            # wait for the other writers of this process to the same file (_writer_turn)
            self._locked = store._take_writer_turn(self._what)
            try:
                store._conn.run("BEGIN IMMEDIATE")
                if not store._subscribers:
                    return
                try:
                    self._mark = store._feed_mark()
                except BaseException:
                    store._rollback()
                    raise
            except BaseException:
                self._release()
                raise
        except BaseException as e:
            if is_database_error(e):
                raise store_error(e, self._what) from e
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        store = self._store
        if store._bulk_depth:
            if error is not None and is_database_error(error):
                # The database failed part-way through a step (our own refusals come
                # before any write): the block can no longer be all or nothing, so none
                # of it will be stored.
                store._bulk_failed = True
                raise store_error(error, self._what) from error
            return
        try:
            try:
                if error is not None:
                    store._rollback()
                else:
                    try:
                        mine = None if self._mark is None else store._own_events(self._mark)
                        store._conn.run("COMMIT")
                    except BaseException:
                        store._rollback()
                        raise
                    if store._pg:
                        store._number_feed()
            finally:
                self._release()
        except BaseException as e:
            if is_database_error(e):
                raise store_error(e, self._what) from e
            raise
        if error is None:
            # the callbacks run once the caller has advanced its Case (see _after_commit)
            store._committed_mark = mine
        elif is_database_error(error):
            raise store_error(error, self._what) from error

    def _release(self) -> None:
        if self._locked:
            self._locked = False
            self._store._end_writer_turn()


class Store:
    """An event log in one SQLite file. Open it with :func:`open_store`."""

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "full",
                 timeout: float = 30.0, create: bool = True,
                 max_pages: int | None = None, readonly: bool = False) -> None:
        if not isinstance(durability, str) or durability not in DURABILITY:
            raise InvalidInputError(f"durability must be one of {sorted(DURABILITY)}, "
                                    f"not {durability!r}.")
        if max_pages is not None and (isinstance(max_pages, bool)
                                      or not isinstance(max_pages, int) or max_pages < 1):
            raise InvalidInputError(f"max_pages must be a whole number of pages (1 or more) "
                                    f"or None, not {max_pages!r}.")
        timeout = _check_timeout(timeout)
        self._pg = postgres.is_database_url(path)
        if self._pg and "\x00" in str(path):  # libpq would read the URL only up to it
            raise InvalidInputError(f"The database URL {postgres.redact(str(path))[:80]!r} "
                                    f"holds a NUL character; give a URL without one.")
        self.path: str = postgres.database_url(str(path)) if self._pg else _check_path(path)
        self.durability = durability
        self.readonly = bool(readonly)
        self._workflows: dict[tuple[str, int], Workflow] = {}
        self._bulk_depth = 0
        self._bulk_failed = False
        # Case -> how it was before the bulk block moved it; weak, so a Case the caller has
        # let go of (and its snapshot) is freed at once: a long block's memory stays flat
        self._bulk_touched: weakref.WeakKeyDictionary[Case, Any] = weakref.WeakKeyDictionary()
        self._subscribers: list[Subscriber] = []
        # what the last commit of _write stored, for the subscribers (see _after_commit)
        self._committed_mark: _Committed | None = None
        self._to_notify: collections.deque[_Committed] = collections.deque()
        # own events committed but not numbered yet when their turn came (PostgreSQL)
        self._unnumbered: list[_Committed] = []
        self._notifying = False
        self._timeout = timeout
        self._closed = False
        if self._pg:
            self._open_postgres(create=create, max_pages=max_pages)
            return
        if self.readonly and self.path == ":memory:":
            raise InvalidInputError("readonly=True needs a database file; an in-memory store "
                                    "starts empty.")
        kind = None if self.path == ":memory:" else special_kind(self.path)
        if kind is not None:  # SQLite would say "disk I/O error" or "unable to open"
            raise StoreError(f"The database {self.where!r} is {kind}, not a database file; "
                             f"give the path of an approvalflow database (or of a new file).")
        if (not create or self.readonly) and self.path != ":memory:" \
                and not Path(self.path).is_file():
            raise StoreError(f"There is no database at {self.where!r}; create one with "
                             f"'approvalflow new' or approvalflow.open_store().")
        with translate(f"open the database {self.where!r}"):
            self._conn = sqlite.connect(self.path, timeout=timeout, durability=durability,
                                        readonly=self.readonly, max_pages=max_pages)
            self._db: sqlite_utils.Database | None = None
            if self.readonly:
                try:
                    self._check_readable()
                except BaseException:
                    self._conn.close()
                    raise
            else:
                self._migrate()
        self._writer_lock = _writer_lock(self.path)

    def _open_postgres(self, *, create: bool, max_pages: int | None) -> None:
        """Connect to a PostgreSQL server (store/postgres.py) and create the schema there."""
        where = postgres.redact(self.path)
        if max_pages is not None:
            raise InvalidInputError("max_pages caps a SQLite file; a PostgreSQL store has no "
                                    "such cap (leave max_pages out).")
        self._writer_lock = None  # the server orders the writers of every process and host
        self._conn = postgres.connect(  # type: ignore[assignment]
            self.path, timeout=self._timeout, durability=self.durability,
            readonly=self.readonly)
        self._db = None
        try:
            with translate(f"open the database {where!r}"):
                current = self.schema_version
                self._check_not_newer(current)
                if current == 0:
                    if self.readonly or not create:
                        raise StoreError(f"There is no approvalflow store at {where!r}; create "
                                         f"one with 'approvalflow new' or "
                                         f"approvalflow.open_store().")
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        postgres.create_schema(self._conn, created_at=utc_now().isoformat(),  # type: ignore[arg-type]
                                               created_by=package_version())
                        self._conn.execute("COMMIT")
                    except BaseException:
                        self._rollback()
                        raise
                elif current != SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"{where!r} has schema version {current}; this approvalflow "
                        f"({package_version()}) reads PostgreSQL stores of version "
                        f"{SCHEMA_VERSION}.")
        except BaseException:
            self._conn.close()
            raise

    def _check_readable(self) -> None:
        """A store opened read-only can't migrate: its schema must be this version's."""
        try:
            current = self.schema_version
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.where!r} is not an approvalflow database, or it is "
                             f"damaged: {e}.") from e
        foreign = sqlite.foreign_database(self._conn, self.where) if current else None
        if foreign:  # another program's schema version: not "a newer approvalflow"
            raise StoreError(foreign)
        self._check_not_newer(current)
        if current == 0:
            raise StoreError(f"{self.where!r} is not an approvalflow database (it has no "
                             f"schema); pass the database's path.")
        if current < SCHEMA_VERSION:
            raise MigrationNeededError(
                f"{self.where!r} has schema version {current}; this approvalflow "
                             f"reads version {SCHEMA_VERSION} read-only. Open it once without "
                             f"readonly (any writing command) to migrate it.")

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection as a sqlite-utils Database (for schema work), made on first use."""
        if self._pg:
            raise StoreError("store.db is the SQLite file through sqlite-utils; a PostgreSQL "
                             "store has none (use the Store's methods).")
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self._conn)
        return self._db

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. Only the thread that opened the store may close it."""
        if not self._closed:
            self._conn.check_thread()
            self._conn.close()
            self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.where!r}>"

    @property
    def where(self) -> str:
        """The database's path, or its URL without the password."""
        return postgres.redact(self.path) if self._pg else self.path

    @property
    def schema_version(self) -> int:
        """The schema version of the file (SQLite's ``user_version``; on PostgreSQL, the
        one recorded in ``store_meta``)."""
        if self._pg:
            return postgres.schema_version(self._conn)  # type: ignore[arg-type]
        return sqlite.user_version(self._conn)

    def _migrate(self) -> None:
        try:
            current = self.schema_version
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.where!r} is not an approvalflow database, or it is "
                             f"damaged: {e}.") from e
        self._check_not_newer(current)
        if current == SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have created or migrated the file since we looked
            start = current = self.schema_version
            self._check_not_newer(current)
            if current == 0:
                tables = set(self.db.table_names())
                if tables - {"sqlite_sequence"}:
                    raise StoreError(f"{self.where!r} holds tables {sorted(tables)} but is not "
                                     f"an approvalflow database; use another file.")
            while current < SCHEMA_VERSION:
                MIGRATIONS[current](self.db)
                current += 1
            if start < SCHEMA_VERSION:
                record_meta(self._conn, created=start == 0, start=start)
                self._conn.execute(f"PRAGMA user_version = {current}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _check_not_newer(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.where!r} has schema version {current}, written by a newer approvalflow; "
                f"this one ({package_version()}) reads schema versions up to "
                f"{SCHEMA_VERSION}. Upgrade approvalflow to open it.")

    @property
    def meta(self) -> dict[str, str]:
        """What the file records about itself (table ``store_meta``): ``created_at`` and
        ``created_by`` for a file created by schema 2 or later, ``migrated_at``,
        ``migrated_by`` and ``migrated_from`` for one brought up from an older schema."""
        with translate("read the store's metadata"):
            rows = self._conn.execute("SELECT key, value FROM store_meta ORDER BY key")
            # PostgreSQL keeps its schema version here (SQLite's is its user_version): it
            # is schema_version, not part of what the store records about itself
            return {r["key"]: r["value"] for r in rows
                    if not (self._pg and r["key"] == "schema_version")}

    def _rollback(self) -> None:
        # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR, ...); a
        # second ROLLBACK would fail and hide the error that explains what happened.
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        # a workflow registered in the transaction is stored no more: forget what was read
        # (the cache is read again from the file when asked)
        self._workflows.clear()

    def _write(self, what: str) -> _Write:
        """One IMMEDIATE transaction, all or nothing; inside ``bulk``, part of the bulk's.
        A context manager (see :class:`_Write`); ``what`` names the write in errors."""
        return _Write(self, what)

    @contextlib.contextmanager
    def _writer_turn(self, what: str) -> Iterator[None]:
        """Wait for the other writers of this process to the same file, on a lock.

        SQLite's busy handler sleeps in growing steps (1, 2, 5, 10 ... ms) while another
        connection holds the write lock; threads of one process queue here instead and
        are woken the moment the writer before them is done. Writers in other processes
        still wait in SQLite.
        """
        if not self._take_writer_turn(what):
            yield
            return
        try:
            yield
        finally:
            self._end_writer_turn()

    def _take_writer_turn(self, what: str) -> bool:
        """Take this process's writer lock of the file (see _writer_turn); False when the
        store has none. Raise StoreError when it is not free within the timeout."""
        lock = self._writer_lock
        if lock is None:
            return False
        if not lock.acquire(timeout=self._timeout):
            raise StoreError(f"Could not {what}: another writer of this process held "
                             f"{self.where!r} longer than the timeout of {self._timeout} s "
                             f"(retry, or open the store with a longer timeout).")
        return True

    def _end_writer_turn(self) -> None:
        lock = self._writer_lock
        assert lock is not None
        lock.release()

    @contextlib.contextmanager
    def bulk(self) -> Iterator[Store]:
        """Every create and fire inside is one transaction: all are stored, or none.

        When the block does not commit (it raised, or the database failed inside it),
        every Case object that took a step inside it is put back exactly as it was
        before the block, so none of them can decide on a step that was never stored.
        """
        if self._bulk_depth:
            self._bulk_depth += 1
            try:
                yield self
            finally:
                self._bulk_depth -= 1
            return
        with translate("run a bulk transaction"), self._writer_turn("run a bulk transaction"):
            self._conn.execute("BEGIN IMMEDIATE")
            self._bulk_depth = 1
            try:
                mark = self._feed_mark()
                yield self
                if self._bulk_failed or not self._conn.in_transaction \
                        or self._transaction_failed():
                    raise StoreError(_BULK_FAILED)
                mine = self._own_events(mark)
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                for case, snapshot in list(self._bulk_touched.items()):
                    case._restore(snapshot)
                raise
            finally:
                self._bulk_depth = 0
                self._bulk_failed = False
                self._bulk_touched.clear()
            self._number_feed()
        self._notify(mine)

    # -- the feed and subscriptions (store/feed.py) ---------------------------------------

    def feed(self, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of every case in commit order: those with a feed ``position`` greater
        than ``after``, at most ``limit`` of them.

        Positions run 1, 2, 3 ... without gaps, in the order the events were committed,
        so a consumer that keeps the last position it handled reads on from there
        (docs/integration.md).
        """
        if self._closed:
            raise StoreError("The store is closed.")
        with translate("read the feed"):
            self._number_feed()
            return read_feed(self._conn, after, limit)

    def _unstorable(self, text: str) -> bool:
        """Whether no text this store holds can equal ``text``: PostgreSQL can't store
        U+0000, so a question naming it is answered as one naming nothing stored (the
        server would refuse the parameter, where SQLite answers)."""
        return self._pg and "\x00" in text

    def _transaction_failed(self) -> bool:
        """PostgreSQL: whether a statement of the open transaction failed (a read inside a
        bulk block, whose error was caught): its COMMIT would store nothing, silently.
        SQLite keeps a transaction usable after a failed statement."""
        return self._pg and self._conn.failed  # type: ignore[attr-defined]

    def _number_feed(self) -> None:
        """PostgreSQL: number the committed events that have no feed position yet (not
        through a read-only store: it reads what the writers numbered)."""
        if self._pg and not self.readonly:
            postgres.number_pending(self._conn)  # type: ignore[arg-type]

    def _data_version(self) -> int:
        """A number that changes when any connection commits (``tail --follow`` polls it)."""
        if self._pg:
            self._number_feed()
            return postgres.data_version(self._conn)  # type: ignore[arg-type]
        return sqlite.data_version(self._conn)

    def _position(self, event: Event) -> Event:
        """The event with its feed position, once numbered (PostgreSQL numbers after the
        commit; inside a bulk block, at the block's end)."""
        if event.position is not None or not self._pg or self._bulk_depth:
            return event
        try:
            with translate("read a feed position"):
                position = postgres.position_of(self._conn, event.case_id, event.seq)  # type: ignore[arg-type]
        except StoreError:  # the event is committed: its position is in the feed later
            return event
        return attrs.evolve(event, position=position)

    def _lock(self, key: str) -> None:
        """Inside a write: hold ``key`` until the commit (PostgreSQL's advisory lock; SQLite's
        writer already holds the whole file)."""
        if self._pg:
            postgres.lock(self._conn, key)  # type: ignore[arg-type]

    def _lock_case(self, case_id: str) -> None:
        """Inside a write: hold a stored case against other writers until the commit, before
        reading it to decide on (PostgreSQL locks its row, as a step's head check does;
        SQLite's writer already holds the whole file)."""
        if self._pg:
            postgres.lock_case(self._conn, case_id)  # type: ignore[arg-type]

    def _lock_cases(self, case_ids: Iterable[object]) -> None:
        """:meth:`_lock_case` for each of ``case_ids`` that is a case id (one that is not
        is refused when its case is loaded)."""
        if not self._pg:
            return
        for case_id in case_ids:
            with contextlib.suppress(InvalidInputError):
                self._lock_case(check_case_id(case_id))

    def _hold_every_case(self) -> None:
        """Inside a write that rebuilds tables from every case: keep every other writer out
        until the commit (SQLite's writer already holds the whole file; PostgreSQL's
        writers lock one case row each, so the rebuild locks the table)."""
        if self._pg:
            postgres.lock_every_case(self._conn)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def _snapshot(self, what: str) -> Iterator[None]:
        """The reads inside see one state of the store, however many statements they take
        and whatever other connections commit meanwhile (a guard may run among them)."""
        if self._closed:
            raise StoreError("The store is closed.")
        with translate(what), _rows.snapshot(self._conn):
            yield

    def subscribe(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event this store commits, after the commit.

        Never inside the transaction: a step is stored, then its callbacks run, in feed
        order, once the commit is done (for a bulk block: once the block commits; a
        block rolled back calls nothing). A callback that raises neither undoes nor
        blocks anything: the error is logged (logger ``approvalflow.store``, level
        ERROR, with its traceback) and the next callbacks still run. Events committed
        by other Store objects or processes are not seen here: read :meth:`feed` for
        those. Returns a function that ends the subscription.
        """
        if not callable(callback):
            raise InvalidInputError(f"subscribe() takes a function of one event, not "
                                    f"{callback!r}.")
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def _feed_mark(self) -> int | None:
        """The last feed position before this transaction wrote (only when someone listens)."""
        if not self._subscribers:
            return None
        row = self._conn.execute("SELECT MAX(position) FROM events").fetchone()
        return int(row[0] or 0)

    def _own_events(self, mark: int | None) -> _Committed | None:
        """Inside a write, just before its commit: the events this transaction stored, as
        the feed position before it and their (case id, seq) (only when someone listens).

        Other processes commit between this commit and the callbacks; the feed read
        then holds their events too, and only these are passed on."""
        if mark is None:
            return None
        if self._pg:
            return mark, postgres.own_pending(self._conn)  # type: ignore[arg-type]
        rows = self._conn.execute("SELECT case_id, seq FROM events WHERE position > ?",
                                  (mark,)).fetchall()
        return mark, frozenset((r[0], r[1]) for r in rows)

    def _notify(self, committed: _Committed | None) -> None:
        if committed is None or not committed[1] or not self._subscribers:
            return
        if self._unnumbered and not self._notifying:  # they came first: they go first
            self._to_notify.extend(self._unnumbered)
            self._unnumbered = []
        self._to_notify.append(committed)
        if self._notifying:
            # a callback took a step: its events wait until every subscriber has heard
            # the ones before them, so that each hears the feed in order
            return
        self._notifying = True
        try:
            while self._to_notify:
                mark, mine = self._to_notify.popleft()
                missing = notify(self, mark, mine)
                if missing:  # passed on after the next commit, which numbers them first
                    self._unnumbered.append((mark, missing))
        finally:
            self._notifying = False

    def _after_commit(self) -> None:
        """Tell the subscribers about what the last ``_write`` committed."""
        mark, self._committed_mark = self._committed_mark, None
        self._notify(mark)

    # -- copying ------------------------------------------------------------------------

    def backup(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Copy the whole log, as it is at one moment, to a new database file at ``path``.

        Uses SQLite's online backup (``sqlite3.Connection.backup``), so it is safe while
        other processes keep writing, and the copy includes what is still in the
        ``-wal`` file (copying the database file alone can miss it). The copy is written
        beside ``path`` and renamed into place when complete: ``path`` is either the whole
        copy or untouched. An existing ``path`` is refused unless ``force=True``.
        Returns the path of the copy.
        """
        if self._closed:
            raise StoreError("The store is closed.")
        if self._bulk_depth:
            raise StoreError("Can't back up inside a bulk block: leave the block first.")
        if self._pg:
            raise StoreError(f"backup copies a SQLite file; {self.where!r} is on PostgreSQL: "
                             f"use the server's own backups (pg_dump), or 'approvalflow copy' "
                             f"to copy the log into a SQLite file.")
        dest = Path(_check_path(path))
        if str(dest) == ":memory:":
            raise InvalidInputError("backup needs a file path, not ':memory:'.")
        if dest.is_dir():
            raise InvalidInputError(f"The backup path {str(dest)!r} is a directory; give a "
                                    f"file name.")
        kind = special_kind(dest)
        if kind is not None:  # even with force: replacing /dev/null would break the system
            raise InvalidInputError(f"The backup path {str(dest)!r} is {kind}, not a file; "
                                    f"give the path of a new file (or of a database file to "
                                    f"replace, with force=True, --force).")
        if self.path != ":memory:" and dest.exists() and dest.samefile(self.path):
            raise InvalidInputError(f"Can't back up {self.where!r} onto itself.")
        if not force and any(os.path.lexists(f"{dest}{suffix}") for suffix in _FILE_SUFFIXES):
            raise StoreError(f"{str(dest)!r} already exists; give a new path, or force=True "
                             f"(--force) to replace it.")
        partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
        _remove_database(partial)
        try:
            with translate(f"back up {self.where!r} to {str(dest)!r}"):
                target = sqlite3.connect(partial, isolation_level=None)
                try:
                    self._conn.backup(target)
                    target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                finally:
                    target.close()
            if force:
                _remove_database(dest)
            os.replace(partial, dest)
        except OSError as e:
            raise StoreError(f"Could not back up to {str(dest)!r}: {e.strerror or e}.") from e
        finally:
            _remove_database(partial)
        return dest

    def copy_to(self, dest: Store | str | os.PathLike[str],
                progress: Callable[[int, int], None] | None = None) -> CopyReport:
        """Copy the whole log into the empty store ``dest`` (a Store, a SQLite path or a
        PostgreSQL URL): SQLite to PostgreSQL and back, with the same hashes.

        The source must verify; the copy is one transaction, its projections and timers
        are recomputed, and it is verified after the commit (``report.verified``).
        Heads exported from this store before the copy verify on the copy. See
        docs/deployment.md.
        """
        from .copying import copy_store

        if self._closed:
            raise StoreError("The store is closed.")
        if self._bulk_depth:
            raise StoreError("Can't copy inside a bulk block: leave the block first.")
        if isinstance(dest, Store):
            return copy_store(self, dest, progress)
        with Store(dest) as opened:
            return copy_store(self, opened, progress)

    # -- workflows ----------------------------------------------------------------------

    def _register_workflow(self, wf: Workflow) -> None:
        self._lock(f"workflow:{wf.name}@{wf.version}")
        row = self._conn.execute("SELECT digest FROM workflows WHERE name = ? AND version = ?",
                                 (wf.name, wf.version)).fetchone()
        if row is None:
            self._conn.execute(
                "INSERT INTO workflows (name, version, digest, source, stored_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (wf.name, wf.version, wf.digest, wf.source_text, utc_now().isoformat()))
        elif row["digest"] != wf.digest:
            raise DefinitionError(
                f"Workflow {wf.name!r} version {wf.version} in {self.where!r} has other content "
                f"than the one given; a changed workflow needs a new [workflow].version.")
        self._workflows[(wf.name, wf.version)] = wf

    def workflow(self, name: str, version: int) -> Workflow:
        """The workflow definition version a case was created with, as stored."""
        name = check_text(name, "workflow name", max_length=MAX_ID_LENGTH)
        version = _check_version(version)
        found = self._workflows.get((name, version))
        if found is not None:
            return found
        with translate("read a workflow"):
            row = None if self._unstorable(name) else self._conn.execute(
                "SELECT source FROM workflows WHERE name = ? AND version = ?",
                (name, version)).fetchone()
        if row is None:
            raise StoreError(f"Workflow {name!r} version {version} is not in {self.where!r}.")
        wf = loads_workflow(row["source"], source=f"{self.path}:workflows/{name}@v{version}",
                            strict_guards=False)
        self._workflows[(name, version)] = wf
        return wf

    # -- cases --------------------------------------------------------------------------

    def create_case(self, workflow: Workflow | str | os.PathLike[str], case_id: str, *,
                    actor: str, on: object = None, data: Mapping[str, Any] | None = None,
                    note: str | None = None, by: str | None = None,
                    version: int | None = None) -> Case:
        """Start a case in the workflow's initial state; its creation is event 1.

        ``workflow`` is a Workflow, a bundled name, a path to a file, or the name of a
        workflow stored in this store (its latest version, or ``version``). ``by`` is the
        person who created it for ``actor`` (recorded and hashed; docs/integration.md).
        """
        wf = self._resolve_workflow(workflow, version)
        case_id = check_case_id(case_id)
        actor = check_actor(actor)
        if by is not None:
            by = check_person(by)
        if actor not in wf.actors:
            raise InvalidInputError(f"{actor!r} is not an actor of workflow {wf.name!r}; "
                                    f"actors: {', '.join(sorted(wf.actors))}.")
        when = dt.date.today() if on is None else to_date(on, "on")
        payload = check_data(data)  # a fresh copy
        if note is not None:
            note = check_text(note, "note", max_length=10_000)
        engine = engine_for(wf)
        stray = engine.creation_reasons(payload)
        if stray:
            raise InvalidInputError(f"Can't create case {case_id!r}: {stray[0]}.")
        state = engine.initial_state(payload, when, by)
        data_text = canonical_json(payload)
        recorded = utc_now().isoformat()
        fields = (case_id, 1, "create", "create", actor, when.isoformat(), recorded, "[]",
                  json_list(state.config), note, data_text, wf.name, wf.version, None, GENESIS)
        digest_of = fields_hash(fields, wf.digest, by)
        with self._write(f"create case {case_id!r}"):
            self._lock(f"case:{case_id}")
            exists, last_position = self._conn.execute(SELECT_NEW, (case_id,)).fetchone()
            if exists:
                raise CaseExistsError(f"Case {case_id!r} already exists in {self.where!r}; "
                                      f"choose another id or load it with store.case().")
            self._register_workflow(wf)
            position = _next_position(last_position)
            insert_fields(self._conn, fields, digest_of, wf.digest, by, position)
            self._conn.execute(
                INSERT_CASE,
                (case_id, wf.name, wf.version, fields[8], 1, fields[5], digest_of,
                 int(engine.is_final(state.config)), recorded, recorded))
            event = row_to_event((*fields, digest_of, wf.digest, by, position))
            # the creation's data is the case data: its text is the event's
            projections.insert(self._conn, case_id, projections.compute(
                engine, state, [event], data_text))
            # a case that did not exist has no timer rows to replace
            sync_timers(self._conn, case_id, engine, state, before=[])
        event = self._position(event)
        case = Case(self, wf, case_id, state, (event,))
        self._after_commit()
        return case

    def _resolve_workflow(self, workflow: Workflow | str | os.PathLike[str],
                          version: int | None) -> Workflow:
        """A Workflow; a bundled name or a path; else a name stored here (latest or version)."""
        if isinstance(workflow, Workflow):
            if version is not None and version != workflow.version:
                raise InvalidInputError(f"version={version!r} was given with workflow "
                                        f"{workflow.name!r} version {workflow.version}; give "
                                        f"one or the other.")
            return workflow
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int):
                raise InvalidInputError(f"version must be a whole number, not {version!r}.")
            return self.workflow(check_text(workflow, "workflow", max_length=MAX_ID_LENGTH),
                                 version)
        if not isinstance(workflow, os.PathLike):
            check_text(workflow, "workflow")  # a lone surrogate can't be looked up in SQLite
        name = os.fspath(workflow)
        if (isinstance(workflow, os.PathLike) or name.endswith(".toml") or "/" in name
                or os.sep in name or name in bundled_workflows()):
            return load_workflow(workflow)
        name = check_text(name, "workflow", max_length=MAX_ID_LENGTH)  # a stored name is an id
        with translate("look up a stored workflow"):
            row = self._conn.execute("SELECT MAX(version) FROM workflows WHERE name = ?",
                                     (name,)).fetchone()
        if row is None or row[0] is None:
            stored = self.workflow_names()
            raise DefinitionError(
                f"There is no workflow {name!r}: not a bundled one ("
                f"{', '.join(bundled_workflows()) or 'none'}), not a file, and not stored in "
                f"{self.where!r} (" + (f"stored: {', '.join(stored)}" if stored else
                                      "it stores none") + ").")
        return self.workflow(name, int(row[0]))

    def workflow_names(self) -> list[str]:
        """The names of the workflows stored here (each case's workflow is), sorted."""
        with translate("list the stored workflows"):
            return [r[0] for r in self._conn.execute(
                "SELECT DISTINCT name FROM workflows ORDER BY name")]

    def _events(self, case_id: str, as_of: dt.date | None) -> list[sqlite3.Row]:
        if as_of is None:
            return self._conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE case_id = ? "
                                      f"ORDER BY seq", (case_id,)).fetchall()
        return self._conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE case_id = ? "
                                  f"AND on_date <= ? ORDER BY seq",
                                  (case_id, as_of.isoformat())).fetchall()

    def case(self, case_id: str, *, as_of: object = None) -> Case:
        """Load a case by replaying its events; ``as_of`` keeps only events dated on or before."""
        case_id = check_case_id(case_id)
        when = None if as_of is None else to_date(as_of, "as_of")
        with translate(f"load case {case_id!r}"):
            rows = self._events(case_id, when)
            if not rows and when is not None:
                exists = self._conn.execute("SELECT 1 FROM cases WHERE case_id = ?",
                                            (case_id,)).fetchone()
                if exists:
                    first = self._conn.execute("SELECT on_date FROM events WHERE case_id = ? "
                                               "AND seq = 1", (case_id,)).fetchone()
                    raise CaseNotFoundError(
                        f"Case {case_id!r} did not exist yet on {when.isoformat()}; it was "
                        f"created on {first['on_date'] if first else 'an unknown date'}.")
        if not rows:
            raise CaseNotFoundError(self._not_found(case_id))
        try:
            events = [row_to_event(r) for r in rows]
            created_on = self.workflow(events[0].workflow, events[0].workflow_version)
            state = replay(engine_for(created_on), events, workflows=self.workflow)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            # a row edited behind the library's back: a clear error, not a traceback
            raise StoreError(_unreadable(case_id, rows, e)) from None
        # the version the case runs on now: the one its last event was recorded on
        wf = self.workflow(events[-1].workflow, events[-1].workflow_version)
        for event in events:  # a creation or a migration commits to its version's text
            if event.workflow_digest is not None:
                self._check_commitment(event)
        return Case(self, wf, case_id, state, tuple(events), as_of=when)

    def _check_commitment(self, event: Event) -> None:
        """Refuse to go on with a case whose stored workflow text is not the one its
        event committed to (the workflows table was edited): its steps would be decided
        on rules the case never had."""
        wf = self.workflow(event.workflow, event.workflow_version)
        if wf.digest != event.workflow_digest:
            raise StoreError(
                f"Case {event.case_id!r} can't be loaded: its event {event.seq} commits to "
                f"the text {str(event.workflow_digest)[:12]}... of workflow {wf.name!r} "
                f"version {wf.version}, but the text stored in {self.where!r} is "
                f"{wf.digest[:12]}... (the stored workflow was changed); 'approvalflow "
                f"verify' says more.")

    def _not_found(self, case_id: str) -> str:
        ids = [r[0] for r in self._conn.execute(
            "SELECT case_id FROM cases ORDER BY case_id LIMIT 6").fetchall()]
        known = ", ".join(repr(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
        return (f"There is no case {case_id!r} in {self.where!r}; "
                + (f"cases: {known}." if ids else "the store holds no cases."))

    def cases(self, *, workflow: str | None = None, state: str | None = None,
              awaiting: str | None = None, overdue: bool = False, final: bool | None = None,
              data: Mapping[str, Any] | None = None, since: object = None,
              until: object = None, limit: int | None = None, offset: int = 0,
              on: object = None) -> CaseList:
        """The cases' summaries, sorted by id, from the current-state and projection tables
        (no replay). A list with ``total``: how many cases match, whatever the page.

        Every filter given must hold: ``workflow`` (its name); ``state`` active (a leaf or
        a composite state); ``awaiting`` names an actor who may act now (as
        :meth:`awaiting`); ``overdue``: a deadline or expected step passed (as :meth:`due`
        reports it "missed"); ``final`` True for ended cases, False for open ones;
        ``data`` maps key paths (``"budget.total"``) to values, compared as text (a
        number or true/false as JSON: ``6``, ``true``; an object is refused: name the keys
        inside it); ``since`` / ``until``: the last
        event's date, inclusive. ``on`` is the day ``awaiting`` and ``overdue`` are asked
        on (default today). ``limit`` and ``offset`` page through the result.
        """
        workflow, state, awaiting = (
            None if text is None else check_text(text, what, max_length=MAX_ID_LENGTH)
            for what, text in (("workflow", workflow), ("state", state), ("awaiting", awaiting)))
        if data is not None and not isinstance(data, Mapping):
            raise InvalidInputError(f"data must map key paths to values, not "
                                    f"{type(data).__name__} {data!r}.")
        when = dt.date.today() if on is None else to_date(on, "on")
        with self._snapshot("list cases"):  # the filters and the page: one state of the store
            return find_cases(
                self, workflow=workflow, state=state,
                awaiting_actor=awaiting, overdue=overdue, final=final, data=data,
                since=None if since is None else to_date(since, "since"),
                until=None if until is None else to_date(until, "until"),
                limit=limit, offset=offset, on=when)

    def awaiting(self, actor: str, *, on: object = None) -> list[Awaited]:
        """Every case where ``actor`` may act on ``on`` (default today), with the steps they
        may take: what each case's :meth:`Case.awaiting` says for them, read from the
        ``case_awaiting`` table (guards are re-run only for the rows that have them).
        Sorted by case id."""
        when = dt.date.today() if on is None else to_date(on, "on")
        with self._snapshot(f"list what {actor!r} may do"):
            return awaiting_cases(self, actor, when)

    def rebuild(self) -> dict[str, int]:
        """Recompute every projection table from the log, in one transaction; returns the
        number of cases replayed and of rows in each table."""
        with self._write("rebuild the projections"):
            self._hold_every_case()  # a step meanwhile would write onto rows made from before it
            counts = {"cases": projections.fill(self._conn)}
            for table in projections.TABLES:
                counts[table] = self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return counts

    def due(self, on: object = None, within_days: int = 14, *, as_of: object = None,
            workflow: str | None = None) -> list[DueItem]:
        """Across all open cases: deadlines and expected steps overdue or due within
        ``within_days`` of ``on`` (default today), the earliest first.

        Read from the ``case_due`` table; a case is replayed only when its answer moves
        with the day asked (a deadline counted from a forecast date, or one that may be
        at risk). ``as_of`` loads each case as it was known on that date by replaying
        every case (cases created later are left out). See docs/forecast.md.
        """
        if workflow is not None:
            workflow = check_text(workflow, "workflow", max_length=MAX_ID_LENGTH)
        when = dt.date.today() if on is None else to_date(on, "on")
        if isinstance(within_days, bool) or not isinstance(within_days, int) \
                or not 0 <= within_days <= 36_500:
            raise InvalidInputError(f"within_days must be a whole number of days from 0 to "
                                    f"36500, not {within_days!r}.")
        known = None if as_of is None else to_date(as_of, "as_of")
        if workflow is not None and self._unstorable(workflow):
            return []  # no stored case runs on it
        with self._snapshot("list what is due"):  # every case as of one commit
            if known is None:
                return due_from_tables(self, when, within_days, workflow)
            return self._due_as_of(known, when, within_days, workflow)

    def _due_as_of(self, known: dt.date, when: dt.date, within_days: int,
                   workflow: str | None) -> list[DueItem]:
        sql = "SELECT case_id FROM cases"
        clauses, params = [], []
        if workflow is not None:
            clauses.append("workflow = ?")
            params.append(workflow)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with translate("list the open cases"):
            ids = [r[0] for r in self._conn.execute(sql + " ORDER BY case_id", params)]
        items: list[DueItem] = []
        for case_id in ids:
            try:
                case = self.case(case_id, as_of=known)
            except CaseNotFoundError:
                continue  # created after as_of
            if case.is_final:
                continue
            items.extend(due_items(case.id, case.definition, case.engine_state, case.history,
                                   on=when, within_days=within_days))
        return sort_due(items)

    def events(self, case_id: str | None = None) -> Iterator[Event]:
        """Every event (of one case, or of all cases by case and sequence)."""
        if case_id is not None:
            case_id = check_case_id(case_id)
        with translate("read events"):
            rows: Iterable[sqlite3.Row]
            if case_id is not None:
                rows = self._events(case_id, None)
            else:
                rows = self._conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events ORDER BY case_id, seq")
            for r in rows:
                yield stored_event(r)

    def timeline(self, cases: Iterable[str] | None = None, *, on: object = None) -> Svg:
        """A portfolio picture (SVG): one row per case (every case when None), from its
        creation to its last event, its decided steps and its target date."""
        svg: Svg = _views().portfolio_svg(self, cases=cases, on=date_or_today(on))
        return svg

    def events_frame(self, case_id: str | None = None) -> pandas.DataFrame:
        """:meth:`events` as a pandas DataFrame (needs the ``notebook`` extra)."""
        return _views().events_frame(self.events(case_id))

    # -- appending ----------------------------------------------------------------------

    def _keep_for_rollback(self, case: Case) -> None:
        """Inside a bulk block, before ``case`` first changes: remember how it was, so a
        block that is rolled back restores it."""
        if self._bulk_depth and case not in self._bulk_touched:
            self._bulk_touched[case] = case._snapshot()

    def _find_key(self, case: Case, key: str) -> Event | None:
        with translate("look up an idempotency key"):
            row = self._conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE case_id = ? "
                                     f"AND key = ?", (case.id, key)).fetchone()
        return None if row is None else stored_event(row)

    @staticmethod
    def _check_retry(stored: Event, *, trigger: str, actor: str, on: dt.date | None,
                     note: str | None, data: Mapping[str, Any], by: str | None = None) -> None:
        """Refuse a retry under ``stored``'s key with other content (``on`` None: the step
        gave no date, so it meant the day it was first taken)."""
        given = (trigger, actor, stored.on if on is None else on, note,
                 canonical_json(dict(data)), by)
        kept = (stored.trigger, stored.actor, stored.on, stored.note,
                canonical_json(dict(stored.data)), stored.by)
        if given != kept:
            raise InvalidInputError(
                f"The idempotency key {stored.key!r} of case {stored.case_id!r} was used for "
                f"event {stored.seq} ({stored.trigger!r} by {stored.actor!r} on "
                f"{stored.on.isoformat()}) with other content; a key names one event only.")

    def _append(self, case: Case, decision: Decision, *, note: str | None,
                data: dict[str, Any], key: str | None, by: str | None = None,
                dated: bool = True) -> Event:
        """Persist one decided step atomically and advance ``case``; or raise, writing nothing."""
        wf = case.definition
        source = case._state.config
        recorded_at = utc_now()
        fields = (case._id, case._state.version + 1, "fire", decision.trigger, decision.actor,
                  date_text(decision.on), utc_text(recorded_at), json_list(source),
                  json_list(decision.target), note, canonical_json(data) if data else "{}",
                  wf.name, wf.version, key)
        final = int(case._engine.is_final(decision.target))
        return self._append_row(case, fields, final=final, data=data, by=by,
                                what=f"record {decision.trigger!r} on case {case._id!r}",
                                transition=decision.transition, dated=dated,
                                made=(decision.on, recorded_at, source, decision.target))

    def _append_expect(self, case: Case, *, actor: str, on: dt.date, note: str | None,
                       data: dict[str, Any], key: str | None, dated: bool = True) -> Event:
        """Persist an expectation (kind "expect": no change of state) and advance ``case``."""
        wf = case.definition
        state = json_list(case.state)
        fields = (case.id, case.version + 1, "expect", "expect", actor, on.isoformat(),
                  utc_now().isoformat(), state, state, note, canonical_json(data), wf.name,
                  wf.version, key)
        return self._append_row(case, fields, final=int(case.is_final), data=data,
                                what=f"record an expectation on case {case.id!r}",
                                dated=dated)

    def _append_row(self, case: Case, fields: tuple[Any, ...], *, final: int,
                    data: dict[str, Any], what: str, moves_to: Workflow | None = None,
                    transition: TransitionDef | None = None, dated: bool = True,
                    made: tuple[dt.date, dt.datetime, frozenset[str], frozenset[str]] | None
                    = None, digest: str | None = None, by: str | None = None) -> Event:
        """Append an event as ``case``'s next in one transaction, or raise writing nothing.

        ``fields``: the event's hashed fields up to ``prev_hash`` (EVENT_FIELDS up to
        ``key``), which the head read in the transaction completes; ``digest`` and ``by``:
        the workflow digest and the person it commits to besides.

        A retry with a stored idempotency key returns the stored event instead (``dated``
        False: the caller gave no date, so the stored event's date is the one it meant).
        ``transition``: a fire's transition, as its decision found it. ``made``: the date,
        time, source and target the row's text was written from, when at hand.
        """
        seq, key = fields[1], fields[13]
        with self._write(what):
            # the head with the last date and the highest feed position in one read
            # (PostgreSQL locks the row FOR UPDATE, and numbers positions after the commit)
            head = self._conn.one(SELECT_HEAD, (case._id,))
            if head is None:
                raise CaseNotFoundError(self._not_found(case._id))
            if key is not None:
                stored = self._conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE case_id = ? AND key = ?",
                    (case._id, key)).fetchone()
                if stored is not None:
                    event = stored_event(stored)
                    self._check_retry(event, trigger=fields[3], actor=fields[4],
                                      on=dt.date.fromisoformat(fields[5]) if dated else None,
                                      note=fields[9], data=data, by=by)
                    return event
            if head[0] != case._state.version or head[1] != case.head_hash:
                # The decision was made on this copy's state: it may be written only onto
                # the very log that state came from (same last event, same hash).
                raise ConcurrencyError(
                    f"Case {case._id!r} changed since it was read: it is at event {head[0]}, "
                    f"this copy at {case._state.version}"
                    + ("" if head[0] != case._state.version else
                       " with another history (a step it saw was rolled back)")
                    + ". Load it again and decide anew.")
            hashed = (*fields, head[1])
            digest_of = fields_hash(hashed, digest, by)
            position = _next_position(head[3])
            insert_fields(self._conn, hashed, digest_of, digest, by, position)
            on_date, recorded, target = fields[5], fields[6], fields[8]
            if head[2] == on_date:  # the same day: last_on stays
                self._conn.run(UPDATE_CASE_SAME_DAY, (target, seq, digest_of, final,
                                                      recorded, case._id))
            else:
                self._conn.run(UPDATE_CASE, (target, seq, on_date, digest_of, final,
                                             recorded, case._id))
            if moves_to is not None:
                self._conn.execute("UPDATE cases SET workflow_version = ? WHERE case_id = ?",
                                   (moves_to.version, case._id))
            if made is None:
                event = row_to_event((*hashed, digest_of, digest, by, position))
            else:
                event = built_event(hashed, digest_of, by, position, *made)
            before = case._state
            after = self._state_after(case, event, data, moves_to, transition)
            history = (*case._history, event)
            if moves_to is None:
                projections.advance(self._conn, case._engine, case._id, before, after, history)
            else:  # another version: its rows are made anew
                projections.replace(self._conn, engine_for(moves_to), case._id, after, history)
        if self._bulk_depth:
            self._keep_for_rollback(case)
        numbered = self._position(event) if self._pg else event
        case._advance(numbered, moves_to, after,
                      history if numbered is event else (*case._history, numbered))
        if self._committed_mark is not None:
            self._after_commit()
        return numbered

    def _state_after(self, case: Case, event: Event, data: dict[str, Any],
                     moves_to: Workflow | None = None,
                     transition: TransitionDef | None = None) -> CaseState:
        """The state ``event`` leaves ``case`` in (as replay applies it; ``data``: the step's
        own copy of its data, equal to the event's), with the case's ``timers`` rows kept
        with it."""
        engine = case._engine
        state = case._state
        if moves_to is not None:  # a migration: the new version's timers replace the old
            new = engine_for(moves_to)
            after = new.rebase(migrated_state(state, event.target,
                                              ballots=data["migrate"]["ballots"],
                                              seq=event.seq, on=event.on))
            if engine.timed or new.timed:
                sync_timers(self._conn, case._id, new, after,
                            before=timer_rows(engine, state) if engine.timed else [])
            return after
        if event.kind == "fire":
            after = engine.apply(state, trigger=event.trigger, actor=event.actor, on=event.on,
                                 seq=event.seq, target=event.target, data=data, by=event.by,
                                 transition=transition)
        else:
            after = attrs.evolve(state, version=event.seq, last_on=event.on)
        if not engine.timed or engine.same_timers(state, after):
            return after
        # the table holds what the case's state before this event says (the head check
        # proved this copy is the log's latest): write only what changes
        sync_timers(self._conn, case._id, engine, after, before=timer_rows(engine, state))
        return after

    # -- time -----------------------------------------------------------------------------

    def tick(self, on: object = None) -> TickReport:
        """Let the clock take every timed step that has fallen due on or before ``on``
        (default today), across all cases, in date order; each exactly once.

        Each step is its own transaction, dated with its timer's own date (not ``on``),
        so a late tick writes the same log as a punctual one; a step that makes another
        fall due (a chain) is followed in the same call. Running it again, or in
        several processes at once, takes nothing twice. See docs/workflow-files.md.
        """
        if self._closed:
            raise StoreError("The store is closed.")
        when = dt.date.today() if on is None else to_date(on, "on")
        return _tick(self, when)

    def rebuild_timers(self) -> int:
        """Recompute the ``timers`` table from the log (one transaction); returns its rows."""
        return rebuild_timers(self)

    # -- moving cases to another workflow version (docs/versioning.md) -------------------

    def plan_migration(self, to: Workflow | str, *, cases: Iterable[str] | None = None,
                       mapping: Mapping[str, str] | None = None,
                       ballots: str = "keep") -> MigrationPlan:
        """Per case: can it move to workflow version ``to``, to which state, or why not.

        ``to`` is a Workflow, a bundled name, a path, or ``"NAME@VERSION"`` for a version
        stored here (to migrate back). ``cases`` defaults to every open case of that
        workflow on another version. ``mapping`` maps old leaf state ids to new ones (a
        state not named keeps its id); ``ballots`` is ``"keep"`` or ``"reset"`` for the
        ballots of open votes. Nothing is written.
        """
        from .migrating import plan

        return plan(self, to, cases=cases, mapping=mapping, ballots=ballots)

    def migrate(self, to: Workflow | str, *, actor: str, on: object,
                cases: Iterable[str] | None = None, mapping: Mapping[str, str] | None = None,
                ballots: str = "keep", note: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> MigrationPlan:
        """Move every case that can to version ``to``, recording one ``migrate`` event each
        (in the hash chain); the others are left untouched and listed in the result.
        Planned and written in one transaction. Arguments as :meth:`plan_migration`;
        ``progress(done, total)`` is called now and then."""
        from .migrating import migrate

        return migrate(self, to, cases=cases, mapping=mapping, ballots=ballots, actor=actor,
                       on=on, note=note, progress=progress)

    # -- importing ----------------------------------------------------------------------

    def import_events(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Create cases and fire steps from ``records`` in one transaction, all or nothing.

        The fast path for loading a history. Each record is decided, hashed and chained
        exactly as :meth:`create_case` and :meth:`Case.fire` would, and the log written
        is the same; but no Case or Event objects are made and the rows are written in
        batches, so the import runs a few times faster and its memory stays flat however
        many records there are. A record is a mapping:

        - ``{"case_id", "trigger": "create", "workflow", "actor", "on", "data", "note",
          "by"}``
          starts a case (``workflow`` is a Workflow or a bundled name or a path);
        - ``{"case_id", "trigger", "actor", "on", "data", "note", "by"}`` fires a step.

        ``on`` defaults to today, ``data`` and ``note`` are optional; any other field
        (an idempotency key included: keys are not taken here) is refused. Keep each
        case's records together and in order: a case that comes back after another is
        reloaded from the log first. A refused step raises
        TransitionRefusedError naming the record, and nothing of the import is stored.
        Returns the number of events stored.
        """
        from .importing import import_events

        return import_events(self, records)

    # -- verification -------------------------------------------------------------------

    def heads(self) -> dict[str, dict[str, Any]]:
        """Each case's head: ``{case_id: {"seq": last sequence number, "hash": its hash}}``.

        Export this somewhere the database's writers can't reach; ``verify(heads=...)``
        later proves that no recorded event was rewritten since.
        """
        with translate("read the head hashes"):
            rows = self._conn.execute("SELECT case_id, seq, head_hash FROM cases "
                                      "ORDER BY case_id").fetchall()
        return {r["case_id"]: {"seq": r["seq"], "hash": r["head_hash"]} for r in rows}

    def verify(self, *, heads: Mapping[str, Mapping[str, Any]] | None = None,
               strict: bool = False) -> VerifyReport:
        """Check the whole log: hash chains, the workflow texts, every step re-decided by
        the engine, and every column of the current-state table (docs/reliability.md).

        With ``heads`` (an earlier export of :meth:`heads`), also check that each
        exported head is still in the log with the same hash. Every problem names the
        case, the event and the rule. What can't be re-checked here (a guard that is
        not registered in this process) is counted in ``report.unchecked``; with
        ``strict=True`` each of those is a problem too.
        """
        if self._closed:
            raise StoreError("The store is closed.")
        with translate("verify the log"):
            return verify_store(self, heads=heads, strict=strict)


#: Unicode categories a case id may not contain: controls (C0, DEL, C1), format
#: characters (bidi controls, zero-width characters, soft hyphens) and line separators.
_HIDDEN_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible formatting character",
                      "Zl": "a line separator", "Zp": "a paragraph separator"}


#: What one commit stored, for the subscribers: the highest feed position before it, and
#: the (case id, seq) of each event it wrote.
_Committed = tuple[int, frozenset[tuple[str, int]]]

#: One lock per database file, shared by the writers of this process (Store._writer_turn).
_WRITER_LOCKS: dict[str, threading.RLock] = {}
_WRITER_LOCKS_LOCK = threading.Lock()


def _unreadable(case_id: str, rows: Sequence[sqlite3.Row], error: Exception) -> str:
    """Which of a case's rows can't be read as an event, and why (a row edited behind the
    library's back: the case can't be loaded, let alone moved on)."""
    what = "its events can't be replayed"
    for row in rows:
        try:
            event = row_to_event(row)
        except (ValueError, TypeError, RecursionError) as e:
            what, error = f"its event {row[1]!r} can't be read", e
            break
        if not isinstance(event.data, Mapping):
            what = f"its event {row[1]!r} can't be read"
            error = ValueError(f"data {shortened(str(row[10]), 120)} is not a JSON object")
            break
    return (f"Case {case_id!r} can't be loaded: {what} ({type(error).__name__}: "
            f"{shortened(str(error), 120)}); {_rows.CHANGED_BEHIND}")


def _next_position(highest: int | None) -> int | None:
    """The next feed position after the highest read in the transaction; None where the
    backend numbers events after the commit (PostgreSQL reads NULL)."""
    return None if highest is None else highest + 1


def _writer_lock(path: str) -> threading.RLock | None:
    if path == ":memory:" or postgres.is_database_url(path):
        return None  # each :memory: connection is its own database
    key = os.path.realpath(path)
    with _WRITER_LOCKS_LOCK:
        lock = _WRITER_LOCKS.get(key)
        if lock is None:
            lock = _WRITER_LOCKS[key] = threading.RLock()
        return lock


def check_case_id(case_id: object) -> str:
    """``case_id`` if it is an unambiguous id: NFC text without hidden characters.

    Two ids that look the same are the same id: an id must be in Unicode's composed form
    (NFC) and may not contain control characters, bidi controls or zero-width
    characters. Notes and data are stored verbatim; only ids are held to this.
    """
    text = check_text(case_id, "case id", max_length=MAX_ID_LENGTH)
    if not text.strip():
        raise InvalidInputError("case id must not be empty.")
    for i, c in enumerate(text):
        kind = _HIDDEN_CATEGORIES.get(unicodedata.category(c))
        if kind is not None:
            raise InvalidInputError(
                f"case id {text!r} contains {kind} (U+{ord(c):04X}, "
                f"{unicodedata.name(c, 'unnamed')}) at position {i}; a case id is visible "
                f"text only, so that two ids that look alike are the same id.")
    nfc = unicodedata.normalize("NFC", text)
    if nfc != text:
        raise InvalidInputError(
            f"case id {text!r} is not in Unicode's composed form (NFC); write it as "
            f"{nfc!r}, which looks the same (e.g. unicodedata.normalize('NFC', case_id)).")
    return text


def open_store(path: str | os.PathLike[str] = ":memory:", *, durability: str = "full",
               timeout: float = 30.0, create: bool = True,
               max_pages: int | None = None, readonly: bool = False) -> Store:
    """Open (and create or migrate) the event log at ``path``; ``":memory:"`` for a scratch one.

    ``durability="full"`` (the default) syncs every commit to disk; ``"normal"`` is
    faster and survives a crash of the process, but may lose the last commits on a
    power cut. ``create=False`` refuses a missing file instead of creating it.
    ``max_pages`` caps the file at that many pages (SQLite's ``max_page_count``, for
    this connection only): a write that would grow it further raises ``StoreError``
    and stores nothing. It is how the tests simulate a full disk.

    ``readonly=True`` opens an existing file read-only (SQLite's ``mode=ro``): it never
    creates, migrates or writes, so a read-only file or folder can be inspected; a write
    through it raises ``StoreError``. ``timeout`` (seconds to wait for another writer)
    is a number from 0 to 86400. A store belongs to the thread that opened it.
    """
    return Store(path, durability=durability, timeout=timeout, create=create,
                 max_pages=max_pages, readonly=readonly)


def _views() -> Any:
    """The display layer, which sits above the store: the one way Store's display methods
    reach it, imported when first shown (see tests/test_architecture.py)."""
    from .. import views

    return views
