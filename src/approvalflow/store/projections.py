"""Projections: tables derived from the log, written in the same transaction as each event,
so that questions across many cases read indexes instead of replaying every case.

- ``case_awaiting (actor, case_id, trigger, guarded)``: who may act on what, as the
  engine decides it from the case's state alone: the step leaves an active state, the
  actor may take it, the join is complete, the vote still takes this voter. What is left
  depends on the day asked and the data (the date order and the guards):
  :meth:`Store.awaiting` re-checks those for the matching rows only (``guarded`` says
  which have guards), so its answer is exactly :meth:`Case.awaiting`'s.
- ``case_due (case_id, n, kind, step, label, due, fixed, at_risk_from, actors)``: each
  deadline not yet met and each expected step of an open case, as ``due`` computes them
  on the day of the case's last event. ``fixed = 0`` marks a row whose date or actors
  move with the day asked (a deadline counted from a forecast date, a vote's voters):
  its ``due`` is then the earliest it can be, and :meth:`Store.due` replays that case.
  ``at_risk_from`` is the first day asked on which the deadline is "at risk" (its
  step forecast after its due date; every forecast date only moves later as the day
  asked does, so it is at risk from that day until it is missed), or null.
- ``case_data (case_id, data)``: the case data as replay merges it (canonical JSON).
- ``case_fields (path, value, case_id)``: every leaf of the case data by its dotted path
  (``budget.total``); strings as they are, other values as canonical JSON.
- the last event's date is ``cases.last_on``, indexed (``cases_last_on``).

Every table is derived: :func:`fill` recomputes them all from the log (``rebuild`` and
the schema migration), and :func:`check_projections` compares them with what replay
says (``verify``). No table here is hashed or append-only.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..canonical import shortened
from ..clock import lookup as _lookup
from ..definition import Workflow
from ..engine import CaseState, Engine, engine_for
from ..errors import ApprovalflowError, StoreError
from ..forecast.due import _deadlines
from ..forecast.route import _analyse
from ..loading import loads_workflow
from ..replay import Recorded, replay
from .rows import encode, parse_date, state_set

if TYPE_CHECKING:
    from ..case import Event
    from .sqlite import SqliteConnection

__all__ = ["Projection", "ImportProjections", "compute", "fill", "check_projections",
           "create_tables", "field_value", "TABLES"]

#: The projection tables, in the order rebuild and verify report them.
TABLES = ("case_awaiting", "case_due", "case_data", "case_fields")

INSERT_AWAITING = "INSERT INTO case_awaiting (actor, case_id, trigger, guarded) VALUES (?,?,?,?)"
DELETE_AWAITING = "DELETE FROM case_awaiting WHERE actor = ? AND case_id = ? AND trigger = ?"
#: Every awaited step of one actor in one case: an actor's ballot or step usually takes
#: all of its rows away at once, in one statement rather than one per row.
DELETE_ACTOR_AWAITING = "DELETE FROM case_awaiting WHERE actor = ? AND case_id = ?"
INSERT_DUE = ("INSERT INTO case_due (case_id, n, kind, step, label, due, fixed, at_risk_from, "
              "actors) VALUES (?,?,?,?,?,?,?,?,?)")
INSERT_DATA = "INSERT INTO case_data (case_id, data) VALUES (?, ?)"
INSERT_FIELD = "INSERT INTO case_fields (path, value, case_id) VALUES (?,?,?)"
DELETE_FIELD = "DELETE FROM case_fields WHERE path = ? AND value = ? AND case_id = ?"

AwaitRow = tuple[str, str, int]  # actor, trigger, guarded
DueRow = tuple[int, str, str, str, str, int, str | None, str]  # n, kind, step, label, due...
FieldRow = tuple[str, str]  # path, value
#: A case's rows but its id (ImportProjections.rows): awaiting, due, its data's text,
#: its fields.
CaseRows = tuple[tuple[AwaitRow, ...], tuple[DueRow, ...], str, tuple[FieldRow, ...]]


def create_tables(conn: sqlite3.Connection | Any) -> None:
    """The projection tables and their indexes (schema migration 3 -> 4)."""
    for sql in (
        "CREATE TABLE case_awaiting (actor TEXT NOT NULL, case_id TEXT NOT NULL, "
        "trigger TEXT NOT NULL, guarded INTEGER NOT NULL, "
        "PRIMARY KEY (actor, case_id, trigger)) WITHOUT ROWID",
        "CREATE TABLE case_due (case_id TEXT NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL, "
        "step TEXT NOT NULL, label TEXT NOT NULL, due TEXT NOT NULL, fixed INTEGER NOT NULL, "
        "at_risk_from TEXT, actors TEXT NOT NULL, PRIMARY KEY (case_id, n)) WITHOUT ROWID",
        "CREATE INDEX case_due_due ON case_due (due)",
        "CREATE TABLE case_data (case_id TEXT PRIMARY KEY, data TEXT NOT NULL)",
        "CREATE TABLE case_fields (path TEXT NOT NULL, value TEXT NOT NULL, "
        "case_id TEXT NOT NULL, PRIMARY KEY (path, value, case_id)) WITHOUT ROWID",
        "CREATE INDEX cases_last_on ON cases (last_on)",
    ):
        conn.execute(sql)


# --------------------------------------------------------------------------- computing


def field_value(value: Any) -> str:
    """How a data value is kept in ``case_fields`` and compared: text as it is, anything
    else as canonical JSON (``6``, ``true``, ``null``, ``["a","b"]``)."""
    return value if isinstance(value, str) else encode(value)


_LEAVES = (str, int, float, bool, list, type(None))


def fields(data: Mapping[str, Any]) -> list[FieldRow]:
    """Every leaf of ``data`` by dotted path; an object is walked into, a list is a leaf.
    Each (path, value) once: a key with a dot (``{"a.b": 1}``) and the nested key it
    spells (``{"a": {"b": 1}}``) give the same row, which the table holds once."""
    return list(dict.fromkeys(_leaves(data, "")))


def _leaves(data: Mapping[str, Any], prefix: str) -> list[FieldRow]:
    out: list[FieldRow] = []
    for key, value in data.items():
        kind = type(value)
        if kind is str:
            out.append((prefix + key, value))
        elif kind is dict or (kind not in _LEAVES and isinstance(value, Mapping)):
            out.extend(_leaves(value, prefix + key + "."))
        else:
            out.append((prefix + key, encode(value)))
    return out


_FIELDS: dict[str, tuple[FieldRow, ...]] = {}


def fields_of(text: str, data: Mapping[str, Any]) -> tuple[FieldRow, ...]:
    """:func:`fields` of ``data``, whose canonical JSON is ``text`` (memoised by it: cases
    created with the same data share their rows)."""
    found = _FIELDS.get(text)
    if found is None:
        found = tuple(fields(data))
        if len(_FIELDS) > 1_000:
            _FIELDS.clear()
        _FIELDS[text] = found
    return found


_AWAIT_MEMO: dict[tuple[Any, ...], tuple[AwaitRow, ...]] = {}


def awaiting_rows(engine: Engine, state: CaseState) -> tuple[AwaitRow, ...]:
    """(actor, trigger, guarded) for every step an actor may take now, as ``evaluate``
    decides it on the state alone (guards and the date left out: see the module)."""
    key: tuple[Any, ...] = (id(engine), state.config)
    if engine.workflow.votes:
        key += _votes_key(state, engine)
    if state.withdrew_at:  # which restatements after a withdrawal are still missing
        key += tuple(bool(engine.data_reasons(state, t, {}))
                     for t in engine.workflow.transitions if t.restate_after_withdrawal)
    found = _AWAIT_MEMO.get(key)
    if found is not None:
        return found
    rows: list[AwaitRow] = []
    if not engine.is_final(state.config):
        bare = attrs.evolve(state, data={})
        when = state.last_on or dt.date.min
        wf = engine.workflow
        for trigger in sorted({t.trigger for t in wf.transitions}):
            t = engine.enabled_transition(state.config, trigger)
            if t is None or not t.awaited:  # a step nobody is awaited for is in no inbox
                continue
            for actor in t.actors:
                if actor not in wf.actors:
                    continue
                # as Case.awaiting asks it: no particular person in mind (four eyes left out)
                decision = engine.evaluate(bare, trigger, actor=actor, on=when, unchecked=[],
                                           check_persons=False)
                if all(rule.startswith("guard ") for rule in decision.rules):
                    rows.append((actor, trigger, int(bool(t.guards))))
    result = tuple(sorted(rows))
    if len(_AWAIT_MEMO) > 50_000:
        _AWAIT_MEMO.clear()
    _AWAIT_MEMO[key] = result
    return result


_DEADLINES: dict[int, bool] = {}


def _has_deadlines(wf: Workflow) -> bool:
    found = _DEADLINES.get(id(wf))
    if found is None:
        found = _DEADLINES[id(wf)] = (
            any(t.deadline is not None for t in wf.transitions)
            or any(d.deadline is not None for d in wf.state_defs.values()))
    return found


def due_rows(engine: Engine, state: CaseState,
             history: Sequence[Event] | Sequence[Recorded]) -> tuple[DueRow, ...]:
    """The due items of an open case as of the day of its last event, with what ``due``
    needs to answer for any later day (see the module)."""
    wf = engine.workflow
    if engine.is_final(state.config) or state.last_on is None:
        return ()
    events, expects = history_key(history)
    if not _has_deadlines(wf) and not expects:
        return ()
    # The rows depend on nothing but what this key holds (see forecast._analyse): the
    # state's configuration and votes, the last event's date, what each event did and
    # when (each step's last firing, when each active state was entered, what each
    # expectation said), the dates the clock counts each active state from (after a
    # migration they depend on the versions the case ran on, which the events' key
    # does not hold), and the data dates the workflow names. Cases that share them
    # share their rows.
    key = (id(engine), state.config, state.last_on, events,
           tuple(state.entered.items()) if state.entered else (),
           _data_dates(wf, state.data), _votes_key(state, engine) if wf.votes else ())
    found = _DUE_MEMO.get(key)
    if found is None:
        found = _due_rows(engine, state, history)
        if len(_DUE_MEMO) > 20_000:
            _DUE_MEMO.clear()
        _DUE_MEMO[key] = found
    return found


def _event_key(e: Event | Recorded) -> tuple[Any, ...]:
    """What the due rows read of one event."""
    if e.kind != "expect":
        return (e.seq, e.kind, e.trigger, e.on, e.source, e.target)
    return (e.seq, e.kind, e.on, e.actor, encode(dict(e.data)))


#: id(last event) -> (that event, the history's length, the history's key, whether it
#: holds an expectation). Events are immutable and each ends one history of one case
#: (its chain), so a key is built once per event, from the key of the history before
#: it: a write costs one step, not a pass over every event. The event is kept in the
#: value, so its id is not reused while the entry lives.
_HISTORY_KEYS: dict[int, tuple[Any, int, tuple[Any, ...], bool]] = {}


def history_key(history: Sequence[Event] | Sequence[Recorded]) -> tuple[tuple[Any, ...], bool]:
    """:func:`_event_key` of every event of ``history``, in order, and whether one of them
    is an expectation (memoised per history)."""
    n = len(history)
    if not n:
        return (), False
    last = history[-1]
    found = _HISTORY_KEYS.get(id(last))
    if found is not None and found[0] is last and found[1] == n:
        return found[2], found[3]
    before: tuple[Any, ...] | None = None
    expects = False
    if n > 1:
        prev = history[-2]
        got = _HISTORY_KEYS.get(id(prev))
        if got is not None and got[0] is prev and got[1] == n - 1:
            before, expects = got[2], got[3]
    if before is None:
        before = tuple(_event_key(e) for e in history[:-1])
        expects = any(e.kind == "expect" for e in history[:-1])
    key = (*before, _event_key(last))
    expects = expects or last.kind == "expect"
    if len(_HISTORY_KEYS) > 4_096:
        _HISTORY_KEYS.clear()
    _HISTORY_KEYS[id(last)] = (last, n, key, expects)
    return key, expects


#: id(data) -> (data, workflow id, the dates' key): a state's data mapping is never
#: changed in place (a step that sets data makes a new one), so it is read once.
_DATA_DATES: dict[int, tuple[Any, int, tuple[str, ...]]] = {}


def _data_dates(wf: Workflow, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The data values the workflow's dates read, as canonical JSON."""
    found = _DATA_DATES.get(id(data))
    if found is not None and found[0] is data and found[1] == id(wf):
        return found[2]
    key = tuple(encode(_lookup(data, k)) for k in _data_keys(wf))
    if len(_DATA_DATES) > 4_096:
        _DATA_DATES.clear()
    _DATA_DATES[id(data)] = (data, id(wf), key)
    return key


_DUE_MEMO: dict[tuple[Any, ...], tuple[DueRow, ...]] = {}
_DATA_KEYS: dict[int, tuple[str, ...]] = {}


def _data_keys(wf: Workflow) -> tuple[str, ...]:
    """The case-data keys the workflow's dates read (deadlines, earliest dates, target)."""
    found = _DATA_KEYS.get(id(wf))
    if found is None:
        refs = [r for t in wf.transitions for r in (t.deadline, t.earliest) if r is not None]
        refs += [d.deadline for d in wf.state_defs.values() if d.deadline is not None]
        if wf.target is not None:
            refs.append(wf.target)
        found = _DATA_KEYS[id(wf)] = tuple(sorted({r.key or "" for r in refs
                                                   if r.kind == "data"}))
    return found


def _votes_key(state: CaseState, engine: Engine) -> tuple[Any, ...]:
    """Every ballot and withdrawal of the state, sorted (the engine's memo of it)."""
    return engine.votes_key(state)


def _due_rows(engine: Engine, state: CaseState,
              history: Sequence[Event] | Sequence[Recorded]) -> tuple[DueRow, ...]:
    wf = engine.workflow
    assert state.last_on is not None
    a = _analyse(wf, state, history, state.last_on)  # type: ignore[arg-type]
    planned = {p.t.trigger: p for p in a.route or []}
    rows: list[DueRow] = []
    plans: dict[dt.date, dict[str, dt.date]] = {}
    for d in _deadlines(a, state):
        if d.due is None or d.taken_on is not None:
            continue
        p = None if d.kind == "state" else planned.get(d.step)
        # a state's deadline turns "at risk" by the date it is forecast to be left, which
        # moves with the day asked: such a row is answered by replaying its case
        fixed = (not d.projected and not (p is not None and p.t.vote)
                 and d.kind != "state")
        risk_from = None
        if fixed and p is not None:
            risk_from = _at_risk_from(wf, state, history, d.step, d.due, p.date, plans)
        rows.append((len(rows), "deadline", d.step, d.label, d.due.isoformat(), int(fixed),
                     risk_from, encode(list(d.actors))))
    for p in a.route or []:
        known = [x.date for x in (p.expected, *(v.expected for v in p.voters)) if x is not None]
        if not known or p.preds:
            continue
        rows.append((len(rows), "expected", p.t.trigger, p.t.label or p.t.trigger,
                     max(known).isoformat(), int(not p.t.vote), None, encode(list(p.actors))))
    return tuple(rows)


#: Two days asked far beyond any case's dates (shared by every row, so one route each).
_FAR = (dt.date(9000, 1, 1), dt.date(9500, 1, 1))
#: (workflow, configuration, votes) -> step -> days after the day asked it is forecast on.
_OFFSETS: dict[tuple[Any, ...], dict[str, dt.timedelta]] = {}


def _at_risk_from(wf: Workflow, state: CaseState,
                  history: Sequence[Event] | Sequence[Recorded], step: str, due: dt.date,
                  forecast: dt.date, plans: dict[dt.date, dict[str, dt.date]]) -> str | None:
    """The first day asked on which ``step`` is forecast after ``due`` (None: not before it
    is due). ``forecast`` is its date asked on the last event's day. A forecast date never
    moves earlier as the day asked moves later, so the days at risk are one run: its
    first day is found by a guess (a route date is mostly "the day asked plus a fixed
    number of days", or a fixed date) checked on the day before and on the day, else
    by bisection. ``plans`` keeps the route dates per day asked, for the other rows."""
    last = state.last_on
    assert last is not None
    if forecast > due:
        return dt.date.min.isoformat()
    if due <= last:
        return None

    def late(on: dt.date) -> bool:
        if on not in plans:
            try:
                a = _analyse(wf, state, history, on)  # type: ignore[arg-type]
            except OverflowError:  # a far day plus centuries of durations: no guess then
                plans[on] = {}
            else:
                plans[on] = {p.t.trigger: p.date for p in a.route or []}  # as _deadlines
        found = plans[on].get(step)
        return found is not None and found > due

    far, farther = _FAR
    if last < far and not any(e.kind == "expect" for e in history) and all(
            not isinstance(v := _lookup(state.data, k), str) or v < far.isoformat()
            for k in _data_keys(wf)):
        # Without expectations, every route date is max(a fixed date, the day asked + a
        # fixed number of days) (the voters of a vote then share their dates): the guess
        # is the day. That number is the date asked on a day beyond every fixed date,
        # minus that day, and depends on nothing but where the case stands.
        key = (id(wf), state.config, engine_for(wf).votes_key(state) if wf.votes else ())
        offsets = _OFFSETS.get(key)
        if offsets is None:
            late(far)
            late(farther)
            offsets = {s: d - far for s, d in plans[far].items()
                       if plans[farther].get(s, far) - farther == d - far}
            if len(_OFFSETS) > 20_000:
                _OFFSETS.clear()
            _OFFSETS[key] = offsets
        if step in offsets:
            first = due + dt.timedelta(days=1) - offsets[step]
            return first.isoformat() if first <= due else None
    late(far)  # the route dates asked on a far day: how far after the day asked it is
    at_far = plans[far].get(step)
    guess = None if at_far is None else due + dt.timedelta(days=1) - (at_far - far)
    if guess is not None and last < guess <= due:
        if late(guess) and not late(guess - dt.timedelta(days=1)):
            return guess.isoformat()
    elif guess is not None and guess > due and not late(due):
        return None
    if not late(due):
        return None
    ok, bad = last, due  # not at risk on ok, at risk on bad
    while (bad - ok).days > 1:
        mid = ok + (bad - ok) // 2
        if late(mid):
            bad = mid
        else:
            ok = mid
    return bad.isoformat()


@attrs.frozen
class Projection:
    """What the projection tables hold for one case."""

    awaiting: tuple[AwaitRow, ...]
    due: tuple[DueRow, ...]
    data: str
    fields: tuple[FieldRow, ...]


def compute(engine: Engine, state: CaseState,
            history: Sequence[Event] | Sequence[Recorded],
            data_text: str | None = None) -> Projection:
    """Every projection row of a case, from its replayed state and its events;
    ``data_text``: the canonical JSON of ``state.data``, when known."""
    text = encode(dict(state.data)) if data_text is None else data_text
    return Projection(awaiting_rows(engine, state), due_rows(engine, state, history),
                      text, tuple(sorted(fields_of(text, state.data))))


# --------------------------------------------------------------------------- writing


def replace(conn: sqlite3.Connection, engine: Engine, case_id: str, state: CaseState,
            history: Sequence[Event] | Sequence[Recorded]) -> None:
    """Write a case's rows anew (it moved to another workflow version: ``engine``'s)."""
    for table in TABLES:
        conn.execute(f"DELETE FROM {table} WHERE case_id = ?", (case_id,))
    insert(conn, case_id, compute(engine, state, history))



def insert(conn: sqlite3.Connection, case_id: str, p: Projection) -> None:
    """Write a new case's rows."""
    if p.awaiting:
        conn.executemany(INSERT_AWAITING, [(a, case_id, t, g) for a, t, g in p.awaiting])
    if p.due:
        conn.executemany(INSERT_DUE, [(case_id, *r) for r in p.due])
    conn.execute(INSERT_DATA, (case_id, p.data))
    if p.fields:
        conn.executemany(INSERT_FIELD, [(path, v, case_id) for path, v in p.fields])


#: id(state) -> (state, its history's last event, the engine, its awaiting rows, its due
#: rows): the rows a write computed for the state it leaves a case in, so that the next
#: write on the case, which starts from that state, need not compute them again. A
#: state is made by one event of one case, and holds with one history (whose last
#: event is kept to check); the state is kept in the value, so its id is not reused
#: meanwhile.
_WRITTEN: dict[int, tuple[CaseState, Any, Engine, tuple[AwaitRow, ...],
                          tuple[DueRow, ...]]] = {}


def _rows_of(engine: Engine, state: CaseState, history: Sequence[Event] | Sequence[Recorded],
             n: int) -> tuple[tuple[AwaitRow, ...], tuple[DueRow, ...]]:
    """The rows of ``state``, the state the first ``n`` events of ``history`` leave."""
    last = history[n - 1] if n else None
    found = _WRITTEN.get(id(state))
    if found is not None and found[0] is state and found[1] is last and found[2] is engine:
        return found[3], found[4]
    rows = awaiting_rows(engine, state), due_rows(engine, state, history[:n])
    _remember(engine, state, last, rows)
    return rows


def _remember(engine: Engine, state: CaseState, last: Any,
              rows: tuple[tuple[AwaitRow, ...], tuple[DueRow, ...]]) -> None:
    if len(_WRITTEN) > 4_096:
        _WRITTEN.clear()
    _WRITTEN[id(state)] = (state, last, engine, *rows)


#: (engine, the rows before a step, the step) -> (the rows before, the rows after): the
#: rows a plain step (a fire with no data, and no withdrawal pending after it) leaves,
#: for every case that takes the same step from rows made for the same key.
#:
#: A non-empty tuple of rows is made once per key of its memo (awaiting_rows,
#: due_rows) and kept here, so its id names that key: the configuration, the votes, the
#: dates entered and the data dates, and the events (for the due rows). Such a step
#: changes them only as the step's own fields say: its target, its date, its actor's
#: ballot, its sequence number and trigger. So the same rows and the same step make the
#: same keys after it, and the same rows.
_STEP_ROWS: dict[tuple[Any, ...], tuple[Any, Any, tuple[AwaitRow, ...],
                                        tuple[DueRow, ...]]] = {}


def _rows_after(engine: Engine, before: CaseState, after: CaseState,
                history: Sequence[Event] | Sequence[Recorded],
                old: tuple[tuple[AwaitRow, ...], tuple[DueRow, ...]]
                ) -> tuple[tuple[AwaitRow, ...], tuple[DueRow, ...]]:
    """The rows of ``after``, the state the last event of ``history`` leaves ``before``
    in (``old``: the rows of ``before``)."""
    n = len(history)
    last = history[-1]
    old_await, old_due = old
    if not (old_await and old_due and after.version == before.version + 1
            and last.kind == "fire" and not last.data and not after.withdrew_at
            and after.data is before.data):
        return _rows_of(engine, after, history, n)
    key = (id(engine), id(old_await), id(old_due), last.seq, last.trigger, last.actor,
           last.on, last.target)
    found = _STEP_ROWS.get(key)
    if found is not None and found[0] is old_await and found[1] is old_due:
        rows = found[2], found[3]
        _remember(engine, after, last, rows)
        return rows
    rows = _rows_of(engine, after, history, n)
    if len(_STEP_ROWS) > 4_096:
        _STEP_ROWS.clear()
    _STEP_ROWS[key] = (old_await, old_due, *rows)
    return rows


#: (id(old rows), id(new rows)) -> (old, new, the change): the awaiting rows are
#: memoised tuples shared by every case in the same place, so a step's change is the
#: same for all of them (both tuples are kept, so their ids are not reused).
_AWAIT_CHANGES: dict[tuple[int, int], tuple[Any, Any, AwaitChange]] = {}
#: What a step changes in a case's awaiting rows: the actors all of whose rows go, the
#: other rows that go (actor, trigger), and the rows added.
AwaitChange = tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[AwaitRow, ...]]


def await_change(old: tuple[AwaitRow, ...], new: tuple[AwaitRow, ...]) -> AwaitChange:
    """The rows in ``old`` and not in ``new`` (as whole actors where every row of an
    actor goes, and single rows), and those in ``new`` and not in ``old``."""
    found = _AWAIT_CHANGES.get((id(old), id(new)))
    if found is not None and found[0] is old and found[1] is new:
        return found[2]
    gone = set(old) - set(new)
    added = tuple(sorted(set(new) - set(old)))
    whole = tuple(sorted({a for a, _, _ in gone}
                         - {a for a, _, _ in set(old) - gone} - {a for a, _, _ in added}))
    rows = tuple(sorted((a, t) for a, t, _ in gone if a not in whole))
    change = (whole, rows, added)
    if len(_AWAIT_CHANGES) > 4_096:
        _AWAIT_CHANGES.clear()
    _AWAIT_CHANGES[(id(old), id(new))] = (old, new, change)
    return change


def advance(conn: SqliteConnection, engine: Engine, case_id: str, before: CaseState,
            after: CaseState, history: Sequence[Event] | Sequence[Recorded]) -> None:
    """Bring a case's rows from ``before`` to ``after`` (its state once the new events are
    applied; ``history`` ends with them). Only what changed is written."""
    old = _rows_of(engine, before, history, len(history) - (after.version - before.version))
    old_await, old_due = old
    new_await, new_due = _rows_after(engine, before, after, history, old)
    if old_await is not new_await and old_await != new_await:
        whole, gone, added = await_change(old_await, new_await)
        for actor in whole:
            conn.run(DELETE_ACTOR_AWAITING, (actor, case_id))
        if gone:
            conn.executemany(DELETE_AWAITING, [(a, case_id, t) for a, t in gone])
        if added:
            conn.executemany(INSERT_AWAITING, [(a, case_id, t, g) for a, t, g in added])
    if new_due is not old_due and new_due != old_due:
        conn.run("DELETE FROM case_due WHERE case_id = ?", (case_id,))
        if new_due:
            conn.executemany(INSERT_DUE, [(case_id, *r) for r in new_due])
    if after.data is not before.data and after.data != before.data:
        conn.run("UPDATE case_data SET data = ? WHERE case_id = ?",
                 (encode(dict(after.data)), case_id))
        was, now = set(fields(before.data)), set(fields(after.data))
        if was - now:
            conn.executemany(DELETE_FIELD, [(p, v, case_id) for p, v in was - now])
        if now - was:
            conn.executemany(INSERT_FIELD, [(p, v, case_id) for p, v in now - was])


class ImportProjections:
    """Rows of the cases an import creates, written in batches with its events."""

    def __init__(self) -> None:
        self.awaiting: list[tuple[Any, ...]] = []
        self.due: list[tuple[Any, ...]] = []
        self.data: list[tuple[Any, ...]] = []
        self.fields: list[tuple[Any, ...]] = []

    @staticmethod
    def rows(engine: Engine, state: CaseState, history: Sequence[Event] | Sequence[Recorded],
             data_text: str | None = None) -> CaseRows:
        """A case's rows without its id, for :meth:`add_rows`: awaiting, due, the text of
        its data, and its fields."""
        text = encode(dict(state.data)) if data_text is None else data_text
        return (awaiting_rows(engine, state), due_rows(engine, state, history), text,
                fields_of(text, state.data))

    def add(self, case_id: str, engine: Engine, state: CaseState,
            history: Sequence[Event] | Sequence[Recorded], data_text: str | None = None
            ) -> None:
        """Queue a case's rows; ``data_text``: its data's canonical JSON, when known."""
        self.add_rows(case_id, self.rows(engine, state, history, data_text))

    def add_rows(self, case_id: str, rows: CaseRows) -> None:
        """Queue the rows :meth:`rows` gave, as the rows of case ``case_id``."""
        awaiting, due, text, data_fields = rows
        self.awaiting += [(a, case_id, t, g) for a, t, g in awaiting]
        self.due += [(case_id, *r) for r in due]
        self.data.append((case_id, text))
        self.fields += [(path, v, case_id) for path, v in data_fields]

    def flush(self, conn: sqlite3.Connection) -> None:
        for sql, rows in ((INSERT_AWAITING, self.awaiting), (INSERT_DUE, self.due),
                          (INSERT_DATA, self.data), (INSERT_FIELD, self.fields)):
            if rows:
                conn.executemany(sql, rows)
                rows.clear()


# --------------------------------------------------------------------------- from the log


def _recorded(r: Sequence[Any]) -> Recorded:
    """A row selected as ``case_id, seq, kind, trigger, actor, on_date, source, target,
    data, note`` as replay reads it."""
    return Recorded(r[0], r[1], r[2], r[3], r[4], parse_date(r[5]), state_set(r[6]),
                    state_set(r[7]), {} if r[8] == "{}" else json.loads(r[8]),
                    workflow=r[10], workflow_version=r[11], by=r[12], note=r[9])


def _cases_from_log(conn: sqlite3.Connection
                    ) -> Iterable[tuple[str, Engine, CaseState, list[Recorded]]]:
    """Every case replayed from its events, by id (cases that can't be replayed are left
    out: ``verify`` reports them)."""
    engines: dict[tuple[str, int], Engine | None] = {}
    for name, version, source in conn.execute("SELECT name, version, source FROM workflows"):
        try:
            engines[(name, version)] = engine_for(loads_workflow(
                source, source=f"workflows/{name}@v{version}", strict_guards=False))
        except ApprovalflowError:
            engines[(name, version)] = None
    cursor = conn.cursor()
    cursor.row_factory = None
    rows = cursor.execute("SELECT case_id, seq, kind, trigger, actor, on_date, source, target, "
                          "data, note, workflow, workflow_version, by FROM events "
                          "ORDER BY case_id, seq")
    batch: list[Recorded] = []
    key: tuple[str, int] | None = None

    def done() -> tuple[str, Engine, CaseState, list[Recorded]] | None:
        engine = engines.get(key) if key is not None else None
        # the version the case runs on now: the one its last event was recorded on
        current = engines.get((batch[-1].workflow, batch[-1].workflow_version))
        if engine is None or current is None:
            return None

        def version(name: str, number: int) -> Workflow:
            found = engines.get((name, number))
            if found is None:
                raise StoreError(f"workflow {name!r} version {number} can't be loaded")
            return found.workflow

        try:
            return batch[0].case_id, current, replay(engine, batch, workflows=version), batch
        except (ApprovalflowError, ValueError, KeyError, TypeError):
            return None

    for r in rows:
        if batch and r[0] != batch[0].case_id:
            found = done()
            if found is not None:
                yield found
            batch = []
        if not batch:
            key = (r[10], r[11])
        batch.append(_recorded(r))
    if batch:
        found = done()
        if found is not None:
            yield found


def fill(conn: sqlite3.Connection) -> int:
    """Empty every projection table and recompute it from the log; the number of cases.
    Runs inside the caller's transaction (``rebuild``, the migration to schema 4)."""
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")
    rows = ImportProjections()
    n = 0
    for case_id, engine, state, history in _cases_from_log(conn):
        rows.add(case_id, engine, state, history)
        n += 1
        if len(rows.fields) > 20_000:
            rows.flush(conn)
    rows.flush(conn)
    return n


# --------------------------------------------------------------------------- checking


class ExpectedRows:
    """What replay says each case's projection rows are, collected by ``verify``."""

    def __init__(self) -> None:
        self.cases: dict[str, Projection] = {}

    def add(self, case_id: str, engine: Engine, state: CaseState,
            history: Sequence[Recorded]) -> None:
        p = compute(engine, state, history)
        # the data is checked by a digest: a case's data can be large
        self.cases[case_id] = attrs.evolve(p, data=str(hash(p.data)),
                                           fields=(("#", str(hash(p.fields))),))


def _grouped(conn: sqlite3.Connection, sql: str) -> dict[Any, list[tuple[Any, ...]]]:
    out: dict[Any, list[tuple[Any, ...]]] = {}
    for r in conn.execute(sql):
        out.setdefault(r[0], []).append(tuple(r)[1:])
    return out


def _per_case(conn: sqlite3.Connection,
              sql: str) -> Iterator[tuple[Any, list[tuple[Any, ...]]]]:
    """(case_id, its rows without the case id) from rows selected ordered by case id."""
    cursor = conn.cursor()
    cursor.row_factory = None
    current: Any = None
    batch: list[tuple[Any, ...]] = []
    for r in cursor.execute(sql):
        if r[0] != current and batch:
            yield current, batch
            batch = []
        current = r[0]
        batch.append(tuple(r[1:]))
    if batch:
        yield current, batch


def _rows_text(rows: Iterable[tuple[Any, ...]]) -> str:
    listed = sorted(rows, key=repr)
    text = ", ".join(repr(r) for r in listed[:3])
    return text + (f" and {len(listed) - 3} more" if len(listed) > 3 else "")


def check_projections(conn: sqlite3.Connection, expected: ExpectedRows) -> list[str]:
    """Every projection row against what replay gives; a problem names the case, the
    table and the rows that differ. Called once per ``verify``."""
    problems: list[str] = []
    hint = " (rebuild the projections with 'approvalflow rebuild')"
    awaiting = _grouped(conn, "SELECT case_id, actor, trigger, guarded FROM case_awaiting")
    due = _grouped(conn, "SELECT case_id, n, kind, step, label, due, fixed, at_risk_from, actors "
                         "FROM case_due ORDER BY case_id, n")
    # the data and its leaves are the big tables: only a digest per case is kept
    data = {case_id: str(hash(rows[0][0])) for case_id, rows in _per_case(
        conn, "SELECT case_id, data FROM case_data ORDER BY case_id")}
    field_rows = {case_id: str(hash(tuple(sorted(rows)))) for case_id, rows in _per_case(
        conn, "SELECT case_id, path, value FROM case_fields ORDER BY case_id")}
    for case_id in sorted(set(awaiting) | set(due) | set(data) | set(field_rows)
                          | set(expected.cases), key=repr):
        want = expected.cases.get(case_id)
        where = f"case {case_id!r}"
        if want is None:
            for table, rows in (("case_awaiting", awaiting), ("case_due", due),
                                ("case_data", data), ("case_fields", field_rows)):
                if case_id in rows:
                    problems.append(f"{where}: the {table} table has rows for it, but the log "
                                    f"has no such case (or it can't be replayed){hint}")
            continue
        compared: tuple[tuple[str, set[Any], set[Any]], ...] = (
            ("case_awaiting", set(awaiting.get(case_id, ())), set(want.awaiting)),
            ("case_due", set(due.get(case_id, ())), set(want.due)))
        for table, have, exp in compared:
            if have != exp:
                extra, missing = have - exp, exp - have
                problems.append(
                    f"{where}: the {table} table differs from what replay gives"
                    + (f"; rows not in the replay: {_rows_text(extra)}" if extra else "")
                    + (f"; rows missing: {_rows_text(missing)}" if missing else "") + hint)
        data_ok = data.get(case_id) == want.data
        stored = None if data_ok else conn.execute(
            "SELECT data FROM case_data WHERE case_id = ?", (case_id,)).fetchone()
        if not data_ok:
            problems.append(f"{where}: the case_data table holds "
                            f"{'no row' if stored is None else repr(_short(stored[0]))}, not "
                            f"the data replay gives{hint}")
        if field_rows.get(case_id, str(hash(()))) != want.fields[0][1]:
            text = f"{where}: the case_fields table differs from the case data replay gives"
            if data_ok:
                text_data = conn.execute("SELECT data FROM case_data WHERE case_id = ?",
                                         (case_id,)).fetchone()[0]
                held = {(p, v) for p, v in conn.execute(
                    "SELECT path, value FROM case_fields WHERE case_id = ?", (case_id,))}
                given = set(fields(json.loads(text_data)))
                text += (f"; rows not in the data: {_rows_text(held - given)}"
                         if held - given else "") + (
                    f"; rows missing: {_rows_text(given - held)}" if given - held else "")
            problems.append(text + hint)
    return problems


def _short(text: str) -> str:
    return shortened(text, 60)
