"""Questions across cases, answered from the projection tables (store/projections.py):
who may act now (:func:`awaiting`), what is due (:func:`due`), and :func:`find_cases`
with filters, a page and a total."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .. import guards as _guards
from ..canonical import check_data, check_text, shortened
from ..case import check_actor
from ..definition import CLOCK
from ..engine import engine_for
from ..errors import InvalidInputError
from ..forecast import DueItem, due_items, sort_due
from .projections import field_value
from .rows import parse_date, state_set, translate

if TYPE_CHECKING:
    from ..definition import Workflow
    from . import CaseSummary, Store

__all__ = ["Awaited", "CaseList", "awaiting", "due", "find_cases"]


@attrs.frozen
class Awaited:
    """A case where an actor may act now, and the steps they may take (sorted)."""

    case_id: str
    workflow: str
    workflow_version: int
    state: frozenset[str]
    last_on: dt.date
    triggers: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "workflow": self.workflow,
                "workflow_version": self.workflow_version, "state": sorted(self.state),
                "last_on": self.last_on.isoformat(), "triggers": list(self.triggers)}


class CaseList(list["CaseSummary"]):
    """A page of case summaries: a list, with ``total`` (every case the filters match),
    ``offset`` and ``limit`` (None: no limit)."""

    def __init__(self, items: list[CaseSummary], *, total: int, offset: int,
                 limit: int | None) -> None:
        super().__init__(items)
        self.total = total
        self.offset = offset
        self.limit = limit

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "offset": self.offset, "limit": self.limit,
                "cases": [c.to_dict() for c in self]}


def awaiting(store: Store, actor: str, on: dt.date) -> list[Awaited]:
    """The body of :meth:`Store.awaiting` (see there)."""
    actor = check_actor(actor)
    with translate(f"list what {actor!r} may do"):
        rows = [] if store._unstorable(actor) else _tuples(
            store, "SELECT a.case_id, a.trigger, a.guarded, c.workflow, c.workflow_version, "
            "c.state, c.last_on FROM case_awaiting a JOIN cases c ON c.case_id = a.case_id "
            "WHERE a.actor = ? AND c.last_on <= ? ORDER BY a.case_id, a.trigger",
            (actor, on.isoformat()))
        # each case's workflow, version, state and last date (its rows are consecutive)
        heads: dict[str, tuple[str, int, str, str]] = {}
        for r in rows:
            if r[0] not in heads:
                heads[r[0]] = (r[3], r[4], r[5], r[6])
        # a timed step the clock could have taken before the day asked blocks every other
        # step until it is recorded (Engine.evaluate's 'timer overdue' rule, which also asks
        # the timer's guards): see _blocked
        # (read as plain tuples, as the rows above: thousands of timers are due before the
        # day asked at 100,000 cases, and a sqlite3.Row costs more to make and unpack)
        late: dict[str, list[tuple[str, str]]] = {}
        for case_id, trigger, due_on in _tuples(
                store, "SELECT case_id, trigger, due_on FROM timers WHERE due_on < ?",
                (on.isoformat(),)):
            if case_id in heads:
                late.setdefault(case_id, []).append((trigger, due_on))
        guarded = sorted({r[0] for r in rows if r[2]} | late.keys())
        data: dict[str, str] = {} if not guarded else dict(_tuples(
            store, "SELECT case_id, data FROM case_data WHERE case_id IN "
            "(SELECT value FROM json_each(?))", (json.dumps(guarded),)))
    blocked = {case_id for case_id, timers in sorted(late.items())
               if _blocked(store, case_id, timers, on, *heads[case_id][:3], data.get(case_id))}
    found: dict[str, list[str]] = {}
    for case_id, trigger, is_guarded, name, version, state, _ in rows:
        if case_id in blocked:
            continue
        if is_guarded and not _guards_hold(store, case_id, trigger, actor, on, name, version,
                                           state_set(state), data.get(case_id)):
            continue
        found.setdefault(case_id, []).append(trigger)
    out = []
    for case_id, triggers in found.items():
        name, version, state, last = heads[case_id]
        out.append(Awaited(case_id, name, version, state_set(state), parse_date(last),
                           tuple(triggers)))
    if not out:
        _check_known_actor(store, actor)
    return out


def _tuples(store: Store, sql: str, params: Any) -> list[tuple[Any, ...]]:
    """The rows as plain tuples (faster to make and read than sqlite3.Row)."""
    cursor = store._conn.cursor()
    cursor.row_factory = None
    return cursor.execute(sql, params).fetchall()


def _blocked(store: Store, case_id: str, timers: list[tuple[str, str]], on: dt.date,
             name: str, version: int, state: str, data: str | None) -> bool:
    """Does a timed step the clock could have taken before ``on`` block every other step
    of the case (``Engine.evaluate``'s 'timer overdue' rule)? ``timers``: the case's rows
    of the ``timers`` table due before ``on`` (each armed in the case's state).

    The clock may take an armed step on its date unless its guards refuse (asked on that
    date, on the case data) or a rule that reads more of the case does (a join, four
    eyes, data to state again): a step with none of those blocks for sure, one with
    guards only is asked here, and any other is answered by replaying the case."""
    engine = engine_for(store.workflow(name, version))
    config = state_set(state)
    for trigger, due_on in sorted(timers, key=lambda r: r[1]):
        t = engine.enabled_transition(config, trigger)
        if t is None:
            continue
        if t.join or t.quorum_lost or t.not_by or t.restate_after_withdrawal:
            case = store.case(case_id)
            return bool(case._engine.overdue(case.engine_state, on, case_id=case_id))
        if not t.guards or _guards_hold(store, case_id, trigger, CLOCK, parse_date(due_on),
                                        name, version, config, data):
            return True
    return False


def _guards_hold(store: Store, case_id: str, trigger: str, actor: str, on: dt.date,
                 name: str, version: int, config: frozenset[str], data: str | None) -> bool:
    """Do the step's guards let ``actor`` take it on ``on`` (as ``Engine.evaluate`` runs
    them: on the case data, an unregistered guard refusing)?"""
    wf = store.workflow(name, version)
    t = engine_for(wf).enabled_transition(config, trigger)
    if t is None or data is None:
        return False
    ctx = _guards.GuardContext(case_id=case_id, trigger=trigger, actor=actor, on=on,
                               data=json.loads(data), state=config, workflow=wf.name)
    return not any(_guards.run_guard(g, _guards.lookup_guard(g), ctx) for g in t.guards)


def _check_known_actor(store: Store, actor: str) -> None:
    with translate("read the workflows"):
        keys = store._conn.execute("SELECT name, version FROM workflows").fetchall()
    if not keys:
        return
    known: set[str] = set()
    for name, version in keys:
        known |= set(store.workflow(name, version).actors)
    if actor not in known:
        raise InvalidInputError(f"{actor!r} is not an actor of any workflow in {store.where!r}; "
                                f"actors: {', '.join(sorted(known))}.")


def due(store: Store, on: dt.date, within_days: int, workflow: str | None) -> list[DueItem]:
    """The body of :meth:`Store.due` without ``as_of``: rows of ``case_due`` due by the
    horizon, each answered from its columns, or its case replayed when its date or
    actors move with the day (see store/projections.py)."""
    horizon = on + dt.timedelta(days=within_days)
    sql = ("SELECT d.case_id, d.kind, d.step, d.label, d.due, d.fixed, d.at_risk_from, d.actors "
           "FROM case_due d")
    params: list[Any] = []
    if workflow is not None:
        sql += " JOIN cases c ON c.case_id = d.case_id WHERE c.workflow = ? AND"
        params.append(workflow)
    else:
        sql += " WHERE"
    sql += " d.due <= ?"
    params.append(horizon.isoformat())
    with translate("list what is due"):
        rows = _tuples(store, sql, params)
    # thousands of rows share a few due dates and actor lists: each is worked out once
    # (its day and days left; its tuple), and each item is made with positional arguments
    # (passed as keywords, attrs' __init__ takes about half as long again)
    items: list[DueItem] = []
    append = items.append
    replayed: set[str] = set()
    today = on.isoformat()
    days: dict[str, tuple[dt.date, int]] = {}
    actor_lists: dict[str, tuple[str, ...]] = {}
    for case_id, kind, step, label, due_text, fixed, risk_from, actors in rows:
        if not fixed:
            replayed.add(case_id)  # its date or actors move with the day asked
            continue
        known = days.get(due_text)
        if known is None:
            day = parse_date(due_text)
            known = days[due_text] = (day, (day - on).days)
        day, left = known
        if left < 0:
            status = "missed"
        elif risk_from is not None and today >= risk_from:
            status = "at risk"
        else:
            status = "open"
        names = actor_lists.get(actors)
        if names is None:
            names = actor_lists[actors] = tuple(json.loads(actors))
        append(DueItem(case_id, kind, step, label, day, status, left, names))
    items.extend(_timer_items(store, on, horizon, workflow))
    if replayed:
        items = [i for i in items if i.case_id not in replayed]
        for case_id in sorted(replayed):
            case = store.case(case_id)
            items.extend(due_items(case.id, case.definition, case.engine_state, case.history,
                                   on=on, within_days=within_days))
    return sort_due(items)


def _timer_items(store: Store, on: dt.date, horizon: dt.date,
                 workflow: str | None) -> list[DueItem]:
    """The armed timed steps due by ``horizon``, from the ``timers`` table (as
    ``forecast.due_items`` lists them: kind "timer", taken by the clock)."""
    labels = _timer_labels(store, workflow)
    params: list[Any] = [horizon.isoformat()]
    if labels is not None:  # every case's label of each step is known without its case
        sql = "SELECT case_id, trigger, due_on FROM timers WHERE due_on <= ?"
    else:
        sql = ("SELECT t.case_id, t.trigger, t.due_on, c.workflow, c.workflow_version "
               "FROM timers t JOIN cases c ON c.case_id = t.case_id WHERE t.due_on <= ?")
        if workflow is not None:
            sql += " AND c.workflow = ?"
            params.append(workflow)
    with translate("list the timers that are due"):
        rows = _tuples(store, sql, params)
    found: dict[tuple[str, int, str], str] = {}
    days: dict[str, tuple[dt.date, str, int]] = {}  # each due date's day, status, days left
    clock = ("clock",)
    out = []
    for row in rows:
        case_id, trigger, due_text = row[0], row[1], row[2]
        if labels is not None:
            label = labels.get(trigger) or trigger
        else:
            key = (row[3], row[4], trigger)
            if key not in found:
                found[key] = _label(store.workflow(row[3], row[4]), trigger)
            label = found[key]
        known = days.get(due_text)
        if known is None:
            day = parse_date(due_text)
            known = days[due_text] = (day, "due" if day <= on else "upcoming", (day - on).days)
        day, status, left = known
        out.append(DueItem(case_id, "timer", trigger, label, day, status, left, clock))
    return out


def _label(wf: Workflow, trigger: str) -> str:
    """A step's label as ``due`` shows it: its first transition's, else its trigger."""
    found = wf.transitions_for(trigger)
    return (found[0].label if found else "") or trigger


def _timer_labels(store: Store, workflow: str | None) -> dict[str, str] | None:
    """Each timed step's label, when every workflow version stored gives a step the same
    one and ``workflow`` (when given) is the only workflow stored: the timers then need
    no look-up of their cases. None otherwise."""
    with translate("read the workflows"):
        keys = store._conn.execute("SELECT name, version FROM workflows").fetchall()
    if workflow is not None and any(name != workflow for name, _ in keys):
        return None
    versions = [store.workflow(name, version) for name, version in keys]
    labels: dict[str, str] = {}
    for trigger in {t.trigger for wf in versions for t in wf.timed_transitions}:
        found = {_label(wf, trigger) for wf in versions}
        if len(found) > 1:
            return None
        labels[trigger] = found.pop()
    return labels


def _check_page(limit: object, offset: object) -> tuple[int | None, int]:
    for name, value in (("limit", limit), ("offset", offset)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value <= 2**62):  # SQLite's integers
            raise InvalidInputError(f"{name} must be a whole number from 0 to {2**62}, "
                                    f"not {value!r}.")
    return limit, offset or 0  # type: ignore[return-value]


def find_cases(store: Store, *, workflow: str | None, state: str | None,
               awaiting_actor: str | None, overdue: bool, final: bool | None,
               data: Mapping[str, Any] | None, since: dt.date | None, until: dt.date | None,
               limit: object, offset: object, on: dt.date) -> CaseList:
    """The body of :meth:`Store.cases` (see there)."""
    from . import CaseSummary

    page_limit, page_offset = _check_page(limit, offset)
    clauses: list[str] = []
    params: list[Any] = []
    if workflow is not None:
        clauses.append("workflow = ?")
        params.append(workflow)
    if final is not None:
        clauses.append("is_final = ?")
        params.append(int(bool(final)))
    if since is not None:
        clauses.append("last_on >= ?")
        params.append(since.isoformat())
    if until is not None:
        clauses.append("last_on <= ?")
        params.append(until.isoformat())
    if data is not None:
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"data must be a mapping of key paths to values, "
                                    f"not {data!r}.")
        for path, value in data.items():
            if not isinstance(path, str) or not path:
                raise InvalidInputError(f"a data key path is text such as 'budget.total', "
                                        f"not {path!r}.")
            # what can't be stored can't be matched: a lone surrogate, NaN, a huge int
            check_data({check_text(path, "a data key path"): value})
            if isinstance(value, Mapping):  # case_fields holds the leaves inside objects
                raise InvalidInputError(
                    f"data filters compare one value at a key path, not an object: name the "
                    f"keys inside {shortened(repr(value), 60)} ('{path}.KEY').")
            clauses.append("case_id IN (SELECT case_id FROM case_fields WHERE path = ? "
                           "AND value = ?)")
            params.extend((path, field_value(value)))
    # a text the backend can't hold (U+0000 on PostgreSQL) matches no stored row
    if any(isinstance(p, str) and store._unstorable(p) for p in params):
        clauses, params = ["1 = 0"], []
    if awaiting_actor is not None:
        ids = sorted({a.case_id for a in awaiting(store, awaiting_actor, on)})
        clauses.append("case_id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(ids))
    if overdue:
        ids = sorted({i.case_id for i in due(store, on, 0, workflow) if i.status == "missed"})
        clauses.append("case_id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(ids))
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    paged = state is None
    sql = f"SELECT * FROM cases{where} ORDER BY case_id"
    if paged and (page_limit is not None or page_offset):
        sql += " LIMIT ? OFFSET ?"
        page_params = [*params, -1 if page_limit is None else page_limit, page_offset]
    else:
        page_params = params
    with translate("list cases"):
        rows = store._conn.execute(sql, page_params).fetchall()
        if paged and (page_limit is not None or page_offset):
            total = store._conn.execute(f"SELECT COUNT(*) FROM cases{where}",
                                        params).fetchone()[0]
        else:
            total = len(rows)
    out: list[CaseSummary] = []
    known: set[str] = set()  # the states of the workflows these cases run on
    for r in rows:
        leaves = state_set(r["state"])
        if state is not None:
            wf = store.workflow(r["workflow"], r["workflow_version"])
            known |= wf.states
            if state not in engine_for(wf).active(leaves):
                continue
        out.append(CaseSummary(
            case_id=r["case_id"], workflow=r["workflow"],
            workflow_version=r["workflow_version"], state=leaves, version=r["seq"],
            last_on=parse_date(r["last_on"]), is_final=bool(r["is_final"]),
            updated_at=dt.datetime.fromisoformat(r["updated_at"])))
    if state is not None and rows and state not in known:
        raise InvalidInputError(
            f"No workflow of these cases has a state {state!r}; states: "
            f"{', '.join(sorted(known))}.")
    if not paged:
        total = len(out)
        end = None if page_limit is None else page_offset + page_limit
        out = out[page_offset:end]
    return CaseList(out, total=total, offset=page_offset, limit=page_limit)
