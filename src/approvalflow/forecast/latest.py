"""Working backwards from the target: the latest date each step on the route can be taken
for the goal to be reached on time. It needs no duration: a date is the latest one
possible if the steps after it take no time, and any time they take comes off it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..canonical import date_or_today
from ..definition import Workflow
from ..engine import CaseState
from .results import LatestDate, LatestDates
from .route import _analyse, _resolve

if TYPE_CHECKING:
    from ..case import Event


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
