"""The forecast: when a case is expected to reach its goal, whether that makes the target
date, and who is holding it up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from ..canonical import date_or_today
from ..definition import Workflow
from ..engine import CaseState, engine_for
from .due import timers
from .results import Forecast, Party, StepForecast, Timer, VoterForecast
from .route import _analyse, _Analysis, _critical, _resolve, _slack

if TYPE_CHECKING:
    from ..case import Event


def forecast(workflow: Workflow, state: CaseState, history: Sequence[Event], *,
             case_id: str = "", on: object = None) -> Forecast:
    """The case's forecast as of ``on`` (default today); see the module's docstring."""
    when = date_or_today(on)
    analysis = _analyse(workflow, state, history, when)
    result = _forecast(analysis, case_id)
    armed = tuple(timers(workflow, state, on=when))
    notes = list(result.notes) + _timer_notes(analysis, state, armed)
    return attrs.evolve(result, timers=armed, notes=tuple(dict.fromkeys(notes)))


def _timer_notes(a: _Analysis, state: CaseState, armed: tuple[Timer, ...]) -> list[str]:
    """What the clock will do along the route: for each timed step that moves the case
    out of a state the route is in (now, or once a step on it enters the state), a note
    when its date comes on or before the day the route leaves that state."""
    engine = engine_for(a.workflow)
    now = {t.step: t.due for t in armed}
    route = a.route or []
    notes = []
    for t in engine.timed:
        if t.reminder or t.timer is None:
            continue
        # the stretch of the route spent in t.source: entered (now or by step i), left by j
        configs = [state.config] + [engine.step(p.config, p.t.trigger) for p in route]
        inside = [k for k, c in enumerate(configs) if t.source in engine.active(c)]
        if not inside:
            continue
        first, last = inside[0], _run(inside)[-1]
        leaving = route[last] if last < len(route) else None  # the step that leaves it
        if first == 0 and t.trigger in now:
            due: dt.date | None = now[t.trigger]
        elif first == 0:
            continue  # in the state now, but not armed (spent, or waiting for its join)
        else:
            due, _, _ = _resolve(t.timer, state.data, a.step_dates, a.state_dates,
                                 engine.deadline_of)
        if due is None or leaving is None or leaving.date < due:
            continue
        when = "the day" if leaving.date == due else "before"
        notes.append(f"the clock takes {t.trigger!r} on {due.isoformat()} ({t.source} -> "
                     f"{t.target}), {when} {leaving.t.trigger!r} is forecast "
                     f"({leaving.date.isoformat()}): unless {leaving.t.trigger!r} is recorded "
                     f"first, the case goes to {t.target!r}")
    return notes


def _run(indexes: list[int]) -> list[int]:
    """The first run of consecutive numbers in ``indexes``."""
    out = indexes[:1]
    for k in indexes[1:]:
        if k != out[-1] + 1:
            break
        out.append(k)
    return out


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
