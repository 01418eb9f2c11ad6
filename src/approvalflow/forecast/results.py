"""What the forecast, the deadlines and the due list answer with: plain frozen values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

#: Every status a deadline can have.
DEADLINE_STATUSES = ("met", "open", "at risk", "missed")


def _iso(d: dt.date | None) -> str | None:
    return None if d is None else d.isoformat()


def _days(n: int) -> str:
    return f"{n} day" if abs(n) == 1 else f"{n} days"


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
    #: the timed steps armed now: what the clock will do by itself, and when
    timers: tuple[Timer, ...] = ()

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
                "steps": [s.to_dict() for s in self.steps], "notes": list(self.notes),
                "timers": [t.to_dict() for t in self.timers]}

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
                       "none": "no estimate", "timer": "taken by the clock"}[s.basis]
                mark = "*" if s.critical else " "
                slack = "" if s.slack_days is None else f", slack {s.slack_days}"
                late = ", expected date passed" if s.late else ""
                lines.append(f"  {mark} {s.date.isoformat()}  {s.step:<16} ({why}; set by "
                             f"{s.set_by}{slack}{late})")
        lines.extend(f"  Timer: {t.describe()}" for t in self.timers)
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
    kind: str = "step"  # "step": a step's deadline; "state": leave the state by then

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "label": self.label, "rule": self.rule,
                "due": _iso(self.due), "status": self.status, "days_left": self.days_left,
                "taken_on": _iso(self.taken_on), "forecast": _iso(self.forecast),
                "projected": self.projected, "actors": list(self.actors), "note": self.note,
                "kind": self.kind}


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


@attrs.frozen
class Timer:
    """A timed step armed in a case: the clock takes it on ``due`` unless the case has
    left ``source`` by then (or a guard refuses it that day).

    ``target`` is None for a reminder (recorded, no change of state); ``escalates``
    names the step or state whose missed deadline it acts on. ``status`` is ``"due"``
    when ``due`` is on or before the day asked (the next tick takes it), else
    ``"upcoming"``.
    """

    step: str
    label: str
    source: str
    target: str | None
    due: dt.date
    rule: str
    status: str
    days_left: int
    escalates: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "label": self.label, "source": self.source,
                "target": self.target, "due": self.due.isoformat(), "rule": self.rule,
                "status": self.status, "days_left": self.days_left,
                "escalates": self.escalates}

    def describe(self) -> str:
        """One line: when, what, and where to."""
        where = "a reminder, no change of state" if self.target is None else \
            f"{self.source} -> {self.target}"
        # an escalation's rule already says whose deadline is missed
        return (f"{self.due.isoformat()}  the clock takes {self.step} ({where}; "
                f"{self.rule}){' - due now' if self.status == 'due' else ''}")


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
