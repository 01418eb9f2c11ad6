"""The event log: SQLite through sqlite-utils. All SQL of approvalflow lives here.

- ``events`` is append-only (triggers refuse UPDATE and DELETE); each row carries a
  SHA-256 hash over its canonical bytes and the previous event's hash in the case.
- ``cases`` holds each case's current state and head hash, updated in the same
  transaction as the event that changes it.
- ``workflows`` keeps the exact text of every workflow version a case was created
  with, so replay uses the definition the case ran on, whatever the files say now.

One fire is one ``BEGIN IMMEDIATE`` transaction: expected-version check, event insert,
current-state update, commit; or rollback and nothing written. sqlite3 errors are
translated into :class:`~approvalflow.errors.StoreError` in one place, ``_translate``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

if TYPE_CHECKING:  # imported when first needed (Store.db): it imports pandas where installed
    import sqlite_utils

from .canonical import canonical_json, check_data, check_text, sha256_hex, to_date
from .case import MAX_ID_LENGTH, MAX_NOTE_LENGTH, Case, Event, check_actor
from .definition import Workflow, load_workflow, loads_workflow
from .engine import CaseState, Decision, Engine, engine_for
from .errors import (
    ApprovalflowError,
    CaseExistsError,
    CaseNotFoundError,
    ConcurrencyError,
    DefinitionError,
    InvalidInputError,
    SchemaVersionError,
    StoreError,
    TransitionRefusedError,
)
from .forecast import DueItem, due_items, sort_due

if TYPE_CHECKING:
    import pandas

__all__ = ["Store", "open_store", "CaseSummary", "VerifyReport", "SCHEMA_VERSION"]

#: What a bulk block says once the database failed inside it (a full disk, say).
_BULK_FAILED = ("A step inside this bulk block failed in the database (such as a full disk); "
                "nothing of the block is stored. Leave the block and start again.")
#: The schema this version writes. 1: events, cases, workflows tables with hash chain.
#: 2: a ``store_meta`` table recording when and by which approvalflow the file was
#: created or last migrated.
SCHEMA_VERSION = 2
GENESIS = "0" * 64
DURABILITY = {"full": "FULL", "normal": "NORMAL"}


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


@attrs.frozen
class VerifyReport:
    """The result of a whole-log check: ``ok`` when ``problems`` is empty."""

    problems: list[str]
    cases: int
    events: int

    @property
    def ok(self) -> bool:
        return not self.problems


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """Turn sqlite3's errors into StoreError with a message that says what to do."""
    try:
        yield
    except ApprovalflowError:
        raise
    except sqlite3.Error as e:
        text = str(e)
        if "full" in text:
            hint = "the database or the disk is full; free space (or raise max_page_count)"
        elif "locked" in text or "busy" in text:
            hint = "another process held the database longer than the busy timeout; retry"
        elif "not a database" in text or "malformed" in text:
            hint = "the file is not an approvalflow database, or it is damaged"
        elif "readonly" in text or "read-only" in text:
            hint = "the database file or its folder is read-only"
        elif "append-only" in text:
            hint = "recorded events are never changed or deleted"
        else:
            hint = "nothing was written"
        raise StoreError(f"Could not {what}: {text} ({hint}).") from e


# Hot-path helpers. _canonical is canonical_json without json.dumps' per-call set-up (the
# same encoder settings, so the same bytes); states and dates repeat across events, so
# their parsed and printed forms are memoised (immutable values, bounded caches).
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode
_STATE_TEXT: dict[frozenset[str], str] = {}
_STATE_SET: dict[str, frozenset[str]] = {}
_DATES: dict[str, dt.date] = {}
_MEMO_LIMIT = 10_000


def _json_list(states: frozenset[str]) -> str:
    text = _STATE_TEXT.get(states)
    if text is None:
        if len(_STATE_TEXT) > _MEMO_LIMIT:
            _STATE_TEXT.clear()
        text = _STATE_TEXT[states] = _canonical(sorted(states))
    return text


def _state_set(text: str) -> frozenset[str]:
    states = _STATE_SET.get(text)
    if states is None:
        if len(_STATE_SET) > _MEMO_LIMIT:
            _STATE_SET.clear()
        states = _STATE_SET[text] = frozenset(json.loads(text))
    return states


def _date(text: str) -> dt.date:
    day = _DATES.get(text)
    if day is None:
        if len(_DATES) > _MEMO_LIMIT:
            _DATES.clear()
        day = _DATES[text] = dt.date.fromisoformat(text)
    return day


def _selected_hash(row: sqlite3.Row | tuple[Any, ...]) -> str:
    """:func:`_event_hash` of a row selected as ``SELECT {_EVENT_COLUMNS}`` (the hashed
    fields are its first 15 columns, in the same order), without a lookup by name."""
    return sha256_hex(_canonical(row[:15]))  # a tuple encodes as the same JSON array


def _event_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical bytes of an event row (everything but the hash itself)."""
    return sha256_hex(_canonical([
        row["case_id"], row["seq"], row["kind"], row["trigger"], row["actor"], row["on_date"],
        row["recorded_at"], row["source"], row["target"], row["note"], row["data"],
        row["workflow"], row["workflow_version"], row["key"], row["prev_hash"],
    ]))


_EVENT_COLUMNS = ("case_id, seq, kind, trigger, actor, on_date, recorded_at, source, target, "
                  "note, data, workflow, workflow_version, key, prev_hash, hash")


def _row_to_event(row: Mapping[str, Any] | sqlite3.Row | tuple[Any, ...]) -> Event:
    """An Event from a dict row, or from a row selected as ``SELECT {_EVENT_COLUMNS}`` (read
    by position: a lookup by name on sqlite3.Row scans the column names)."""
    if isinstance(row, (sqlite3.Row, tuple)):  # noqa: UP038 (faster than a union)
        (case_id, seq, kind, trigger, actor, on_date, recorded_at, source, target, note, data,
         workflow, workflow_version, key, prev_hash, hash_) = row[:16]
    else:
        case_id, seq, kind, trigger, actor = (row["case_id"], row["seq"], row["kind"],
                                              row["trigger"], row["actor"])
        on_date, recorded_at, source, target = (row["on_date"], row["recorded_at"],
                                                row["source"], row["target"])
        note, data, workflow, workflow_version = (row["note"], row["data"], row["workflow"],
                                                  row["workflow_version"])
        key, prev_hash, hash_ = row["key"], row["prev_hash"], row["hash"]
    return Event(
        case_id=case_id, seq=seq, trigger=trigger, actor=actor, on=_date(on_date),
        recorded_at=dt.datetime.fromisoformat(recorded_at), source=_state_set(source),
        target=_state_set(target), note=note, data={} if data == "{}" else json.loads(data),
        workflow=workflow, workflow_version=workflow_version, kind=kind, key=key,
        prev_hash=prev_hash, hash=hash_,
    )


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


#: migrations[n] brings a database from schema n to n + 1. Every pending migration runs
#: in one transaction, with the new user_version and the store_meta record.
_MIGRATIONS = {0: _migrate_0_to_1, 1: _migrate_1_to_2}


def _package_version() -> str:
    import importlib.metadata  # only when a file is created or migrated: ~7 ms at start-up

    try:
        return "approvalflow " + importlib.metadata.version("approvalflow")
    except importlib.metadata.PackageNotFoundError:
        return "approvalflow (version unknown)"


def _record_meta(conn: sqlite3.Connection, *, created: bool, start: int) -> None:
    now, by = _now().isoformat(), _package_version()
    rows = ({"created_at": now, "created_by": by} if created else
            {"migrated_at": now, "migrated_by": by, "migrated_from": str(start)})
    conn.executemany("INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)",
                     list(rows.items()))


class Store:
    """An event log in one SQLite file. Open it with :func:`open_store`."""

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "full",
                 timeout: float = 30.0, create: bool = True,
                 max_pages: int | None = None) -> None:
        if durability not in DURABILITY:
            raise InvalidInputError(f"durability must be one of {sorted(DURABILITY)}, "
                                    f"not {durability!r}.")
        if max_pages is not None and (isinstance(max_pages, bool)
                                      or not isinstance(max_pages, int) or max_pages < 1):
            raise InvalidInputError(f"max_pages must be a whole number of pages (1 or more) "
                                    f"or None, not {max_pages!r}.")
        self.path = os.fspath(path)
        self.durability = durability
        if not create and self.path != ":memory:" and not Path(self.path).is_file():
            raise StoreError(f"There is no database at {self.path!r}; create one with "
                             f"'approvalflow new' or approvalflow.open_store().")
        with _translate(f"open the database {self.path!r}"):
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=timeout,
                                         check_same_thread=True)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if self.path != ":memory:":
                mode = _enable_wal(self._conn, timeout)
                if mode.lower() != "wal":
                    raise StoreError(f"Could not switch {self.path!r} to WAL mode "
                                     f"(it is in {mode!r}).")
            self._conn.execute(f"PRAGMA synchronous = {DURABILITY[durability]}")
            if max_pages is not None:
                self._conn.execute(f"PRAGMA max_page_count = {max_pages}")
            self._db: sqlite_utils.Database | None = None
            self._migrate()
        self._workflows: dict[tuple[str, int], Workflow] = {}
        self._bulk_depth = 0
        self._bulk_failed = False
        self._closed = False

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection as a sqlite-utils Database (for schema work), made on first use."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self._conn)
        return self._db

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.path!r}>"

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        try:
            current = self.schema_version
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path!r} is not an approvalflow database, or it is "
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
                    raise StoreError(f"{self.path!r} holds tables {sorted(tables)} but is not "
                                     f"an approvalflow database; use another file.")
            while current < SCHEMA_VERSION:
                _MIGRATIONS[current](self.db)
                current += 1
            if start < SCHEMA_VERSION:
                _record_meta(self._conn, created=start == 0, start=start)
                self._conn.execute(f"PRAGMA user_version = {current}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _check_not_newer(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path!r} has schema version {current}, written by a newer approvalflow; "
                f"this one ({_package_version()}) reads schema versions up to "
                f"{SCHEMA_VERSION}. Upgrade approvalflow to open it.")

    @property
    def meta(self) -> dict[str, str]:
        """What the file records about itself (table ``store_meta``): ``created_at`` and
        ``created_by`` for a file created by schema 2 or later, ``migrated_at``,
        ``migrated_by`` and ``migrated_from`` for one brought up from an older schema."""
        with _translate("read the store's metadata"):
            rows = self._conn.execute("SELECT key, value FROM store_meta ORDER BY key")
            return {r["key"]: r["value"] for r in rows}

    def _rollback(self) -> None:
        # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR, ...); a
        # second ROLLBACK would fail and hide the error that explains what happened.
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[None]:
        """One IMMEDIATE transaction, all or nothing; inside ``bulk``, part of the bulk's."""
        if self._closed:
            raise StoreError("The store is closed.")
        with _translate(what):
            if self._bulk_depth:
                if self._bulk_failed or not self._conn.in_transaction:
                    raise StoreError(_BULK_FAILED)
                try:
                    yield
                except sqlite3.Error:
                    # The database failed part-way through a step (our own refusals come
                    # before any write): the block can no longer be all or nothing, so
                    # none of it will be stored.
                    self._bulk_failed = True
                    raise
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def bulk(self) -> Iterator[Store]:
        """Every create and fire inside is one transaction: all are stored, or none."""
        if self._bulk_depth:
            self._bulk_depth += 1
            try:
                yield self
            finally:
                self._bulk_depth -= 1
            return
        with _translate("run a bulk transaction"):
            self._conn.execute("BEGIN IMMEDIATE")
            self._bulk_depth = 1
            try:
                yield self
            except BaseException:
                self._bulk_depth = 0
                self._bulk_failed = False
                self._rollback()
                raise
            self._bulk_depth = 0
            if self._bulk_failed or not self._conn.in_transaction:
                self._bulk_failed = False
                self._rollback()
                raise StoreError(_BULK_FAILED)
            self._conn.execute("COMMIT")

    # -- workflows ----------------------------------------------------------------------

    def _register_workflow(self, wf: Workflow) -> None:
        row = self._conn.execute("SELECT digest FROM workflows WHERE name = ? AND version = ?",
                                 (wf.name, wf.version)).fetchone()
        if row is None:
            self._conn.execute(
                "INSERT INTO workflows (name, version, digest, source, stored_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (wf.name, wf.version, wf.digest, wf.source_text, _now().isoformat()))
        elif row["digest"] != wf.digest:
            raise DefinitionError(
                f"Workflow {wf.name!r} version {wf.version} in {self.path!r} has other content "
                f"than the one given; a changed workflow needs a new [workflow].version.")
        self._workflows[(wf.name, wf.version)] = wf

    def workflow(self, name: str, version: int) -> Workflow:
        """The workflow definition version a case was created with, as stored."""
        found = self._workflows.get((name, version))
        if found is not None:
            return found
        with _translate("read a workflow"):
            row = self._conn.execute("SELECT source FROM workflows WHERE name = ? AND version = ?",
                                     (name, version)).fetchone()
        if row is None:
            raise StoreError(f"Workflow {name!r} version {version} is not in {self.path!r}.")
        wf = loads_workflow(row["source"], source=f"{self.path}:workflows/{name}@v{version}",
                            strict_guards=False)
        self._workflows[(name, version)] = wf
        return wf

    # -- cases --------------------------------------------------------------------------

    def create_case(self, workflow: Workflow | str, case_id: str, *, actor: str,
                    on: object = None, data: Mapping[str, Any] | None = None,
                    note: str | None = None) -> Case:
        """Start a case in the workflow's initial state; its creation is event 1."""
        wf = workflow if isinstance(workflow, Workflow) else load_workflow(workflow)
        case_id = _check_case_id(case_id)
        actor = check_actor(actor)
        if actor not in wf.actors:
            raise InvalidInputError(f"{actor!r} is not an actor of workflow {wf.name!r}; "
                                    f"actors: {', '.join(sorted(wf.actors))}.")
        when = dt.date.today() if on is None else to_date(on, "on")
        payload = dict(check_data(data))
        if note is not None:
            check_text(note, "note", max_length=10_000)
        engine = engine_for(wf)
        state = engine.initial_state(payload, when)
        event_row = {
            "case_id": case_id, "seq": 1, "kind": "create", "trigger": "create",
            "actor": actor, "on_date": when.isoformat(), "recorded_at": _now().isoformat(),
            "source": "[]", "target": _json_list(state.config), "note": note,
            "data": canonical_json(payload), "workflow": wf.name,
            "workflow_version": wf.version, "key": None, "prev_hash": GENESIS,
        }
        event_row["hash"] = _event_hash(event_row)
        with self._write(f"create case {case_id!r}"):
            exists = self._conn.execute("SELECT 1 FROM cases WHERE case_id = ?",
                                        (case_id,)).fetchone()
            if exists:
                raise CaseExistsError(f"Case {case_id!r} already exists in {self.path!r}; "
                                      f"choose another id or load it with store.case().")
            self._register_workflow(wf)
            self._insert_event(event_row)
            self._conn.execute(
                "INSERT INTO cases (case_id, workflow, workflow_version, state, seq, last_on, "
                "head_hash, is_final, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (case_id, wf.name, wf.version, event_row["target"], 1, event_row["on_date"],
                 event_row["hash"], int(engine.is_final(state.config)),
                 event_row["recorded_at"], event_row["recorded_at"]))
        event = _row_to_event(event_row)
        return Case(self, wf, case_id, state, (event,))

    def _insert_event(self, row: Mapping[str, Any]) -> None:
        self._conn.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES "
            f"(:case_id, :seq, :kind, :trigger, :actor, :on_date, :recorded_at, :source, "
            f":target, :note, :data, :workflow, :workflow_version, :key, :prev_hash, :hash)",
            row)

    def _events(self, case_id: str, as_of: dt.date | None) -> list[sqlite3.Row]:
        if as_of is None:
            return self._conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE case_id = ? "
                                      f"ORDER BY seq", (case_id,)).fetchall()
        return self._conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE case_id = ? "
                                  f"AND on_date <= ? ORDER BY seq",
                                  (case_id, as_of.isoformat())).fetchall()

    def case(self, case_id: str, *, as_of: object = None) -> Case:
        """Load a case by replaying its events; ``as_of`` keeps only events dated on or before."""
        case_id = _check_case_id(case_id)
        when = None if as_of is None else to_date(as_of, "as_of")
        with _translate(f"load case {case_id!r}"):
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
        events = [_row_to_event(r) for r in rows]
        wf = self.workflow(events[0].workflow, events[0].workflow_version)
        state = replay(engine_for(wf), events)
        return Case(self, wf, case_id, state, tuple(events), as_of=when)

    def _not_found(self, case_id: str) -> str:
        ids = [r[0] for r in self._conn.execute(
            "SELECT case_id FROM cases ORDER BY case_id LIMIT 6").fetchall()]
        known = ", ".join(repr(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
        return (f"There is no case {case_id!r} in {self.path!r}; "
                + (f"cases: {known}." if ids else "the store holds no cases."))

    def cases(self, *, workflow: str | None = None, state: str | None = None) -> list[CaseSummary]:
        """Every case's summary, from the current-state table, sorted by id."""
        sql = "SELECT * FROM cases"
        params: list[Any] = []
        if workflow is not None:
            sql += " WHERE workflow = ?"
            params.append(workflow)
        sql += " ORDER BY case_id"
        with _translate("list cases"):
            rows = self._conn.execute(sql, params).fetchall()
        out = []
        known: set[str] = set()  # the states of the workflows these cases run on
        for r in rows:
            leaves = frozenset(json.loads(r["state"]))
            if state is not None:
                wf = self.workflow(r["workflow"], r["workflow_version"])
                known |= wf.states
                if state not in engine_for(wf).active(leaves):
                    continue
            out.append(CaseSummary(
                case_id=r["case_id"], workflow=r["workflow"],
                workflow_version=r["workflow_version"], state=leaves, version=r["seq"],
                last_on=dt.date.fromisoformat(r["last_on"]), is_final=bool(r["is_final"]),
                updated_at=dt.datetime.fromisoformat(r["updated_at"])))
        if state is not None and rows and state not in known:
            raise InvalidInputError(
                f"No workflow of these cases has a state {state!r}; states: "
                f"{', '.join(sorted(known))}.")
        return out

    def due(self, on: object = None, within_days: int = 14, *, as_of: object = None,
            workflow: str | None = None) -> list[DueItem]:
        """Across all open cases: deadlines and expected steps overdue or due within
        ``within_days`` of ``on`` (default today), the earliest first.

        ``as_of`` loads each case as it was known on that date (cases created later are
        left out). See docs/forecast.md.
        """
        when = dt.date.today() if on is None else to_date(on, "on")
        if isinstance(within_days, bool) or not isinstance(within_days, int) \
                or not 0 <= within_days <= 36_500:
            raise InvalidInputError(f"within_days must be a whole number of days from 0 to "
                                    f"36500, not {within_days!r}.")
        known = None if as_of is None else to_date(as_of, "as_of")
        sql = "SELECT case_id FROM cases"
        clauses, params = [], []
        if known is None:
            clauses.append("is_final = 0")
        if workflow is not None:
            clauses.append("workflow = ?")
            params.append(workflow)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with _translate("list the open cases"):
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
        with _translate("read events"):
            rows: Iterable[sqlite3.Row]
            if case_id is not None:
                rows = self._events(case_id, None)
            else:
                rows = self._conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY case_id, seq")
            for r in rows:
                yield _row_to_event(r)

    def events_frame(self, case_id: str | None = None) -> pandas.DataFrame:
        """:meth:`events` as a pandas DataFrame (needs the ``notebook`` extra)."""
        from .notebook import events_frame  # pandas is optional, imported when asked

        return events_frame(self.events(case_id))

    # -- appending ----------------------------------------------------------------------

    def _find_key(self, case: Case, key: str) -> Event | None:
        with _translate("look up an idempotency key"):
            row = self._conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE case_id = ? "
                                     f"AND key = ?", (case.id, key)).fetchone()
        return None if row is None else _row_to_event(row)

    @staticmethod
    def _check_retry(stored: Event, *, trigger: str, actor: str, on: dt.date,
                     note: str | None, data: Mapping[str, Any]) -> None:
        given = (trigger, actor, on, note, canonical_json(dict(data)))
        kept = (stored.trigger, stored.actor, stored.on, stored.note,
                canonical_json(dict(stored.data)))
        if given != kept:
            raise InvalidInputError(
                f"The idempotency key {stored.key!r} of case {stored.case_id!r} was used for "
                f"event {stored.seq} ({stored.trigger!r} by {stored.actor!r} on "
                f"{stored.on.isoformat()}) with other content; a key names one event only.")

    def _append(self, case: Case, decision: Decision, *, note: str | None,
                data: dict[str, Any], key: str | None) -> Event:
        """Persist one decided step atomically and advance ``case``; or raise, writing nothing."""
        wf = case.definition
        seq = case.version + 1
        row: dict[str, Any] = {
            "case_id": case.id, "seq": seq, "kind": "fire", "trigger": decision.trigger,
            "actor": decision.actor, "on_date": decision.on.isoformat(),
            "recorded_at": _now().isoformat(), "source": _json_list(case.state),
            "target": _json_list(decision.target), "note": note, "data": canonical_json(data),
            "workflow": wf.name, "workflow_version": wf.version, "key": key,
        }
        final = int(engine_for(wf).is_final(decision.target))
        return self._append_row(case, row, final=final, data=data,
                                what=f"record {decision.trigger!r} on case {case.id!r}")

    def _append_expect(self, case: Case, *, actor: str, on: dt.date, note: str | None,
                       data: dict[str, Any], key: str | None) -> Event:
        """Persist an expectation (kind "expect": no change of state) and advance ``case``."""
        wf = case.definition
        state = _json_list(case.state)
        row: dict[str, Any] = {
            "case_id": case.id, "seq": case.version + 1, "kind": "expect", "trigger": "expect",
            "actor": actor, "on_date": on.isoformat(), "recorded_at": _now().isoformat(),
            "source": state, "target": state, "note": note, "data": canonical_json(data),
            "workflow": wf.name, "workflow_version": wf.version, "key": key,
        }
        return self._append_row(case, row, final=int(case.is_final), data=data,
                                what=f"record an expectation on case {case.id!r}")

    def _append_row(self, case: Case, row: dict[str, Any], *, final: int,
                    data: dict[str, Any], what: str) -> Event:
        """Append ``row`` as ``case``'s next event in one transaction, or raise writing nothing.

        A retry with a stored idempotency key returns the stored event instead.
        """
        seq, key = row["seq"], row["key"]
        with self._write(what):
            head = self._conn.execute("SELECT seq, head_hash FROM cases WHERE case_id = ?",
                                      (case.id,)).fetchone()
            if head is None:
                raise CaseNotFoundError(self._not_found(case.id))
            if key is not None:
                stored = self._conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE case_id = ? AND key = ?",
                    (case.id, key)).fetchone()
                if stored is not None:
                    event = _row_to_event(stored)
                    self._check_retry(event, trigger=row["trigger"], actor=row["actor"],
                                      on=dt.date.fromisoformat(row["on_date"]),
                                      note=row["note"], data=data)
                    return event
            if head["seq"] != case.version:
                raise ConcurrencyError(
                    f"Case {case.id!r} changed since it was read: it is at event {head['seq']}, "
                    f"this copy at {case.version}. Load it again and decide anew.")
            row["prev_hash"] = head["head_hash"]
            row["hash"] = _event_hash(row)
            self._insert_event(row)
            self._conn.execute(
                "UPDATE cases SET state = ?, seq = ?, last_on = ?, head_hash = ?, is_final = ?, "
                "updated_at = ? WHERE case_id = ?",
                (row["target"], seq, row["on_date"], row["hash"], final, row["recorded_at"],
                 case.id))
        event = _row_to_event(row)
        case._advance(event)
        return event

    # -- importing ----------------------------------------------------------------------

    def import_events(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Create cases and fire steps from ``records`` in one transaction, all or nothing.

        The fast path for loading a history. Each record is decided, hashed and chained
        exactly as :meth:`create_case` and :meth:`Case.fire` would, and the log written
        is the same; but no Case or Event objects are made and the rows are written in
        batches, so the import runs a few times faster and its memory stays flat however
        many records there are. A record is a mapping:

        - ``{"case_id", "trigger": "create", "workflow", "actor", "on", "data", "note"}``
          starts a case (``workflow`` is a Workflow or a bundled name or a path);
        - ``{"case_id", "trigger", "actor", "on", "data", "note"}`` fires a step.

        ``on`` defaults to today, ``data`` and ``note`` are optional; idempotency keys
        are not taken here. Keep each case's records together and in order: a case that
        comes back after another is reloaded from the log first. A refused step raises
        TransitionRefusedError naming the record, and nothing of the import is stored.
        Returns the number of events stored.
        """
        events: list[tuple[Any, ...]] = []
        new_cases: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        seen: set[str] = set()  # cases with rows in the buffer (the rest are in the db)
        registered: set[tuple[str, int]] = set()
        cur: dict[str, Any] | None = None  # the case being imported
        count = 0

        def close_case() -> None:
            if cur is None:
                return
            final = int(cur["engine"].is_final(cur["state"].config))
            target = _json_list(cur["state"].config)
            if cur["new"]:
                new_cases.append((cur["id"], cur["wf"].name, cur["wf"].version, target,
                                  cur["seq"], cur["last_on"], cur["hash"], final,
                                  cur["created_at"], cur["updated_at"]))
            elif cur["seq"] != cur["loaded_seq"]:
                updates.append((target, cur["seq"], cur["last_on"], cur["hash"], final,
                                cur["updated_at"], cur["id"]))

        def flush() -> None:
            if events:
                self._conn.executemany(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES "
                    f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", events)
            if new_cases:
                self._conn.executemany(
                    "INSERT INTO cases (case_id, workflow, workflow_version, state, seq, "
                    "last_on, head_hash, is_final, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)", new_cases)
            if updates:
                self._conn.executemany(
                    "UPDATE cases SET state = ?, seq = ?, last_on = ?, head_hash = ?, "
                    "is_final = ?, updated_at = ? WHERE case_id = ?", updates)
            events.clear()
            new_cases.clear()
            updates.clear()
            seen.clear()
            if cur is not None:
                seen.add(cur["id"])

        with self.bulk(), _translate("import events"):
            for number, record in enumerate(records, start=1):
                if not isinstance(record, dict) and not isinstance(record, Mapping):
                    raise InvalidInputError(f"record {number} is a {type(record).__name__} "
                                            f"({record!r}); records are mappings.")
                try:
                    case_id = record.get("case_id")
                    if cur is None or case_id != cur["id"]:  # the current one was checked
                        case_id = _check_case_id(case_id)
                    trigger = check_text(record.get("trigger"), "trigger",
                                         max_length=MAX_ID_LENGTH)
                    actor = check_actor(record.get("actor"))
                    on = record.get("on")
                    when = _DATES.get(on) if type(on) is str else None  # a date seen before
                    if when is None:
                        when = dt.date.today() if on is None else to_date(on, "on")
                    payload = dict(check_data(record.get("data")))
                    note = record.get("note")
                    if note is not None:
                        check_text(note, "note", max_length=MAX_NOTE_LENGTH)
                    wf: Any = record.get("workflow")
                    if trigger == "create" and not isinstance(wf, Workflow | str | os.PathLike):
                        raise InvalidInputError(f"a creation needs a 'workflow' (a Workflow, "
                                                f"a bundled name or a path), not {wf!r}.")
                except InvalidInputError as e:
                    raise InvalidInputError(f"record {number}: {e}") from e
                at = _now().isoformat()
                if trigger == "create":
                    close_case()
                    wf = wf if isinstance(wf, Workflow) else load_workflow(wf)
                    if actor not in wf.actors:
                        raise InvalidInputError(
                            f"record {number}: {actor!r} is not an actor of workflow "
                            f"{wf.name!r}; actors: {', '.join(sorted(wf.actors))}.")
                    if case_id in seen or self._conn.execute(
                            "SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone():
                        raise CaseExistsError(f"record {number}: case {case_id!r} already "
                                              f"exists in {self.path!r}.")
                    if (wf.name, wf.version) not in registered:
                        self._register_workflow(wf)
                        registered.add((wf.name, wf.version))
                    engine = engine_for(wf)
                    state = engine.initial_state(payload, when)
                    row = (case_id, 1, "create", "create", actor, when.isoformat(), at, "[]",
                           _json_list(state.config), note, _canonical(payload), wf.name,
                           wf.version, None, GENESIS)
                    cur = {"id": case_id, "wf": wf, "engine": engine, "state": state,
                           "new": True, "created_at": at, "loaded_seq": 0}
                    seen.add(case_id)
                else:
                    if cur is None or cur["id"] != case_id:
                        close_case()
                        if case_id in seen:
                            flush()
                        case = self.case(case_id)
                        cur = {"id": case_id, "wf": case.definition,
                               "engine": engine_for(case.definition),
                               "state": case.engine_state, "new": False,
                               "hash": case.history[-1].hash, "loaded_seq": case.version}
                        seen.add(case_id)
                    state, engine = cur["state"], cur["engine"]
                    decision = engine.evaluate(state, trigger, actor=actor, on=when,
                                               data=payload, case_id=case_id)
                    if decision.reasons:
                        raise TransitionRefusedError(
                            f"Can't import record {number}, {trigger!r} on case {case_id!r} "
                            f"by {actor!r}: " + "; ".join(decision.reasons) + ".",
                            list(decision.reasons))
                    wf, seq = cur["wf"], state.version + 1
                    text = _canonical(payload) if payload else "{}"
                    row = (case_id, seq, "fire", trigger, actor, when.isoformat(), at,
                           _json_list(state.config), _json_list(decision.target), note, text,
                           wf.name, wf.version, None, cur["hash"])
                    cur["state"] = engine.apply(
                        state, trigger=trigger, actor=actor, on=when, seq=seq,
                        target=decision.target, data=json.loads(text) if payload else {})
                digest = sha256_hex(_canonical(row))  # a tuple encodes as the same JSON array
                events.append((*row, digest))
                cur.update(hash=digest, seq=row[1], last_on=row[5], updated_at=at)
                count += 1
                if len(events) >= 2000:
                    close_case()  # its row goes with this batch, and is updated when it ends
                    flush()
                    cur["new"], cur["loaded_seq"] = False, cur["seq"]
            close_case()
            flush()
        return count

    # -- verification -------------------------------------------------------------------

    def heads(self) -> dict[str, dict[str, Any]]:
        """Each case's head: ``{case_id: {"seq": last sequence number, "hash": its hash}}``.

        Export this somewhere the database's writers can't reach; ``verify(heads=...)``
        later proves that no recorded event was rewritten since.
        """
        with _translate("read the head hashes"):
            rows = self._conn.execute("SELECT case_id, seq, head_hash FROM cases "
                                      "ORDER BY case_id").fetchall()
        return {r["case_id"]: {"seq": r["seq"], "hash": r["head_hash"]} for r in rows}

    def verify(self, *, heads: Mapping[str, Mapping[str, Any]] | None = None) -> VerifyReport:
        """Check the whole log: hash chains, sequence, dates, replay, and the current-state table.

        With ``heads`` (an earlier export of :meth:`heads`), also check that each
        exported head is still in the log with the same hash. Every problem names the
        case and the sequence number.
        """
        problems: list[str] = []
        if heads is not None:
            problems.extend(self._verify_heads(heads))
        n_cases = n_events = 0
        with _translate("verify the log"):
            heads = {r["case_id"]: r for r in self._conn.execute("SELECT * FROM cases")}
            cursor = self._conn.cursor()
            cursor.row_factory = None  # plain tuples: the rows are read by position
            rows = cursor.execute(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY case_id, seq")
            current: str | None = None
            batch: list[tuple[Any, ...]] = []
            seen: set[str] = set()
            for r in rows:
                n_events += 1
                if r[0] != current:  # case_id
                    if current is not None:
                        problems.extend(self._verify_case(current, batch, heads.get(current)))
                        n_cases += 1
                    current, batch = r[0], []
                    seen.add(current)
                batch.append(r)
            if current is not None:
                problems.extend(self._verify_case(current, batch, heads.get(current)))
                n_cases += 1
            for case_id in sorted(set(heads) - seen):
                problems.append(f"case {case_id!r}: in the cases table but has no events")
        return VerifyReport(problems=problems, cases=n_cases, events=n_events)

    def _verify_heads(self, heads: Mapping[str, Mapping[str, Any]]) -> list[str]:
        problems = []
        for case_id, head in sorted(heads.items()):
            try:
                seq, expected = int(head["seq"]), str(head["hash"])
            except (KeyError, TypeError, ValueError):
                problems.append(f"case {case_id!r}: the exported head {head!r} has no "
                                f"'seq' and 'hash'")
                continue
            row = self._conn.execute("SELECT hash FROM events WHERE case_id = ? AND seq = ?",
                                     (case_id, seq)).fetchone()
            if row is None:
                problems.append(f"case {case_id!r} event {seq}: exported earlier, no longer in "
                                f"the log")
            elif row["hash"] != expected:
                problems.append(f"case {case_id!r} event {seq}: its hash differs from the "
                                f"exported head (the chain was rewritten)")
        return problems

    def _verify_case(self, case_id: str, rows: list[tuple[Any, ...]],
                     head: Mapping[str, Any] | None) -> list[str]:
        problems: list[str] = []
        prev_hash = GENESIS
        last_on: str | None = None
        where = f"case {case_id!r}"
        for expected_seq, r in enumerate(rows, start=1):
            # by position, as selected with _EVENT_COLUMNS: seq 1, on_date 5, prev_hash 14, hash 15
            seq, on_date, prev, digest = r[1], r[5], r[14], r[15]
            if seq != expected_seq:
                problems.append(f"{where} event {seq}: expected sequence number {expected_seq} "
                                f"(an event is missing or was inserted)")
                return problems
            if prev != prev_hash:
                problems.append(f"{where} event {seq}: its previous-hash does not match event "
                                f"{expected_seq - 1}'s hash (an event before it was changed, "
                                f"removed or reordered)")
            if _selected_hash(r) != digest:
                problems.append(f"{where} event {seq}: its content does not match its hash "
                                f"(it was edited)")
            if last_on is not None and on_date < last_on:
                problems.append(f"{where} event {seq}: dated {on_date}, before the previous "
                                f"event's {last_on}")
            prev_hash, last_on = digest, on_date
        try:
            # Replay needs no timestamps, notes or Event objects: lean records are enough.
            steps = [_Recorded(r[0], r[1], r[2], r[3], r[4], _date(r[5]), _state_set(r[7]),
                               _state_set(r[8]), {} if r[10] == "{}" else json.loads(r[10]))
                     for r in rows]
            wf = self.workflow(rows[0][11], rows[0][12])
            state = replay(engine_for(wf), steps, check=problems)
        except (ApprovalflowError, ValueError, KeyError) as e:
            problems.append(f"{where}: can't be replayed: {e}")
            return problems
        if head is None:
            problems.append(f"{where}: has events but no row in the cases table")
            return problems
        if head["seq"] != len(rows):
            problems.append(f"{where}: the cases table says event {head['seq']} is the last, "
                            f"the log ends at event {len(rows)} (the tail was truncated or the "
                            f"table is stale)")
        if head["head_hash"] != prev_hash:
            problems.append(f"{where}: the cases table's head hash does not match the hash of "
                            f"event {len(rows)}")
        if frozenset(json.loads(head["state"])) != state.config:
            table_state = sorted(json.loads(head["state"]))
            problems.append(f"{where}: the cases table says state {table_state}"
                            f", the replay of its events gives {sorted(state.config)}")
        return problems


class _Recorded(NamedTuple):
    """What replay reads of an event; an :class:`Event` has the same attributes."""

    case_id: str
    seq: int
    kind: str
    trigger: str
    actor: str
    on: dt.date
    source: frozenset[str]
    target: frozenset[str]
    data: Mapping[str, Any]


def replay(engine: Engine, events: Sequence[Event] | Sequence[_Recorded], *,
           check: list[str] | None = None) -> CaseState:
    """Rebuild a case's state from its events. With ``check``, also re-derive each step
    from the definition and append every disagreement to ``check``."""
    first = events[0]
    if first.kind != "create":
        raise StoreError(f"case {first.case_id!r}: its first event is {first.trigger!r}, "
                         f"not its creation")
    state = engine.initial_state(first.data, first.on)
    if check is not None and first.target != state.config:
        check.append(f"case {first.case_id!r} event 1: created in {sorted(first.target)}, "
                     f"the workflow starts in {sorted(state.config)}")
    for e in events[1:]:
        if check is not None and e.kind == "fire":
            _check_step(engine, state, e, check)
        if e.kind == "fire":
            state = engine.apply(state, trigger=e.trigger, actor=e.actor, on=e.on, seq=e.seq,
                                 target=e.target, data=e.data)
        else:
            state = attrs.evolve(state, version=e.seq, last_on=e.on)
    return state


def _check_step(engine: Engine, state: CaseState, e: Event | _Recorded,
                check: list[str]) -> None:
    # each message starts f"case {e.case_id!r} event {e.seq}: ", built only when needed
    if e.source != state.config:
        check.append(f"case {e.case_id!r} event {e.seq}: recorded as leaving "
                     f"{sorted(e.source)}, but the case was in {sorted(state.config)}")
        return
    t = engine.enabled_transition(state.config, e.trigger)
    if t is None:
        check.append(f"case {e.case_id!r} event {e.seq}: {e.trigger!r} is not a step the "
                     f"workflow allows from {sorted(state.config)}")
        return
    if e.actor not in t.actors:
        check.append(f"case {e.case_id!r} event {e.seq}: {e.actor!r} may not take {e.trigger!r}")
    moves = True
    if t.vote:
        moves = engine._ballot_moves(engine.workflow.votes[t.vote], t, state, e.actor)
    expected = engine.step(state.config, e.trigger) if moves else state.config
    if e.target != expected:
        check.append(f"case {e.case_id!r} event {e.seq}: recorded as moving to "
                     f"{sorted(e.target)}, the workflow moves {e.trigger!r} to "
                     f"{sorted(expected)}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> str:
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


def _check_case_id(case_id: object) -> str:
    text = check_text(case_id, "case id", max_length=MAX_ID_LENGTH)
    if not text.strip():
        raise InvalidInputError("case id must not be empty.")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInputError(f"case id {text!r} contains control characters; use printable "
                                f"text.")
    return text


def open_store(path: str | os.PathLike[str] = ":memory:", *, durability: str = "full",
               timeout: float = 30.0, create: bool = True,
               max_pages: int | None = None) -> Store:
    """Open (and create or migrate) the event log at ``path``; ``":memory:"`` for a scratch one.

    ``durability="full"`` (the default) syncs every commit to disk; ``"normal"`` is
    faster and survives a crash of the process, but may lose the last commits on a
    power cut. ``create=False`` refuses a missing file instead of creating it.
    ``max_pages`` caps the file at that many pages (SQLite's ``max_page_count``, for
    this connection only): a write that would grow it further raises ``StoreError``
    and stores nothing. It is how the tests simulate a full disk.
    """
    return Store(path, durability=durability, timeout=timeout, create=create,
                 max_pages=max_pages)
