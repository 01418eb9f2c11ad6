"""The route to the goal and the dates along it: the facts a case's events establish, the
shortest way from where it stands to its goal, each step's estimated date, and the
slack and critical path (the analysis every answer is built from)."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..canonical import add_days, date_range_problem
from ..clock import lookup as _lookup
from ..definition import DateRef, TransitionDef, Workflow
from ..engine import CaseState, Engine, engine_for
from .expected import _taken, expectations
from .results import Expectation

if TYPE_CHECKING:
    from ..case import Event

#: The route search gives up after visiting this many configurations.
MAX_ROUTE_SEARCH = 100_000


def _active(engine: Engine, config: frozenset[str]) -> frozenset[str]:
    """The states of ``engine``'s workflow active in ``config``. An event recorded before
    a migration may name states that this version no longer has: they are left out (the
    case is not in them here; the migration moved it out of any it was still in)."""
    known = engine.workflow.state_defs
    if all(s in known for s in config):
        return engine.active(config)
    return engine.active(frozenset(s for s in config if s in known))


def _moves(e: Event) -> bool:
    """Whether ``e`` may move the case between states: a step to another configuration,
    or a migration (which enters the states its mapping moves the case into)."""
    return e.kind in ("fire", "migrate") and e.source != e.target


def _entered(engine: Engine, history: Sequence[Event]) -> dict[str, tuple[dt.date, int]]:
    """For each active state, the date and seq of the event that entered it."""
    out: dict[str, tuple[dt.date, int]] = {}
    for e in history:
        if e.kind == "create":
            for s in _active(engine, e.target):
                out[s] = (e.on, e.seq)
        elif _moves(e):
            before, after = _active(engine, e.source), _active(engine, e.target)
            for s in before - after:
                out.pop(s, None)
            for s in after - before:
                out[s] = (e.on, e.seq)
    return out


def _stays(engine: Engine, history: Sequence[Event]
           ) -> tuple[dict[str, tuple[dt.date, bool]], dict[str, tuple[dt.date, bool]]]:
    """Each state's latest entry, and when the case left it after that entry (if it did):
    state -> (date, False); the False says these are facts, not projections."""
    entered: dict[str, tuple[dt.date, bool]] = {}
    left: dict[str, tuple[dt.date, bool]] = {}
    for e in history:
        if e.kind == "create":
            for s in _active(engine, e.target):
                entered[s] = (e.on, False)
        elif _moves(e):
            before, after = _active(engine, e.source), _active(engine, e.target)
            for s in before - after:
                left[s] = (e.on, False)
            for s in after - before:
                entered[s] = (e.on, False)
                left.pop(s, None)
    return entered, left


def _resolve(ref: DateRef, data: Mapping[str, Any],
             step_dates: Mapping[str, tuple[dt.date, bool]],
             state_dates: Mapping[str, tuple[dt.date, bool]] | None = None,
             deadline_of: Callable[[str], DateRef | None] | None = None,
             ) -> tuple[dt.date | None, bool, str]:
    """A date reference's date, whether it is projected (counts from a forecast), and why
    not when it has none."""
    if ref.kind == "state":
        found = (state_dates or {}).get(ref.state or "")
        if found is None:
            return None, False, f"the case has not entered {ref.state!r} and the route does " \
                                f"not enter it"
        return add_days(found[0], ref.days), found[1], ""
    if ref.kind == "join":
        return None, False, f"the day every region of {ref.state!r} is done is not known yet"
    if ref.kind == "missed":
        inner = deadline_of(ref.step or "") if deadline_of else None
        if inner is None or inner.kind == "missed":
            return None, False, f"{ref.step!r} has no deadline"
        due, projected, why = _resolve(inner, data, step_dates, state_dates)
        return (None, False, why) if due is None else (add_days(due, ref.days), projected, "")
    if ref.kind == "date" and ref.date is not None:
        return add_days(ref.date, ref.days), False, ""
    if ref.kind == "data":
        value = _lookup(data, ref.key or "")
        if not isinstance(value, str):
            return None, False, f"the case data has no date {ref.key!r} (as 'YYYY-MM-DD')"
        try:
            date = dt.date.fromisoformat(value) if len(value) == 10 else None
        except ValueError:
            date = None
        if date is None:
            return None, False, f"the case data's {ref.key!r} is {value!r}, not a date"
        problem = date_range_problem(date, f"the case data's {ref.key!r}")
        if problem:
            return None, False, problem
        return add_days(date, ref.days), False, ""
    found = step_dates.get(ref.step or "")
    if found is None:
        return None, False, f"{ref.step!r} has not been taken and is not on the route"
    return add_days(found[0], ref.days), found[1], ""


_ROUTES: dict[tuple[int, frozenset[str], str], list[TransitionDef] | None] = {}


def _route(engine: Engine, config: frozenset[str], goal: str) -> list[TransitionDef] | None:
    """The shortest sequence of steps from ``config`` to a configuration with ``goal``
    (memoised: it depends on nothing else, and engines live as long as the process)."""
    key = (id(engine), config, goal)
    if key not in _ROUTES:
        if len(_ROUTES) > 10_000:
            _ROUTES.clear()
        _ROUTES[key] = _search_route(engine, config, goal)
    found = _ROUTES[key]
    return None if found is None else list(found)


def _search_route(engine: Engine, config: frozenset[str],
                  goal: str) -> list[TransitionDef] | None:
    if goal in engine.active(config):
        return []
    order = list(dict.fromkeys(t.trigger for t in engine.workflow.transitions))
    came_from: dict[frozenset[str], tuple[frozenset[str], TransitionDef] | None] = {
        config: None}
    queue = deque([config])
    while queue:
        current = queue.popleft()
        if engine.is_final(current):
            continue
        for trigger in order:
            t = engine.enabled_transition(current, trigger)
            # the route is what people do; the clock's steps are what happens if they don't
            if t is None or t.ballot != "yes" or t.timed or not t.awaited:
                continue  # nor a step nobody is awaited for (awaited = false): no plan
            if (t.join or t.quorum_lost) and engine.join_reasons(t, current):
                continue
            nxt = engine.step(current, trigger)
            if nxt in came_from:
                continue
            came_from[nxt] = (current, t)
            if goal in engine.active(nxt):
                path: list[TransitionDef] = []
                node: frozenset[str] = nxt
                while (link := came_from[node]) is not None:
                    node, step = link
                    path.append(step)
                return path[::-1]
            if len(came_from) > MAX_ROUTE_SEARCH:
                return None
            queue.append(nxt)
    return None


@attrs.frozen
class _Voter:
    voter: str
    date: dt.date
    basis: str
    set_by: str
    expected: Expectation | None
    duration: int
    late: bool


@attrs.define
class _Planned:
    t: TransitionDef
    config: frozenset[str]
    ready: dt.date
    date: dt.date
    basis: str
    set_by: str
    expected: Expectation | None
    duration: int  # days counted from ready when basis is "duration", else 0
    late: bool
    preds: list[int]
    actors: tuple[str, ...]
    voters: list[_Voter]
    latest: dt.date | None = None  # latest finish without making the goal late
    slack: int | None = None


def _estimate(t: TransitionDef, ready: dt.date, floor: dt.date,
              exp: Expectation | None) -> tuple[dt.date, str, str, int, bool]:
    """(date, basis, set_by, duration counted, late) for one step or voter."""
    if exp is not None:
        est, basis, duration = exp.date, "expected", 0
    elif t.duration_days is not None:
        est, basis, duration = add_days(ready, t.duration_days), "duration", \
            t.duration_days
    else:
        est, basis, duration = ready, "none", 0
    date = max(est, ready, floor)
    late = exp is not None and exp.date < floor
    if basis != "none" and date == est:
        set_by = basis
    elif date == ready and not late:
        set_by = "ready"
    else:
        set_by = "on"
    return date, basis, set_by, duration, late


@attrs.frozen
class _Analysis:
    workflow: Workflow
    on: dt.date
    floor: dt.date
    goal_reached_on: dt.date | None
    route: list[_Planned] | None
    taken: dict[str, tuple[int, dt.date]]
    step_dates: dict[str, tuple[dt.date, bool]]
    target: dt.date | None
    target_note: str
    #: each state's latest entry, and its leaving after it (facts, then the route's dates)
    state_dates: dict[str, tuple[dt.date, bool]] = attrs.field(factory=dict)
    left_dates: dict[str, tuple[dt.date, bool]] = attrs.field(factory=dict)


def _analyse(workflow: Workflow, state: CaseState, history: Sequence[Event],
             on: dt.date) -> _Analysis:
    engine = engine_for(workflow)
    wf = workflow
    floor = max(on, state.last_on) if state.last_on else on
    taken = _taken(history)
    step_dates: dict[str, tuple[dt.date, bool]] = {k: (d, False) for k, (_, d) in taken.items()}
    entered = _entered(engine, history)
    state_dates, left_dates = _stays(engine, history)
    # A date counted from entering a state is counted from the date the clock counts
    # from (the engine's, kept for each active state a timer or deadline names), so a
    # deadline falls due on the day its escalation reckons with. They differ after a
    # migration: a state kept from a version that did not watch it counts from the
    # migration (Engine.rebase). When a step could first be taken stays the real entry.
    for s, (_, day) in state.entered.items():
        state_dates[s] = (day, False)
    goal = wf.goal
    reached_on = None
    route: list[_Planned] | None = None
    if goal is not None and goal in engine.active(state.config):
        reached_on = entered.get(goal, (state.last_on or on, 0))[0]
        route = []
    elif goal is not None and not engine.is_final(state.config):
        transitions = _route(engine, state.config, goal)
        if transitions is not None:
            route = _plan(engine, state, history, transitions, entered, floor, step_dates,
                          state_dates, left_dates)
    target, _, target_note = (None, False, "") if wf.target is None else \
        _resolve(wf.target, state.data, step_dates)
    return _Analysis(workflow=wf, on=on, floor=floor, goal_reached_on=reached_on, route=route,
                     taken=taken, step_dates=step_dates, target=target, target_note=target_note,
                     state_dates=state_dates, left_dates=left_dates)


def _plan(engine: Engine, state: CaseState, history: Sequence[Event],
          transitions: list[TransitionDef], entered: dict[str, tuple[dt.date, int]],
          floor: dt.date, step_dates: dict[str, tuple[dt.date, bool]],
          state_dates: dict[str, tuple[dt.date, bool]],
          left_dates: dict[str, tuple[dt.date, bool]]) -> list[_Planned]:
    wf = engine.workflow
    said: dict[tuple[str, str | None], Expectation] = {
        (x.step, x.voter): x for x in expectations(history)}
    # who entered each active state: ("fact", date) or ("step", index on the route)
    came: dict[str, tuple[dt.date, int | None]] = {s: (d, None) for s, (d, _) in entered.items()}
    config = state.config
    out: list[_Planned] = []
    for i, t in enumerate(transitions):
        active = engine.active(config)
        relevant = [s for s in active if s == t.source or t.source in wf.ancestors(s)]
        deps = [came.get(s, (floor, None)) for s in relevant] or [(floor, None)]
        ready = max(d for d, _ in deps)
        preds = sorted({p for _, p in deps if p is not None})
        earliest = None
        if t.earliest is not None:
            earliest, _, _ = _resolve(t.earliest, state.data, step_dates)
        voters: list[_Voter] = []
        if t.vote:
            vg = wf.votes[t.vote]
            # ballots cast so far count only in the round the case is in now
            ballots = state.ballots.get(vg.id, {}) if vg.state in state.config else {}
            gone = state.withdrawn.get(vg.id, frozenset())
            electorate = [v for v in vg.voters if v not in gone]
            yes = sum(1 for v in electorate if ballots.get(v) == "yes")
            needed = vg.required(len(electorate)) - yes
            for v in electorate:
                if v in ballots:
                    continue
                options = [x for x in (said.get((t.trigger, v)), said.get((t.trigger, None)))
                           if x is not None]
                exp = max(options, key=lambda x: x.seq) if options else None
                d, basis, set_by, duration, late = _estimate(t, ready, floor, exp)
                voters.append(_Voter(v, d, basis, set_by, exp, duration, late))
            # the vote is decided by the slowest of the voters still needed
            ranked = sorted(voters, key=lambda x: x.date)
            if ranked and needed >= 1:
                decider = ranked[min(needed, len(ranked)) - 1]
                date, basis, set_by = decider.date, decider.basis, decider.set_by
                exp, duration, late = decider.expected, decider.duration, decider.late
            else:
                date, basis, set_by, duration, late, exp = \
                    max(ready, floor), "none", "ready" if ready >= floor else "on", 0, False, None
            actors = tuple(v.voter for v in sorted(voters, key=lambda x: x.date, reverse=True))
        else:
            exp = said.get((t.trigger, None))
            date, basis, set_by, duration, late = _estimate(t, ready, floor, exp)
            actors = t.actors
        if earliest is not None and earliest > date:
            date, set_by = earliest, "earliest"
        if t.timer is not None:  # the clock takes it on its own date, no earlier
            at, _, _ = _resolve(t.timer, state.data, step_dates, state_dates,
                                engine.deadline_of)
            if at is not None and at >= date:
                date, set_by, basis = at, "timer", "timer"
        out.append(_Planned(t=t, config=config, ready=ready, date=date, basis=basis,
                            set_by=set_by, expected=exp, duration=duration, late=late,
                            preds=preds, actors=actors, voters=voters))
        step_dates[t.trigger] = (date, True)
        nxt = engine.step(config, t.trigger)
        before, after = active, engine.active(nxt)
        for s in before - after:
            came.pop(s, None)
            left_dates[s] = (date, True)
        for s in after - before:
            came[s] = (date, i)
            state_dates[s] = (date, True)
            left_dates.pop(s, None)
        config = nxt
    return out


def _slack(route: list[_Planned], end: dt.date) -> None:
    """Backward pass: the latest date each step may finish without moving ``end``."""
    for p in route:
        p.latest = None
    for i in range(len(route) - 1, -1, -1):
        p = route[i]
        if p.latest is None:
            p.latest = end
        start_by = add_days(p.latest, -p.duration)
        for j in p.preds:
            q = route[j]
            q.latest = start_by if q.latest is None else min(q.latest, start_by)
        p.slack = (p.latest - p.date).days


def _critical(route: list[_Planned]) -> list[int]:
    if not route:
        return []
    chain = [len(route) - 1]
    while route[chain[-1]].preds:
        preds = route[chain[-1]].preds
        chain.append(min(preds, key=lambda j: (route[j].slack or 0, -route[j].date.toordinal(),
                                               j)))
    return chain[::-1]
