"""Deadlines, expected dates and the forecast: will a case reach its goal in time, and if
not, who is holding it up?

Three kinds of knowledge feed the answers, each documented in ``docs/forecast.md``:

- the workflow file: a step's ``deadline`` and ``earliest`` date, its typical
  ``duration_days``, and the workflow's ``goal`` state and ``target`` date;
- the case's recorded events: what was taken, and when;
- expectations: events of kind ``"expect"`` in the same log, in which someone said
  when a pending step is expected (``case.expect``). They change no state and are
  kept out of the case's data; the latest one said about a step counts, and one said
  before the step was last taken is spent.

The forecast follows the *route*: the shortest sequence of steps (fewest steps, file
order breaking ties) from where the case stands to its goal, taking only "yes"
ballots, counting a vote as one step. Each step on the route gets a date: its
expected date, or the date it can be taken plus its typical duration, or (with
neither) the date it can be taken; never earlier than its ``earliest`` date, than
the steps it waits for (a join waits for its latest region, a vote for its slowest
needed voter), than the day asked about, or than the case's last recorded event.

Everything here is computed from a workflow, a case's state and its events: no SQL,
no writing. ``Case.forecast`` / ``Case.deadlines`` and ``Store.due`` call it.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .canonical import DATE_RANGE, add_days, date_or_today, date_range_problem, to_date
from .definition import DateRef, TransitionDef, Workflow
from .engine import CaseState, Engine, engine_for
from .errors import InvalidInputError

if TYPE_CHECKING:
    from .case import Event

__all__ = [
    "DEADLINE_STATUSES",
    "Deadline",
    "DueItem",
    "Expectation",
    "Forecast",
    "Party",
    "StepForecast",
    "VoterForecast",
    "deadlines",
    "due_items",
    "expectations",
    "forecast",
    "LatestDate",
    "LatestDates",
    "latest_dates",
    "parse_expected",
    "sort_due",
]

#: Every status a deadline can have.
DEADLINE_STATUSES = ("met", "open", "at risk", "missed")
#: The route search gives up after visiting this many configurations.
MAX_ROUTE_SEARCH = 100_000


def _iso(d: dt.date | None) -> str | None:
    return None if d is None else d.isoformat()


def _days(n: int) -> str:
    return f"{n} day" if abs(n) == 1 else f"{n} days"


def parse_expected(value: object) -> tuple[dt.date, str]:
    """An expected date and the text it was given as: a date, 'YYYY-MM-DD', or 'YYYY-MM'.

    A month means the end of that month: ``'2021-11'`` is 30 November 2021. The date
    must lie in the range every date keeps to (``canonical.DATE_RANGE``).
    """
    if isinstance(value, str) and len(value) == 7 and value[4] == "-":
        month_end: dt.date | None = None
        if value[:4].isdigit() and value[5:].isdigit() and 1 <= int(value[5:]) <= 12 \
                and int(value[:4]) >= 1:
            year, month = int(value[:4]), int(value[5:])
            month_end = dt.date(year, month, calendar.monthrange(year, month)[1])
        if month_end is None:
            raise InvalidInputError(f"the expected date {value!r} is not a month 'YYYY-MM' "
                                    f"(e.g. '2021-11') nor a date 'YYYY-MM-DD'.")
        problem = date_range_problem(month_end, f"the end of the expected month {value!r},")
        if problem:
            raise InvalidInputError(f"{problem}.")
        return month_end, value
    try:
        date = to_date(value, "the expected date")
    except InvalidInputError as e:
        if DATE_RANGE in str(e):  # a real date, outside the range: the hint would mislead
            raise
        raise InvalidInputError(f"{e} A month 'YYYY-MM' (e.g. '2021-11') is also accepted: "
                                f"it means the end of that month.") from None
    return date, date.isoformat()


# --------------------------------------------------------------------------- results


@attrs.frozen
class Expectation:
    """What someone said, on ``said_on``, about when ``step`` is expected."""

    step: str
    date: dt.date
    given: str  # as said: '2021-11' or '2021-11-30'
    said_on: dt.date
    actor: str
    seq: int
    voter: str | None = None  # for a vote: the voter it is about; None: every voter
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "voter": self.voter, "date": self.date.isoformat(),
                "given": self.given, "said_on": self.said_on.isoformat(), "actor": self.actor,
                "seq": self.seq, "note": self.note}


@attrs.frozen
class VoterForecast:
    """One voter's part in a vote on the route: when their ballot is expected."""

    voter: str
    date: dt.date
    basis: str  # "expected", "duration" or "none"
    expected: Expectation | None
    late: bool  # the expected date has passed without the ballot
    slack_days: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"voter": self.voter, "date": self.date.isoformat(), "basis": self.basis,
                "expected": self.expected.to_dict() if self.expected else None,
                "late": self.late, "slack_days": self.slack_days}


@attrs.frozen
class StepForecast:
    """A step on the route to the goal and the date it is expected on.

    ``basis`` says where the estimate came from (``"expected"``: an expectation,
    ``"duration"``: the typical duration, ``"none"``: neither); ``set_by`` says what
    fixed the date (the estimate, ``"ready"``: the steps it waits for, ``"earliest"``:
    its earliest date, ``"on"``: the day asked or the last recorded event).
    """

    step: str
    label: str
    source: str
    target: str
    actors: tuple[str, ...]
    ready: dt.date
    date: dt.date
    basis: str
    set_by: str
    expected: Expectation | None
    duration_days: int | None
    late: bool
    waits_for: tuple[str, ...]  # steps on the route it waits for
    slack_days: int | None
    critical: bool
    voters: tuple[VoterForecast, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "label": self.label, "source": self.source,
                "target": self.target, "actors": list(self.actors),
                "ready": self.ready.isoformat(), "date": self.date.isoformat(),
                "basis": self.basis, "set_by": self.set_by,
                "expected": self.expected.to_dict() if self.expected else None,
                "duration_days": self.duration_days, "late": self.late,
                "waits_for": list(self.waits_for), "slack_days": self.slack_days,
                "critical": self.critical, "voters": [v.to_dict() for v in self.voters]}


@attrs.frozen
class Party:
    """A party the goal is waiting for: who, on which step, expected when."""

    actor: str
    name: str
    step: str
    date: dt.date
    late: bool

    def to_dict(self) -> dict[str, Any]:
        return {"actor": self.actor, "name": self.name, "step": self.step,
                "date": self.date.isoformat(), "late": self.late}


@attrs.frozen
class Forecast:
    """When the case is expected to reach its goal, and whether that makes the target date.

    ``date`` is None when the goal can't be reached (the case ended elsewhere, or no
    route leads there) or the workflow names no goal. ``slack_days`` is how many days
    the critical path can slip before the goal misses the target (negative: it is
    late by that many days); ``holding_up`` are the parties of the critical path who
    can act now, the slowest first.
    """

    case_id: str
    on: dt.date
    goal: str | None
    goal_label: str
    reached: bool
    reachable: bool
    date: dt.date | None
    target: dt.date | None
    target_rule: str | None
    on_time: bool | None
    slack_days: int | None
    critical_path: tuple[str, ...]
    holding_up: tuple[Party, ...]
    steps: tuple[StepForecast, ...]
    notes: tuple[str, ...]

    def step(self, trigger: str) -> StepForecast:
        """The route's step ``trigger``."""
        for s in self.steps:
            if s.step == trigger:
                return s
        raise LookupError(f"{trigger!r} is not on the route to {self.goal!r}; the route: "
                          f"{', '.join(s.step for s in self.steps) or '(empty)'}.")

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "on": self.on.isoformat(), "goal": self.goal,
                "goal_label": self.goal_label, "reached": self.reached,
                "reachable": self.reachable, "date": _iso(self.date),
                "target": _iso(self.target), "target_rule": self.target_rule,
                "on_time": self.on_time, "slack_days": self.slack_days,
                "critical_path": list(self.critical_path),
                "holding_up": [p.to_dict() for p in self.holding_up],
                "steps": [s.to_dict() for s in self.steps], "notes": list(self.notes)}

    def describe(self) -> str:
        """The forecast in a few plain-text lines."""
        if self.goal is None:
            return "No forecast: the workflow names no goal ([workflow].goal)."
        goal = f"{self.goal_label} [{self.goal}]"
        target = (f" (target {self.target.isoformat()}, {self.target_rule})"
                  if self.target else "")
        if self.reached:
            lines = [f"Reached {goal} on {_iso(self.date)}{target}."]
        elif not self.reachable:
            lines = [f"{goal} can no longer be reached{target}."]
        else:
            verdict = ("" if self.on_time is None else
                       " - on time" if self.on_time else " - LATE")
            slack = "" if self.slack_days is None else f", slack {_days(self.slack_days)}"
            lines = [f"Expected to reach {goal} on {_iso(self.date)}{target}{verdict}{slack}."]
            if self.critical_path:
                lines.append("  Critical path: " + " -> ".join(self.critical_path))
            if self.holding_up:
                groups: dict[tuple[str, dt.date, bool], list[str]] = {}
                for p in self.holding_up:
                    groups.setdefault((p.step, p.date, p.late), []).append(p.actor)
                lines.append("  Waiting for: " + "; ".join(
                    f"{', '.join(actors)} on {step} (expected {d.isoformat()}"
                    f"{', date passed' if late else ''})"
                    for (step, d, late), actors in groups.items()))
            for s in self.steps:
                why = {"expected": f"expected {s.expected.given}" if s.expected else "expected",
                       "duration": f"typically {s.duration_days} days",
                       "none": "no estimate"}[s.basis]
                mark = "*" if s.critical else " "
                slack = "" if s.slack_days is None else f", slack {s.slack_days}"
                late = ", expected date passed" if s.late else ""
                lines.append(f"  {mark} {s.date.isoformat()}  {s.step:<16} ({why}; set by "
                             f"{s.set_by}{slack}{late})")
        lines.extend(f"  Note: {n}" for n in self.notes)
        return "\n".join(lines)


@attrs.frozen
class Deadline:
    """A step's deadline and how it stands.

    ``status``: ``"met"`` (taken on or before the due date), ``"missed"`` (taken after
    it, or not taken and the due date has passed), ``"at risk"`` (not taken, not yet
    due, but forecast to be taken after the due date), ``"open"`` (otherwise, also when
    the due date is unknown). ``days_left``: days from ``on`` to the due date for a
    step not taken (negative: overdue), from the day it was taken for one taken
    (negative: that late); None when the due date is unknown.
    """

    step: str
    label: str
    rule: str
    due: dt.date | None
    status: str
    days_left: int | None
    taken_on: dt.date | None
    forecast: dt.date | None
    projected: bool  # the due date counts from a step not taken yet (its forecast date)
    actors: tuple[str, ...]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "label": self.label, "rule": self.rule,
                "due": _iso(self.due), "status": self.status, "days_left": self.days_left,
                "taken_on": _iso(self.taken_on), "forecast": _iso(self.forecast),
                "projected": self.projected, "actors": list(self.actors), "note": self.note}


@attrs.frozen
class DueItem:
    """Something overdue or due soon in one case: a deadline, or an expected step."""

    case_id: str
    kind: str  # "deadline" or "expected"
    step: str
    label: str
    due: dt.date
    status: str  # a deadline's status; "missed" or "open" for an expected step
    days_left: int
    actors: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "kind": self.kind, "step": self.step,
                "label": self.label, "due": self.due.isoformat(), "status": self.status,
                "days_left": self.days_left, "actors": list(self.actors)}


# --------------------------------------------------------------------------- the facts


def _expect_payload(e: Event) -> Mapping[str, Any] | None:
    body = e.data.get("expect") if isinstance(e.data, Mapping) else None
    return body if isinstance(body, Mapping) else None


def _taken(history: Sequence[Event]) -> dict[str, tuple[int, dt.date]]:
    """Each step's last firing that moved the case: trigger -> (seq, date)."""
    out: dict[str, tuple[int, dt.date]] = {}
    for e in history:
        if e.kind == "fire" and e.source != e.target:
            out[e.trigger] = (e.seq, e.on)
    return out


def expectations(history: Sequence[Event]) -> list[Expectation]:
    """The expectations that still count: the latest said about each step (and voter),
    unless the step was taken after it was said. Sorted by date."""
    taken = _taken(history)
    latest: dict[tuple[str, str | None], Expectation] = {}
    for e in history:
        if e.kind != "expect":
            continue
        body = _expect_payload(e)
        if body is None:
            continue
        try:
            date = dt.date.fromisoformat(str(body["on"]))
            step = str(body["step"])
        except (KeyError, ValueError):
            continue
        if date_range_problem(date):
            continue  # not written by Case.expect, which keeps to the range
        voter = body.get("voter")
        latest[(step, voter if isinstance(voter, str) else None)] = Expectation(
            step=step, date=date, given=str(body.get("given", date.isoformat())),
            said_on=e.on, actor=e.actor, seq=e.seq,
            voter=voter if isinstance(voter, str) else None, note=e.note)
    current = [x for x in latest.values() if x.seq > taken.get(x.step, (0, None))[0]]
    return sorted(current, key=lambda x: (x.date, x.step, x.voter or ""))


def _entered(engine: Engine, history: Sequence[Event]) -> dict[str, tuple[dt.date, int]]:
    """For each active state, the date and seq of the event that entered it."""
    out: dict[str, tuple[dt.date, int]] = {}
    for e in history:
        if e.kind == "create":
            for s in engine.active(e.target):
                out[s] = (e.on, e.seq)
        elif e.kind == "fire" and e.source != e.target:
            before, after = engine.active(e.source), engine.active(e.target)
            for s in before - after:
                out.pop(s, None)
            for s in after - before:
                out[s] = (e.on, e.seq)
    return out


def _lookup(data: Mapping[str, Any], key: str) -> Any:
    if key in data:
        return data[key]
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _resolve(ref: DateRef, data: Mapping[str, Any],
             step_dates: Mapping[str, tuple[dt.date, bool]]) -> tuple[dt.date | None, bool, str]:
    """A date reference's date, whether it is projected (counts from a forecast), and why
    not when it has none."""
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


# --------------------------------------------------------------------------- the route


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
            if t is None or t.ballot != "yes" or not t.awaited:
                continue  # a step nobody is awaited for (awaited = false) is no plan
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


def _analyse(workflow: Workflow, state: CaseState, history: Sequence[Event],
             on: dt.date) -> _Analysis:
    engine = engine_for(workflow)
    wf = workflow
    floor = max(on, state.last_on) if state.last_on else on
    taken = _taken(history)
    step_dates: dict[str, tuple[dt.date, bool]] = {k: (d, False) for k, (_, d) in taken.items()}
    entered = _entered(engine, history)
    goal = wf.goal
    reached_on = None
    route: list[_Planned] | None = None
    if goal is not None and goal in engine.active(state.config):
        reached_on = entered.get(goal, (state.last_on or on, 0))[0]
        route = []
    elif goal is not None and not engine.is_final(state.config):
        transitions = _route(engine, state.config, goal)
        if transitions is not None:
            route = _plan(engine, state, history, transitions, entered, floor, step_dates)
    target, _, target_note = (None, False, "") if wf.target is None else \
        _resolve(wf.target, state.data, step_dates)
    return _Analysis(workflow=wf, on=on, floor=floor, goal_reached_on=reached_on, route=route,
                     taken=taken, step_dates=step_dates, target=target, target_note=target_note)


def _plan(engine: Engine, state: CaseState, history: Sequence[Event],
          transitions: list[TransitionDef], entered: dict[str, tuple[dt.date, int]],
          floor: dt.date, step_dates: dict[str, tuple[dt.date, bool]]) -> list[_Planned]:
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
        out.append(_Planned(t=t, config=config, ready=ready, date=date, basis=basis,
                            set_by=set_by, expected=exp, duration=duration, late=late,
                            preds=preds, actors=actors, voters=voters))
        step_dates[t.trigger] = (date, True)
        nxt = engine.step(config, t.trigger)
        before, after = active, engine.active(nxt)
        for s in before - after:
            came.pop(s, None)
        for s in after - before:
            came[s] = (date, i)
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


# --------------------------------------------------------------------------- answers


def forecast(workflow: Workflow, state: CaseState, history: Sequence[Event], *,
             case_id: str = "", on: object = None) -> Forecast:
    """The case's forecast as of ``on`` (default today); see the module's docstring."""
    return _forecast(_analyse(workflow, state, history, date_or_today(on)), case_id)


def _forecast(a: _Analysis, case_id: str) -> Forecast:
    wf = a.workflow
    notes: list[str] = []
    goal = wf.goal
    target_rule = wf.target.describe() if wf.target else None
    if a.target_note:
        notes.append(f"no target date: {a.target_note}")
    if goal is None:
        return Forecast(case_id=case_id, on=a.on, goal=None, goal_label="", reached=False,
                        reachable=False, date=None, target=None, target_rule=None,
                        on_time=None, slack_days=None, critical_path=(), holding_up=(),
                        steps=(), notes=("the workflow names no goal ([workflow].goal)",))
    label = wf.label_of(goal)
    if a.goal_reached_on is not None:
        slack = None if a.target is None else (a.target - a.goal_reached_on).days
        return Forecast(case_id=case_id, on=a.on, goal=goal, goal_label=label, reached=True,
                        reachable=True, date=a.goal_reached_on, target=a.target,
                        target_rule=target_rule,
                        on_time=None if slack is None else slack >= 0, slack_days=slack,
                        critical_path=(), holding_up=(), steps=(), notes=tuple(notes))
    if a.route is None:
        notes.append(f"no route leads from where the case stands to {goal!r}")
        return Forecast(case_id=case_id, on=a.on, goal=goal, goal_label=label, reached=False,
                        reachable=False, date=None, target=a.target, target_rule=target_rule,
                        on_time=None if a.target is None else False, slack_days=None,
                        critical_path=(), holding_up=(), steps=(), notes=tuple(notes))
    route = a.route
    date = route[-1].date
    _slack(route, a.target or date)
    chain = _critical(route)
    counted = [slack for i in chain
               if route[i].set_by != "earliest" and (slack := route[i].slack) is not None]
    if a.target is None:
        slack_days = None
    elif counted:
        slack_days = min(counted)
    else:
        slack_days = (a.target - date).days
    holding: list[Party] = []
    for i in chain:
        p = route[i]
        if p.preds:
            continue
        for actor in p.actors:
            voter = next((v for v in p.voters if v.voter == actor), None)
            d, late = (voter.date, voter.late) if voter else (p.date, p.late)
            holding.append(Party(actor=actor, name=wf.actors.get(actor, actor), step=p.t.trigger,
                                 date=d, late=late))
    steps = []
    for i, p in enumerate(route):
        voters = tuple(VoterForecast(voter=v.voter, date=v.date, basis=v.basis,
                                     expected=v.expected, late=v.late,
                                     slack_days=None if p.latest is None
                                     else (p.latest - v.date).days)
                       for v in p.voters)
        steps.append(StepForecast(
            step=p.t.trigger, label=p.t.label or p.t.trigger, source=p.t.source,
            target=p.t.target, actors=p.actors, ready=p.ready, date=p.date, basis=p.basis,
            set_by=p.set_by, expected=p.expected, duration_days=p.t.duration_days, late=p.late,
            waits_for=tuple(route[j].t.trigger for j in p.preds), slack_days=p.slack,
            critical=i in chain, voters=voters))
        if p.late and p.expected is not None:
            notes.append(f"{p.t.trigger!r} was expected by {p.expected.date.isoformat()} "
                         f"(said on {p.expected.said_on.isoformat()}) and is not recorded yet")
        for v in p.voters:
            if v.late and v.expected is not None and v.expected is not p.expected:
                notes.append(f"{v.voter!r}'s ballot on {p.t.trigger!r} was expected by "
                             f"{v.expected.date.isoformat()} and is not recorded yet")
        if p.basis == "none" and p.set_by != "earliest":
            notes.append(f"{p.t.trigger!r} has no expected date and no typical duration: "
                         f"assumed as soon as it can be taken")
    return Forecast(case_id=case_id, on=a.on, goal=goal, goal_label=label, reached=False,
                    reachable=True, date=date, target=a.target, target_rule=target_rule,
                    on_time=None if a.target is None else date <= a.target,
                    slack_days=slack_days, critical_path=tuple(route[i].t.trigger for i in chain),
                    holding_up=tuple(holding), steps=tuple(steps),
                    notes=tuple(dict.fromkeys(notes)))


def deadlines(workflow: Workflow, state: CaseState, history: Sequence[Event], *,
              on: object = None) -> list[Deadline]:
    """Each step's deadline and its status as of ``on`` (default today), by due date."""
    return _deadlines(_analyse(workflow, state, history, date_or_today(on)), state)


def _deadlines(a: _Analysis, state: CaseState) -> list[Deadline]:
    wf = a.workflow
    final = engine_for(wf).is_final(state.config)
    planned = {p.t.trigger: p for p in a.route or []}
    out: list[Deadline] = []
    seen: set[str] = set()
    for t in wf.transitions:
        if t.deadline is None or t.trigger in seen:
            continue
        seen.add(t.trigger)
        p = planned.get(t.trigger)
        taken = None if p is not None else a.taken.get(t.trigger)
        if taken is None and final:
            continue  # the case has ended without the step: nothing can meet it now
        due, projected, note = _resolve(t.deadline, state.data, a.step_dates)
        taken_on = taken[1] if taken else None
        expected = p.date if p is not None else None
        days_left = None
        if due is None:
            status = "open"
        elif taken_on is not None:
            status = "met" if taken_on <= due else "missed"
            days_left = (due - taken_on).days
        else:
            days_left = (due - a.on).days
            if days_left < 0:
                status = "missed"
            elif expected is not None and expected > due:
                status = "at risk"
            else:
                status = "open"
        actors = p.actors if p is not None else t.actors
        out.append(Deadline(step=t.trigger, label=t.label or t.trigger,
                            rule=t.deadline.describe(), due=due, status=status,
                            days_left=days_left, taken_on=taken_on, forecast=expected,
                            projected=projected, actors=tuple(actors), note=note))
    return sorted(out, key=lambda d: (d.due is None, d.due or dt.date.min, d.step))


def due_items(case_id: str, workflow: Workflow, state: CaseState, history: Sequence[Event], *,
              on: dt.date, within_days: int) -> list[DueItem]:
    """What in one case is overdue, or due within ``within_days`` of ``on``."""
    a = _analyse(workflow, state, history, on)
    horizon = add_days(on, within_days)
    out: list[DueItem] = []
    for d in _deadlines(a, state):
        if d.due is None or d.taken_on is not None or d.due > horizon:
            continue
        out.append(DueItem(case_id=case_id, kind="deadline", step=d.step, label=d.label,
                           due=d.due, status=d.status, days_left=(d.due - on).days,
                           actors=d.actors))
    for p in a.route or []:
        exp_dates = [(p.expected.date if p.expected else None)] + \
            [v.expected.date for v in p.voters if v.expected is not None]
        known = [x for x in exp_dates if x is not None]
        if not known or p.preds:
            continue
        due = max(known)
        if due > horizon:
            continue
        out.append(DueItem(case_id=case_id, kind="expected", step=p.t.trigger,
                           label=p.t.label or p.t.trigger, due=due,
                           status="missed" if due < on else "open",
                           days_left=(due - on).days, actors=p.actors))
    return out


def sort_due(items: Iterable[DueItem]) -> list[DueItem]:
    """Overdue first, then by due date, case and step."""
    return sorted(items, key=lambda i: (i.due, i.case_id, i.kind, i.step))


# --------------------------------------------------------------------------- latest dates
# Working backwards from the target: the latest date each step on the route can be taken
# for the goal to be reached on time. It needs no duration: a date is the latest one
# possible if the steps after it take no time, and any time they take comes off it.


@attrs.frozen
class LatestDate:
    """The latest date ``step`` can be taken for the goal to hold on its target date."""

    step: str
    label: str
    actors: tuple[str, ...]  # for a vote: the voters still needed
    latest: dt.date
    set_by: str  # "target", "deadline: <rule>" or "before '<step>'"
    passed: bool  # the day asked about is after the latest date

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "label": self.label, "actors": list(self.actors),
                "latest": self.latest.isoformat(), "set_by": self.set_by,
                "passed": self.passed}


@attrs.frozen
class LatestDates:
    """The backward answer: by when must each awaited party act for the target to hold?"""

    case_id: str
    on: dt.date
    goal: str | None
    target: dt.date | None
    target_rule: str | None
    steps: tuple[LatestDate, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "on": self.on.isoformat(), "goal": self.goal,
                "target": _iso(self.target), "target_rule": self.target_rule,
                "steps": [s.to_dict() for s in self.steps], "notes": list(self.notes)}

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """One line per awaited step, the step nearest the goal first."""
        if self.target is None or not self.steps:
            return "\n".join(self.notes) or "Nothing is awaited."
        lines = [f"For {self.goal!r} on {self.target.isoformat()} ({self.target_rule}), "
                 f"working backwards from that date:"]
        for s in self.steps:
            who = ", ".join((names or {}).get(a, a) for a in s.actors)
            flag = " - PASSED" if s.passed else ""
            lines.append(f"  {s.step} ({who}) must be taken by {s.latest.isoformat()} "
                         f"[{s.set_by}]{flag}")
        lines.extend(f"  Note: {n}" for n in self.notes)
        return "\n".join(lines)


def latest_dates(workflow: Workflow, state: CaseState, history: Sequence[Event], *,
                 case_id: str = "", on: object = None) -> LatestDates:
    """The latest date each step on the route to the goal can be taken, working backwards
    from the target date and the steps' own deadlines; no duration is assumed."""
    a = _analyse(workflow, state, history, date_or_today(on))
    wf = workflow
    rule = wf.target.describe() if wf.target else None
    notes = ["no duration is assumed: each date is the latest possible if every step after "
             "it takes no time; any time a later step takes comes off it"]
    if a.target is None:
        return LatestDates(case_id, a.on, wf.goal, None, rule, (),
                           (f"no target date: {a.target_note or 'the workflow has none'}",))
    if a.goal_reached_on is not None:
        return LatestDates(case_id, a.on, wf.goal, a.target, rule, (),
                           (f"the goal was reached on {a.goal_reached_on.isoformat()}",))
    if not a.route:
        return LatestDates(case_id, a.on, wf.goal, a.target, rule, (),
                           (f"no route leads from where the case stands to {wf.goal!r}",))
    route = a.route
    latest: list[tuple[dt.date, str] | None] = [None] * len(route)
    latest[-1] = (a.target, "target")
    for i in range(len(route) - 1, -1, -1):
        p = route[i]
        if p.t.deadline is not None:
            due, _, _ = _resolve(p.t.deadline, state.data, a.step_dates)
            if due is not None and (latest[i] is None or due < latest[i][0]):  # type: ignore[index]
                latest[i] = (due, f"deadline: {p.t.deadline.describe()}")
        own = latest[i]
        if own is None:  # no step after it on the route depends on it: the target holds it
            own = latest[i] = (a.target, "target")
        for j in p.preds:
            found = latest[j]
            if found is None or own[0] < found[0]:
                latest[j] = (own[0], f"before {p.t.trigger!r}")
    steps = []
    for p, found in zip(route, latest, strict=True):
        assert found is not None
        steps.append(LatestDate(step=p.t.trigger, label=p.t.label or p.t.trigger,
                                actors=tuple(p.actors), latest=found[0], set_by=found[1],
                                passed=a.on > found[0]))
    return LatestDates(case_id, a.on, wf.goal, a.target, rule, tuple(reversed(steps)),
                       tuple(notes))
