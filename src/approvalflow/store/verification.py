"""``verify``: the whole log re-checked from its bytes, every step re-decided.

What it proves, for every case:

- the chain: sequence numbers without gaps, each event's previous-hash the hash of the
  one before, each hash the SHA-256 of the event's canonical bytes, dates in order;
- the workflow: every stored workflow text matches its digest, and each case's creation
  commits (inside its hash) to the digest of the text it runs on;
- every step, re-decided by the engine on the state and data the case had just before
  it, as ``fire`` decides: the step leaves the state the case was in, its actor may take
  it, the join is complete, each voter votes once and withdraws only as allowed, the
  threshold moves the vote, every guard holds (those registered in this process;
  the others are counted as not re-checked), a recorded person is one fire accepts,
  and the statechart moves where the event says; each expectation as ``Case.expect``
  decides it;
- every row is one the library wrote: canonical JSON data, sorted state lists, dates
  as YYYY-MM-DD, an ISO recording time, no idempotency key twice in a case;
- the ``cases`` table: every column equals what the log says;
- the feed: positions run 1, 2, 3 ... with no gap and no repeat, and each case's
  events are in the feed in the order of their sequence numbers.
- the projection tables (store/projections.py): every row equals what replay gives
  (:func:`~approvalflow.store.projections.check_projections`, once per verify).

A problem is reported, never raised: a damaged row (wrong types, broken JSON) is a
problem that names its case and event.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..canonical import sha256_hex, shortened
from ..definition import Workflow
from ..engine import engine_for
from ..errors import ApprovalflowError, StoreError
from ..loading import loads_workflow
from ..replay import Recorded, replay
from .projections import ExpectedRows, check_projections
from .rows import EVENT_COLUMNS, EVENT_FIELDS, GENESIS, encode, parse_date, selected_hash, snapshot
from .timers import read_timer_table, timer_rows

if TYPE_CHECKING:
    from . import Store

__all__ = ["VerifyReport", "verify_store"]

_MAX_SEQ = 2**63 - 1
#: What the report counts under ``unchecked`` for a creation that does not commit to its
#: workflow's text (written before schema 3).
PRE_SCHEMA_3 = "workflow text (case created before schema 3)"


@attrs.frozen
class VerifyReport:
    """The result of a whole-log check: ``ok`` when ``problems`` is empty.

    ``unchecked`` counts what could not be re-checked (a guard not registered in the
    verifying process, a creation that predates the workflow commitment): ``strict``
    verification turns each of those into a problem.
    """

    problems: list[str]
    cases: int
    events: int
    unchecked: dict[str, int] = attrs.field(factory=dict)
    strict: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "cases": self.cases, "events": self.events,
                "problems": list(self.problems), "unchecked": dict(self.unchecked),
                "strict": self.strict}


def verify_store(store: Store, *, heads: Mapping[str, Any] | None,
                 strict: bool) -> VerifyReport:
    """The body of :meth:`Store.verify` (see there)."""
    conn = store._conn
    problems: list[str] = []
    unchecked: Counter[str] = Counter()
    if heads is not None:
        problems.extend(_check_heads(conn, heads, nul_free=store._pg))
    n_cases = n_events = 0
    with snapshot(conn):
        workflows = _check_workflows(conn, problems)
        # PostgreSQL: events committed and not numbered yet (their writer numbers them
        # right after its commit, or the next one does if it died): not a missing position
        pending = frozenset(tuple(r) for r in conn.execute(
            "SELECT case_id, seq FROM feed_pending")) if store._pg else frozenset()
        table = {r["case_id"]: r for r in conn.execute("SELECT * FROM cases")}
        timer_table = read_timer_table(conn)
        cursor = conn.cursor()
        cursor.row_factory = None  # plain tuples: the rows are read by position
        rows = cursor.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY case_id, seq")
        current: Any = None
        batch: list[tuple[Any, ...]] = []
        seen: set[Any] = set()
        expected = ExpectedRows()

        def finish() -> None:
            case_problems, case_unchecked = _verify_case(current, batch, table.get(current),
                                                         workflows, expected,
                                                         timer_table.get(current, {}),
                                                         pending)
            problems.extend(case_problems)
            unchecked.update(case_unchecked)
            if strict:
                for what, n in sorted(case_unchecked.items()):
                    problems.append(f"case {current!r}: {n} check(s) not made: {what} "
                                    f"(strict verification requires every check)")

        for r in rows:
            n_events += 1
            if r[0] != current or not batch:  # case_id
                if batch:
                    finish()
                    n_cases += 1
                current, batch = r[0], []
                seen.add(current)
            batch.append(r)
        if batch:
            finish()
            n_cases += 1
        for case_id in sorted(set(table) - seen, key=repr):
            problems.append(f"case {case_id!r}: in the cases table but has no events")
        for case_id in sorted(set(timer_table) - seen, key=repr):
            problems.append(f"case {case_id!r}: in the timers table but has no events")
        problems.extend(_check_positions(conn))
        problems.extend(check_projections(conn, expected))
    return VerifyReport(problems=problems, cases=n_cases, events=n_events,
                        unchecked=dict(unchecked), strict=strict)


def _check_heads(conn: sqlite3.Connection, heads: Mapping[str, Any], *,
                 nul_free: bool = False) -> list[str]:
    """Each exported head still in the log with its hash (``nul_free``: the backend can't
    hold a NUL in text, PostgreSQL)."""
    problems = []
    if not isinstance(heads, Mapping):
        return [f"the exported heads are a {type(heads).__name__}, not an object "
                f"{{case_id: {{'seq': n, 'hash': h}}}}"]
    for case_id, head in sorted(heads.items(), key=lambda item: repr(item[0])):
        seq = head.get("seq") if isinstance(head, Mapping) else None
        expected = head.get("hash") if isinstance(head, Mapping) else None
        if (not isinstance(case_id, str) or isinstance(seq, bool) or not isinstance(seq, int)
                or not 1 <= seq <= _MAX_SEQ or not isinstance(expected, str)):
            problems.append(f"case {case_id!r}: the exported head {_short(head)} is not "
                            f"{{'seq': a whole number from 1, 'hash': text}}")
            continue
        # an id no log can hold (a lone surrogate; a NUL on PostgreSQL) can't be asked
        # for (the driver refuses it): the head is simply not in the log
        row = conn.execute("SELECT hash FROM events WHERE case_id = ? AND seq = ?",
                           (case_id, seq)).fetchone() \
            if _storable(case_id, nul_free=nul_free) else None
        if row is None:
            problems.append(f"case {case_id!r} event {seq}: exported earlier, no longer in "
                            f"the log")
        elif row[0] != expected:
            problems.append(f"case {case_id!r} event {seq}: its hash differs from the "
                            f"exported head (the chain was rewritten)")
    return problems


def _storable(text: str, *, nul_free: bool) -> bool:
    """Whether ``text`` can be stored as text: UTF-8 (and without a NUL where the backend
    can't hold one)."""
    if nul_free and "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: At most this many feed-position problems are listed (one removed event shifts none of
#: the others, but a renumbered table could give a problem per event).
_MAX_POSITION_PROBLEMS = 10


def _check_positions(conn: sqlite3.Connection) -> list[str]:
    """The feed positions run 1, 2, 3 ... without gaps or repeats (in commit order).

    A gap after the last event can't be seen here (nothing follows it): exported heads
    are what catch events cut off the end of the log."""
    problems: list[str] = []
    expected, before = 1, "the start of the feed"
    rows = conn.execute("SELECT position, case_id, seq FROM events WHERE typeof(position) = "
                        "'integer' ORDER BY position, case_id, seq")
    for position, case_id, seq in rows:
        if len(problems) >= _MAX_POSITION_PROBLEMS:
            problems.append("the feed: ... and more problems with its positions")
            break
        here = f"case {case_id!r} event {seq!r}"
        if position < expected:
            problems.append(f"the feed: position {position} is held by {before} and by {here} "
                            f"too (positions are unique)")
        elif position > expected:
            missing = (f"position {expected} is" if position == expected + 1 else
                       f"positions {expected}..{position - 1} are")
            problems.append(f"the feed: {missing} missing, between {before} and {here} "
                            f"(events were removed, or their positions changed)")
        expected, before = max(expected, position + 1), here
    return problems


def _short(value: Any) -> str:
    return shortened(repr(value))


def _check_workflows(conn: sqlite3.Connection,
                     problems: list[str]) -> dict[tuple[str, int], Workflow | str]:
    """Each stored workflow's text against its digest; (name, version) -> the Workflow,
    or the reason it can't be used."""
    out: dict[tuple[str, int], Workflow | str] = {}
    for name, version, digest, source in conn.execute(
            "SELECT name, version, digest, source FROM workflows ORDER BY name, version"):
        where = f"workflow {name!r} version {version!r}"
        if not isinstance(source, str) or sha256_hex(source) != digest:
            problems.append(f"{where}: its stored text does not match its digest (the text or "
                            f"the digest was edited)")
            out[(name, version)] = "its stored text does not match its digest"
            continue
        try:
            out[(name, version)] = loads_workflow(
                source, source=f"workflows/{name}@v{version}", strict_guards=False)
        except ApprovalflowError as e:
            problems.append(f"{where}: its stored text does not load: {e}")
            out[(name, version)] = "its stored text does not load"
    return out


# Column checks by position (see rows.EVENT_FIELDS): what each must hold.
_REQUIRED_TEXT = tuple(EVENT_FIELDS.index(f) for f in (
    "case_id", "kind", "trigger", "actor", "on_date", "recorded_at", "source", "target",
    "data", "workflow", "prev_hash", "hash"))
_OPTIONAL_TEXT = tuple(EVENT_FIELDS.index(f) for f in ("note", "key", "workflow_digest", "by"))
_POSITION = len(EVENT_FIELDS)  # selected after the fields (rows.EVENT_COLUMNS)
_INTEGER = tuple(EVENT_FIELDS.index(f) for f in ("seq", "workflow_version"))


def _column_problem(r: tuple[Any, ...]) -> str | None:
    for i in _REQUIRED_TEXT:
        if type(r[i]) is not str:
            return f"column {EVENT_FIELDS[i]!r} holds {_kind(r[i])}, not text"
    for i in _OPTIONAL_TEXT:
        if r[i] is not None and type(r[i]) is not str:
            return f"column {EVENT_FIELDS[i]!r} holds {_kind(r[i])}, not text or null"
    for i in _INTEGER:
        if type(r[i]) is not int:
            return f"column {EVENT_FIELDS[i]!r} holds {_kind(r[i])}, not a whole number"
    return None


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {_short(value)}"


#: State lists repeat across events: each distinct text is decoded and checked once per
#: verify (a bounded memo of valid ones, and whether each is written as the library
#: writes it; frozensets are immutable, so sharing is safe).
_STATE_MEMO: dict[str, tuple[frozenset[str], bool]] = {}


def _states(text: str, what: str) -> frozenset[str]:
    return _state_text(text, what)[0]


def _state_text(text: str, what: str) -> tuple[frozenset[str], bool]:
    """The states a list holds, and whether it is the sorted list of distinct ids the
    library writes (rows.json_list)."""
    found = _STATE_MEMO.get(text)
    if found is not None:
        return found
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValueError(f"{what} {_short(text)} is not a JSON list of state ids")
    if len(_STATE_MEMO) > 10_000:
        _STATE_MEMO.clear()
    found = _STATE_MEMO[text] = (frozenset(value), encode(sorted(set(value))) == text)
    return found


def _record(r: tuple[Any, ...]) -> tuple[Recorded, list[str]]:
    """What replay reads of a row, and how its text differs from what the library writes
    (each a problem; a row that can't be read at all raises ValueError)."""
    odd: list[str] = []
    data = {} if r[10] == "{}" else json.loads(r[10])
    if not isinstance(data, dict):
        raise ValueError(f"data {_short(r[10])} is not a JSON object")
    if r[10] != "{}":
        # the library writes canonical JSON: not NaN (no reader agrees on it), nor a
        # repeated key (Python reads its last value, SQLite's JSON its first)
        try:
            text = encode(data)
        except ValueError:
            raise ValueError(f"data {_short(r[10])} holds NaN or an infinity, which JSON "
                             f"has not") from None
        if text != r[10]:
            odd.append(f"its data {_short(r[10])} is not canonical JSON (sorted keys, no "
                       f"repeated key, compact)")
    if len(r[5]) != 10:
        raise ValueError(f"on_date {_short(r[5])} is not a date YYYY-MM-DD")
    day = parse_date(r[5])
    if day.isoformat() != r[5]:  # another form fromisoformat reads: sorts wrongly as text
        odd.append(f"its date {r[5]!r} is {day.isoformat()} written in another form than "
                   f"YYYY-MM-DD")
    try:
        dt.datetime.fromisoformat(r[6])
    except ValueError:
        raise ValueError(f"recorded_at {_short(r[6])} is not an ISO date and time") from None
    source, source_ok = _state_text(r[7], "source")
    target, target_ok = _state_text(r[8], "target")
    for what, text, ok in (("source", r[7], source_ok), ("target", r[8], target_ok)):
        if not ok:
            odd.append(f"its {what} {_short(text)} is not a sorted list of distinct state ids")
    return Recorded(r[0], r[1], r[2], r[3], r[4], day, source, target, data, r[11], r[12],
                    r[17], r[9]), odd


def _verify_case(case_id: Any, rows: list[tuple[Any, ...]], head: Mapping[str, Any] | None,
                 workflows: Mapping[tuple[str, int], Workflow | str],
                 expected: ExpectedRows,
                 timers: Mapping[str, Any],
                 pending: frozenset[tuple[Any, ...]] = frozenset()
                 ) -> tuple[list[str], Counter[str]]:
    problems: list[str] = []
    unchecked: Counter[str] = Counter()
    where = f"case {case_id!r}"
    prev_hash = GENESIS
    last_on: str | None = None
    last_day: dt.date | None = None
    records: list[Recorded] = []
    keys: dict[str, int] = {}
    running = (rows[0][11], rows[0][12])
    for expected_seq, r in enumerate(rows, start=1):
        bad = _column_problem(r)
        if bad is not None:
            problems.append(f"{where} event {r[1]!r}: {bad} (the row was edited)")
            return problems, unchecked
        # by position, as selected with EVENT_COLUMNS: seq 1, kind 2, on_date 5,
        # prev_hash 14, hash 15
        seq, kind, on_date, prev, digest = r[1], r[2], r[5], r[14], r[15]
        if seq != expected_seq:
            problems.append(f"{where} event {seq}: expected sequence number {expected_seq} "
                            f"(an event is missing or was inserted)")
            return problems, unchecked
        if prev != prev_hash:
            problems.append(f"{where} event {seq}: its previous-hash does not match event "
                            f"{expected_seq - 1}'s hash (an event before it was changed, "
                            f"removed or reordered)")
        if selected_hash(r) != digest:
            problems.append(f"{where} event {seq}: its content does not match its hash "
                            f"(it was edited)")
        if kind == "migrate":  # the case runs on the version it moved to from here on
            running = (r[11], r[12])
            _check_commitment(where, r, workflows, problems)
        elif seq > 1 and (r[11], r[12]) != running:
            problems.append(f"{where} event {seq}: recorded on workflow {r[11]!r} version "
                            f"{r[12]}, the case runs on {running[0]!r} version {running[1]}")
        if r[13] is not None:  # key
            if r[13] in keys:
                problems.append(f"{where} event {seq}: its idempotency key {_short(r[13])} is "
                                f"event {keys[r[13]]}'s too (a key names one event only)")
            else:
                keys[r[13]] = seq
        if seq > 1 and r[16] is not None and kind != "migrate":
            problems.append(f"{where} event {seq}: only a creation or a migration commits to a "
                            f"workflow text")
        try:
            record, odd = _record(r)
        except (ValueError, TypeError, RecursionError) as e:
            problems.append(f"{where} event {seq}: can't be read: {e} (the row was edited)")
            return problems, unchecked
        for what in odd:
            problems.append(f"{where} event {seq}: {what}, not as the library writes it (the "
                            f"row was edited)")
        # a step's date order is one of the rules the engine re-checks below
        if kind != "fire" and last_day is not None and record.on < last_day:
            problems.append(f"{where} event {seq}: dated {on_date}, before the previous "
                            f"event's {last_on}")
        records.append(record)
        position, before = r[_POSITION], rows[expected_seq - 2][_POSITION]
        if type(position) is not int:
            if (case_id, r[1]) not in pending:  # pending: committed, numbered next
                problems.append(f"{where} event {seq}: has no feed position (column "
                                f"'position' holds {_kind(position)}, not a whole number)")
        elif expected_seq > 1 and type(before) is int and position <= before:
            problems.append(f"{where} event {seq}: feed position {position} is not after "
                            f"event {expected_seq - 1}'s {before} (a case's events are "
                            f"committed in order)")
        prev_hash, last_on, last_day = digest, on_date, record.on
    first = rows[0]
    wf = workflows.get((first[11], first[12]))
    if not isinstance(wf, Workflow):
        problems.append(f"{where}: can't be replayed: workflow {first[11]!r} version "
                        f"{first[12]!r} " + (wf or "is not stored"))
        return problems, unchecked
    if first[16] is None:
        unchecked[PRE_SCHEMA_3] += 1
    else:
        _check_commitment(where, first, workflows, problems)
    guards: list[str] = []

    def version(name: str, number: int) -> Workflow:
        found = workflows.get((name, number))
        if not isinstance(found, Workflow):
            raise StoreError(f"workflow {name!r} version {number!r} "
                             + (found or "is not stored"))
        return found

    try:
        state = replay(engine_for(wf), records, check=problems, unchecked=guards,
                       workflows=version)
        final = engine_for(version(*running)).is_final(state.config)
    except (ApprovalflowError, ValueError, KeyError, TypeError) as e:
        problems.append(f"{where}: can't be replayed: {e}")
        return problems, unchecked
    for name in guards:
        unchecked[f"guard {name!r} (not registered in this process)"] += 1
    problems.extend(_check_table_row(where, rows, head, prev_hash, final, state.config,
                                     running))
    try:
        expected.add(case_id, engine_for(version(*running)), state, records)
        armed = dict(timer_rows(engine_for(version(*running)), state))
    except (ApprovalflowError, ValueError, KeyError, TypeError) as e:
        # its events leave it where the workflow has no state (a forged target)
        problems.append(f"{where}: can't be replayed: its events leave it in "
                        f"{_short(sorted(state.config))}, which workflow {running[0]!r} "
                        f"version {running[1]} can't be in ({type(e).__name__} {e})")
        return problems, unchecked
    if dict(timers) != armed:
        problems.append(f"{where}: the timers table says {_short(dict(sorted(timers.items())))}, "
                        f"the replay of its events gives {_short(dict(sorted(armed.items())))}")
    return problems, unchecked


def _check_commitment(where: str, r: tuple[Any, ...],
                      workflows: Mapping[tuple[str, int], Workflow | str],
                      problems: list[str]) -> None:
    """A creation's or migration's workflow digest against the stored text of its version."""
    wf = workflows.get((r[11], r[12]))
    if not isinstance(wf, Workflow):
        return  # reported once, where the case is replayed
    if r[16] is None and r[2] == "migrate":
        problems.append(f"{where} event {r[1]}: a migration that does not commit to the text of "
                        f"version {r[12]}")
    elif r[16] is not None and r[16] != wf.digest:
        problems.append(f"{where} event {r[1]}: it commits to workflow text {r[16][:12]}..., "
                        f"the stored workflow {wf.name!r} version {wf.version} is "
                        f"{wf.digest[:12]}... (the stored workflow was changed)")


def _check_table_row(where: str, rows: list[tuple[Any, ...]], head: Mapping[str, Any] | None,
                     head_hash: str, final: bool, config: frozenset[str],
                     running: tuple[str, int]) -> list[str]:
    """Every column of the case's row in ``cases`` against what its events say."""
    if head is None:
        return [f"{where}: has events but no row in the cases table"]
    first, last = rows[0], rows[-1]
    problems = []
    if head["seq"] != len(rows):
        problems.append(f"{where}: the cases table says event {head['seq']!r} is the last, "
                        f"the log ends at event {len(rows)} (the tail was truncated or the "
                        f"table is stale)")
    if head["head_hash"] != head_hash:
        problems.append(f"{where}: the cases table's head hash does not match the hash of "
                        f"event {len(rows)}")
    try:
        table_state = _states(head["state"], "state")
    except (ValueError, TypeError) as e:
        problems.append(f"{where}: the cases table's state can't be read: {e}")
    else:
        if table_state != config:
            problems.append(f"{where}: the cases table says state {sorted(table_state)}, the "
                            f"replay of its events gives {sorted(config)}")
    expected = {"workflow": running[0], "workflow_version": running[1], "last_on": last[5],
                "is_final": int(final), "created_at": first[6], "updated_at": last[6]}
    for column, value in expected.items():
        if head[column] != value or type(head[column]) is not type(value):
            problems.append(f"{where}: the cases table says {column} {head[column]!r}, its "
                            f"events say {value!r}")
    return problems
