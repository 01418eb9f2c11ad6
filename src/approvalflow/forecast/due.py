"""Deadlines and the due list: each deadline's status, and what is overdue or due soon."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..canonical import add_days, date_or_today
from ..definition import Workflow
from ..engine import CaseState, engine_for
from .results import Deadline, DueItem, Timer
from .route import _analyse, _Analysis, _resolve

if TYPE_CHECKING:
    from ..case import Event


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
        status, days_left = _status(due, taken_on, expected, a.on)
        actors = p.actors if p is not None else t.actors
        out.append(Deadline(step=t.trigger, label=t.label or t.trigger,
                            rule=t.deadline.describe(), due=due, status=status,
                            days_left=days_left, taken_on=taken_on, forecast=expected,
                            projected=projected, actors=tuple(actors), note=note))
    out.extend(_state_deadlines(a, state))
    return sorted(out, key=lambda d: (d.due is None, d.due or dt.date.min, d.step))


def _status(due: dt.date | None, done_on: dt.date | None, expected: dt.date | None,
            on: dt.date) -> tuple[str, int | None]:
    """A deadline's status and days left: met or missed once done (a step taken, a state
    left), else missed once passed, at risk when forecast after it, else open."""
    if due is None:
        return "open", None
    if done_on is not None:
        return ("met" if done_on <= due else "missed"), (due - done_on).days
    days_left = (due - on).days
    if days_left < 0:
        return "missed", days_left
    if expected is not None and expected > due:
        return "at risk", days_left
    return "open", days_left


def _state_deadlines(a: _Analysis, state: CaseState) -> list[Deadline]:
    """A state's deadline, listed once: met by leaving the state through any exit on or
    before the due date. Listed when the case has entered the state, or its route will."""
    wf = a.workflow
    engine = engine_for(wf)
    final = engine.is_final(state.config)
    active = engine.active(state.config)
    out = []
    for sid, d in wf.state_defs.items():
        if d.deadline is None or sid not in a.state_dates:
            continue
        entered_on, projected_entry = a.state_dates[sid]
        left = a.left_dates.get(sid)
        if final and sid in active:
            continue
        due, projected, note = _resolve(d.deadline, state.data, a.step_dates, a.state_dates,
                                        engine.deadline_of)
        projected = projected or projected_entry
        left_on = left[0] if left is not None and not left[1] else None
        expected = left[0] if left is not None and left[1] else None
        status, days_left = _status(due, left_on, expected, a.on)
        exits = [t for t in wf.transitions if t.source == sid and not t.reminder]
        actors = tuple(dict.fromkeys(x for t in exits for x in t.actors))
        out.append(Deadline(step=sid, label=d.label or sid, rule=d.deadline.describe(),
                            due=due, status=status, days_left=days_left, taken_on=left_on,
                            forecast=expected, projected=projected, actors=actors, note=note,
                            kind="state"))
    return out


def timers(workflow: Workflow, state: CaseState, *, on: object = None) -> list[Timer]:
    """The timed steps armed in a case, the earliest first, as of ``on`` (default today)."""
    when = date_or_today(on)
    engine = engine_for(workflow)
    out = []
    for due, t in engine.timers(state):
        assert t.timer is not None  # engine.timers lists timed steps only
        out.append(Timer(step=t.trigger, label=t.label or t.trigger, source=t.source,
                         target=None if t.reminder else t.target, due=due,
                         rule=t.timer.describe(), status="due" if due <= when else "upcoming",
                         days_left=(due - when).days,
                         escalates=t.timer.step if t.timer.kind == "missed" else None))
    return out


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
    for timer in timers(workflow, state, on=on):
        if timer.due > horizon:
            continue
        out.append(DueItem(case_id=case_id, kind="timer", step=timer.step, label=timer.label,
                           due=timer.due, status=timer.status, days_left=timer.days_left,
                           actors=("clock",)))
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
