"""Loading a history fast: records decided, hashed and chained as create and fire would,
written in batches inside one transaction, with no Case or Event objects.

Cases imported together mostly repeat each other: the same data, the same steps. What a
step does to a state is worked out once per import and shared (see :class:`_Memos`);
what only the case's id, time and chain make different (the hash) is computed for
every event.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..canonical import check_data, check_text, shortened, to_date
from ..case import MAX_ID_LENGTH, MAX_NOTE_LENGTH, check_actor, check_person, reasons_text
from ..definition import TransitionDef, Workflow
from ..engine import CaseState, Engine, copy_data, engine_for
from ..errors import CaseExistsError, InvalidInputError, TransitionRefusedError
from ..loading import load_workflow
from ..replay import Recorded
from . import check_case_id, projections
from .rows import (
    GENESIS,
    INSERT_CASE,
    INSERT_EVENT_AT,
    SELECT_TOP,
    UPDATE_CASE,
    UtcClock,
    encode,
    fields_hash,
    json_list,
    translate,
)
from .timers import timer_rows, write_timer_rows

if TYPE_CHECKING:
    from . import Store

#: How many entries the memos of an import (_Memos) hold at most; a full one starts again
#: empty. Each entry keeps a state, and so its case data, alive: an import of cases that
#: all differ holds the data of a few thousand of them, whatever its length.
CREATED_LIMIT = 1_024
STEPS_LIMIT = 4_096
ENDS_LIMIT = 1_024
#: Nested deeper than this, data takes check_data's full walk (which refuses past 64).
_PLAIN_DEPTH = 60
_SCALARS = frozenset({str, int, float, bool, type(None)})
#: What a record may hold (Store.import_events); anything else is refused, so that a
#: misspelt field or an idempotency key is not silently dropped.
RECORD_FIELDS = ("case_id", "trigger", "workflow", "actor", "on", "data", "note", "by")
_RECORD_FIELDS = frozenset(RECORD_FIELDS)


def _plain(value: dict[Any, Any] | list[Any], depth: int) -> bool:
    """Whether ``value`` is built of nothing but dicts with str keys, lists and JSON's
    scalars, all of exactly those types, nested at most _PLAIN_DEPTH deep."""
    if depth > _PLAIN_DEPTH:
        return False
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind not in _SCALARS and not (
                    (kind is dict or kind is list) and _plain(item, depth + 1)):
                return False
    else:
        for item in value:
            kind = type(item)
            if kind not in _SCALARS and not (
                    (kind is dict or kind is list) and _plain(item, depth + 1)):
                return False
    return True


def _data_text(data: object) -> str | None:
    """The canonical JSON of a record's data when a quick look shows that check_data
    accepts it as it is (so the text is that of its copy); None: it takes the full check,
    which also words the error. Plain types are all _plain lets through; encode refuses
    NaN, the infinities and ints too long to print, and a lone surrogate (in a key or a
    value) is found in the text."""
    if type(data) is not dict or not _plain(data, 0):
        return None
    try:
        text = encode(data)
        text.encode("utf-8")
    except ValueError:  # UnicodeEncodeError is one
        return None
    return text


def _unchanged(value: Any, snapshot: Any) -> bool:
    """Whether ``value`` still holds what a snapshot of it (``copy_data``) saw: the same
    keys, and the very same scalar objects (immutable: the same object is the same
    value) in dicts and lists of the same shape. The snapshot's dicts and lists are its
    own, never the caller's, so a list or dict changed in place is compared item by
    item."""
    kind = type(value)
    if kind is dict:
        if type(snapshot) is not dict or len(value) != len(snapshot):
            return False
        for key, item in value.items():
            other = snapshot.get(key, _unchanged)  # (a function is never data)
            if type(key) is not str or (item is not other and not _unchanged(item, other)):
                return False
        return True
    if kind is list:
        if type(snapshot) is not list or len(value) != len(snapshot):
            return False
        for item, other in zip(value, snapshot, strict=True):
            if item is not other and not _unchanged(item, other):
                return False
        return True
    return False  # a scalar other than the one seen


#: A step worked out once: (the state before, the decision's target and transition, the
#: state after, the source's and the target's text, whether it is decided without
#: running any guard).
_Step = tuple[CaseState, frozenset[str], TransitionDef | None, CaseState, str, str, bool]
#: The rows of a new case that ends in a state: (that state, its projection rows but the
#: id, its timer rows, its configuration's text, whether it is final).
_End = tuple[CaseState, projections.CaseRows, list[tuple[str, str]], str, int]


class _Memos:
    """What an import works out once and shares between the cases it creates.

    - ``created``: (engine, data text, date, person) -> the initial state. A creation's
      state is a function of those alone (``Engine.initial_state``; text equal means
      data equal, but for the order of keys, which nothing stored reads).
    - ``steps``: (id of the state, trigger, actor, date, person) of a step without data
      -> what it does (``_Step``). ``Engine.apply`` is a function of those (the sequence
      number is the state's version + 1). ``Engine.evaluate`` is one too, but for the
      guards (a guard sees the case id and may refuse): a step whose decision runs a
      guard (the transition's own, or those of the timed steps ``overdue`` tries when
      the date moves past the last event on a workflow with timers) is decided again
      every time, and only its state after is reused. The state is kept in the value,
      so its id is not reused meanwhile.
    - ``ends``: id of the state a new case ends in -> its rows (``_End``). Every state
      here is made once, by one creation or one step from one state (a memo hit hands
      out the same object, a miss makes a new one), so a state stands for the whole
      path of inputs that led to it: the creation's data, date and person, and each
      step's trigger, actor, date, person and data. The rows read nothing else of the
      history (``due_rows``: each event's sequence number, kind, trigger, date, source
      and target); the case id is put in when they are queued.

    States are never changed in place (a step makes a new one), so cases share them
    safely. A case loaded from the store starts from a state of its own: its steps may
    be shared, its ends are not (it is written by ``projections.advance``).
    """

    __slots__ = ("created", "steps", "ends")

    def __init__(self) -> None:
        self.created: dict[tuple[int, str, dt.date, str | None],
                           tuple[Engine, CaseState, str]] = {}
        self.steps: dict[tuple[int, str, str, dt.date, str | None], _Step] = {}
        self.ends: dict[int, _End] = {}


class _Open:
    """The case being imported."""

    __slots__ = ("id", "wf", "engine", "state", "new", "created_at", "loaded_seq",
                 "proj_state", "history", "hash", "seq", "last_on", "updated_at", "data0",
                 "text0")

    def __init__(self, case_id: str, wf: Workflow, engine: Engine, state: CaseState,
                 new: bool, history: list[Any], head: str, seq: int) -> None:
        self.id, self.wf, self.engine, self.state, self.new = case_id, wf, engine, state, new
        # the events so far: Event objects of a loaded case, then the fields of a
        # Recorded for each imported one (made into Recorded when needed: _recorded)
        self.history = history
        self.hash, self.seq, self.loaded_seq = head, seq, seq
        self.proj_state = state  # the state its projection rows in the database are of
        self.created_at = self.last_on = self.updated_at = ""
        # the data as created, and its text: the case_data row while no step sets data
        # (a step that does makes a new mapping)
        self.data0: Any = None
        self.text0 = ""


def _recorded(history: list[Any]) -> list[Any]:
    """``history`` as Event and Recorded objects (what projections read)."""
    return [Recorded._make(h) if type(h) is tuple else h for h in history]


def import_events(store: Store, records: Iterable[Mapping[str, Any]]) -> int:
    """The body of :meth:`Store.import_events` (see there): batched, one transaction."""
    events: list[tuple[Any, ...]] = []
    new_cases: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    seen: set[str] = set()  # cases with rows in the buffer (the rest are in the db)
    # the workflow versions registered, with the digest of the text each was registered
    # with: another text under the same name and version is refused as create_case does
    registered: set[tuple[str, int, str]] = set()
    timers: dict[str, list[tuple[str, str]]] = {}  # cases of timed workflows -> their rows
    new_timers: dict[str, list[tuple[str, str]]] = {}  # the same, of cases it creates
    cur: _Open | None = None  # the case being imported
    count = 0
    rows_of = projections.ImportProjections()
    checked: set[str] = set()  # triggers already checked (actors: checked_actors)
    checked_actors: set[str] = set()
    days: dict[str, tuple[dt.date, str]] = {}
    memos = _Memos()
    created, steps, ends = memos.created, memos.steps, memos.ends
    clock = UtcClock()
    # the data of the last creation that took the quick check, a snapshot of it, its text
    last_data: tuple[Any, Any, str] = (None, None, "")
    probe = store._conn.cursor()

    def close_case() -> None:
        if cur is None:
            return
        engine, state = cur.engine, cur.state
        if cur.new:
            end = ends.get(id(state))
            if end is None or end[0] is not state:
                rows = projections.ImportProjections.rows(
                    engine, state, _recorded(cur.history),
                    cur.text0 if state.data is cur.data0 else None)
                timed = timer_rows(engine, state) if engine.timed else []
                end = (state, rows, timed, json_list(state.config),
                       int(engine.is_final(state.config)))
                if len(ends) >= ENDS_LIMIT:
                    ends.clear()
                ends[id(state)] = end
            _, rows, timed, target, final = end
            rows_of.add_rows(cur.id, rows)
            if timed:  # created in this import: no rows to replace
                new_timers[cur.id] = timed
            new_cases.append((cur.id, cur.wf.name, cur.wf.version, target, cur.seq,
                              cur.last_on, cur.hash, final, cur.created_at, cur.updated_at))
            return
        if cur.seq == cur.loaded_seq:
            if engine.timed:
                timers[cur.id] = timer_rows(engine, state)
            return
        projections.advance(store._conn, engine, cur.id, cur.proj_state, state,
                            _recorded(cur.history))
        if engine.timed:
            timers[cur.id] = timer_rows(engine, state)
        updates.append((json_list(state.config), cur.seq, cur.last_on, cur.hash,
                        int(engine.is_final(state.config)), cur.updated_at, cur.id))

    def flush() -> None:
        if events:
            store._conn.executemany(INSERT_EVENT_AT, events)
        if new_cases:
            store._conn.executemany(INSERT_CASE, new_cases)
        if updates:
            store._conn.executemany(UPDATE_CASE, updates)
        rows_of.flush(store._conn)
        write_timer_rows(store._conn, timers)
        write_timer_rows(store._conn, new_timers, new=True)
        timers.clear()
        new_timers.clear()
        events.clear()
        new_cases.clear()
        updates.clear()
        seen.clear()
        if cur is not None:
            seen.add(cur.id)

    with store.bulk(), translate("import events"):
        # the highest feed position, read inside the import's transaction; its events take
        # the next ones, in order (rows.INSERT_EVENT_AT). PostgreSQL reads NULL: it numbers
        # them after the commit (store/postgres.py)
        position = store._conn.execute(SELECT_TOP).fetchone()[0]
        numbered = position is not None
        for number, record in enumerate(records, start=1):
            if not isinstance(record, dict) and not isinstance(record, Mapping):
                raise InvalidInputError(f"record {number} is a {type(record).__name__} "
                                        f"({record!r}); records are mappings.")
            if not _RECORD_FIELDS.issuperset(record):
                stray = sorted(shortened(repr(k), 40) for k in record
                               if k not in _RECORD_FIELDS)
                raise InvalidInputError(
                    f"record {number} has {', '.join(stray)}, which a record does not take "
                    f"(idempotency keys are not taken by an import); a record's fields: "
                    f"{', '.join(RECORD_FIELDS)}.")
            try:
                case_id = record.get("case_id")
                # the current one was checked (text of str itself: a subclass's == could
                # say any id is the current one's)
                if cur is None or type(case_id) is not str or case_id != cur.id:
                    case_id = check_case_id(case_id)
                # text is immutable: a trigger, actor or date checked once stays valid
                trigger = record.get("trigger")
                if type(trigger) is not str or trigger not in checked:
                    trigger = check_text(trigger, "trigger", max_length=MAX_ID_LENGTH)
                    checked.add(trigger)
                actor = record.get("actor")
                if type(actor) is not str or actor not in checked_actors:
                    actor = check_actor(actor)
                    checked_actors.add(actor)
                on = record.get("on")
                day = days.get(on) if type(on) is str else None
                if day is None:
                    when = dt.date.today() if on is None else to_date(on, "on")
                    day = (when, when.isoformat())
                    if type(on) is str:
                        days[on] = day
                when, on_text = day
                data = record.get("data")
                text: str | None
                if trigger == "create":  # its text (None: the full check makes a copy)
                    if data is None:
                        text = "{}"
                    elif data is last_data[0] and _unchanged(data, last_data[1]):
                        text = last_data[2]  # the last creation's data, as it was then
                    else:
                        text = _data_text(data)
                        if text is not None:
                            last_data = (data, copy_data(data), text)
                    payload = None if text is not None else check_data(data)
                else:
                    payload = check_data(data)
                note = record.get("note")
                if note is not None:
                    note = check_text(note, "note", max_length=MAX_NOTE_LENGTH)
                by = record.get("by")
                if by is not None:
                    by = check_person(by)
                wf: Any = record.get("workflow")
                if trigger == "create" and not isinstance(wf, Workflow | str | os.PathLike):
                    raise InvalidInputError(f"a creation needs a 'workflow' (a Workflow, "
                                            f"a bundled name or a path), not {wf!r}.")
            except InvalidInputError as e:
                raise InvalidInputError(f"record {number}: {e}") from e
            at = clock()
            if trigger == "create":
                close_case()
                wf = wf if isinstance(wf, Workflow) else load_workflow(wf)
                if actor not in wf.actors:
                    raise InvalidInputError(
                        f"record {number}: {actor!r} is not an actor of workflow "
                        f"{wf.name!r}; actors: {', '.join(sorted(wf.actors))}.")
                if case_id in seen or probe.execute(
                        "SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone():
                    raise CaseExistsError(f"record {number}: case {case_id!r} already "
                                          f"exists in {store.where!r}.")
                if (wf.name, wf.version, wf.digest) not in registered:
                    store._register_workflow(wf)
                    registered.add((wf.name, wf.version, wf.digest))
                engine = engine_for(wf)
                if text is None:
                    text = encode(payload)
                start_key = (id(engine), text, when, by)
                start = created.get(start_key)
                if start is None or start[0] is not engine:
                    if payload is None:  # checked quickly: the full check makes the copy
                        payload = check_data(data)
                        # and its text is the one stored: the caller's data may have
                        # changed since it was read (a record's get, a str subclass's
                        # method), and the log must say what the state is made of
                        text = encode(payload)
                        start_key = (id(engine), text, when, by)
                    stray = engine.creation_reasons(payload)  # as create_case refuses them
                    if stray:
                        raise InvalidInputError(f"record {number}: can't create case "
                                                f"{case_id!r}: {stray[0]}.")
                    state = engine.initial_state(payload, when, by)
                    start = (engine, state, json_list(state.config))
                    if len(created) >= CREATED_LIMIT:
                        created.clear()
                    created[start_key] = start
                _, state, target = start
                row = (case_id, 1, "create", "create", actor, on_text, at, "[]", target, note,
                       text, wf.name, wf.version, None, GENESIS)
                commits_to = wf.digest  # a creation commits to its workflow's text
                cur = _Open(case_id, wf, engine, state, True,
                            [(case_id, 1, "create", "create", actor, when, frozenset(),
                              state.config, state.data, wf.name, wf.version, by, note)],
                            GENESIS, 0)
                cur.created_at = at
                cur.data0, cur.text0 = state.data, text
                seen.add(case_id)
            else:
                if cur is None or cur.id != case_id:
                    close_case()
                    if case_id in seen:
                        flush()
                    # its steps are decided on the state they are written onto: hold the
                    # case, as a step does, before reading it
                    store._lock_case(case_id)
                    case = store.case(case_id)
                    cur = _Open(case_id, case.definition, engine_for(case.definition),
                                case.engine_state, False, list(case.history),
                                case.history[-1].hash, case.version)
                    seen.add(case_id)
                state, engine, wf = cur.state, cur.engine, cur.wf
                seq = state.version + 1
                if payload:
                    text = encode(payload)
                    step_data: dict[str, Any] = json.loads(text)
                else:
                    text, step_data = "{}", {}
                key = (id(state), trigger, actor, when, by)
                step = None if payload else steps.get(key)
                if step is not None and step[0] is not state:
                    step = None
                if step is None or not step[6]:  # decided (again)
                    decision = engine.evaluate(state, trigger, actor=actor, on=when,
                                               data=payload, case_id=case_id, by=by)
                    if decision.reasons:
                        raise TransitionRefusedError(
                            f"Can't import record {number}, {trigger!r} on case "
                            f"{case_id!r} by {actor!r}: " + reasons_text(decision.reasons),
                            list(decision.reasons))
                    t = decision.transition
                    if step is not None and (step[1] != decision.target or step[2] is not t):
                        step = None  # (the guards only refuse: not seen)
                    if step is None:
                        after = engine.apply(state, trigger=trigger, actor=actor, on=when,
                                             seq=seq, target=decision.target, data=step_data,
                                             by=by, transition=t)
                        # decided without running a guard: neither the step's own nor,
                        # through overdue_reason, those of the workflow's timed steps
                        unguarded = t is not None and not t.guards and (
                            not engine.timed
                            or (state.last_on is not None and when <= state.last_on))
                        step = (state, decision.target, t, after, json_list(state.config),
                                json_list(decision.target), unguarded)
                        if not payload:
                            if len(steps) >= STEPS_LIMIT:
                                steps.clear()
                            steps[key] = step
                _, target_set, _, after, source, target, _ = step
                row = (case_id, seq, "fire", trigger, actor, on_text, at, source, target,
                       note, text, wf.name, wf.version, None, cur.hash)
                commits_to = None
                cur.state = after
                cur.history.append((case_id, seq, "fire", trigger, actor, when, state.config,
                                    target_set, step_data, wf.name, wf.version, by, note))
            digest = fields_hash(row, commits_to, by)
            if numbered:
                position += 1
            events.append((*row, digest, commits_to, by, position))
            cur.hash, cur.seq, cur.last_on, cur.updated_at = digest, row[1], on_text, at
            count += 1
            if len(events) >= 2000:
                close_case()  # its row goes with this batch, and is updated when it ends
                flush()
                cur.new, cur.loaded_seq, cur.proj_state = False, cur.seq, cur.state
        close_case()
        flush()
    return count
