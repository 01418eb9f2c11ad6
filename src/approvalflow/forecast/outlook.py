"""The forecast: when a case is expected to reach its goal, whether that makes the target
date, and who is holding it up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from ..canonical import date_or_today
from ..definition import Workflow
from ..engine import CaseState, engine_for
from .due import timers
from .results import Forecast, Party, StepForecast, VoterForecast
from .route import _analyse, _Analysis, _critical, _slack

if TYPE_CHECKING:
    from ..case import Event


def forecast(workflow: Workflow, state: CaseState, history: Sequence[Event], *,
             case_id: str = "", on: object = None) -> Forecast:
    """The case's forecast as of ``on`` (default today); see the module's docstring."""
    when = date_or_today(on)
    analysis = _analyse(workflow, state, history, when)
    result = _forecast(analysis, case_id)
    armed = tuple(timers(workflow, state, on=when))
    engine = engine_for(workflow)
    notes = list(result.notes)
    for timer in armed:
        if timer.target is None:
            continue
        # the route's step that takes the case out of the timer's state
        leaving = next((p for p in analysis.route or []
                        if timer.source in engine.active(p.config)
                        and timer.source not in engine.active(engine.step(p.config,
                                                                          p.t.trigger))), None)
        if leaving is not None and leaving.date > timer.due:
            notes.append(f"the clock takes {timer.step!r} on {timer.due.isoformat()} "
                         f"({timer.source} -> {timer.target}) before {leaving.t.trigger!r}, "
                         f"forecast for {leaving.date.isoformat()}: unless that comes first, "
                         f"the case goes to {timer.target!r}")
    return attrs.evolve(result, timers=armed, notes=tuple(dict.fromkeys(notes)))


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
