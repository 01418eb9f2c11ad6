"""Replay: a case's state rebuilt from its events, in order; no SQL here.

The log is the truth: :func:`replay` applies each recorded event's target as it is.
With ``check``, it also re-decides every step with the engine, exactly as ``fire``
decided it (the step enabled from that state, the actor, the date order, the join,
each vote's rules, four eyes (``not_by``), every guard on the data as of that step, and
where the statechart moves) and reports each disagreement, naming the rule, and every
invariant of the workflow file the recorded steps break: this is how ``Store.verify``
proves a log is one the workflow could have written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from .canonical import check_data, check_text, date_range_problem, shortened
from .case import MAX_NOTE_LENGTH, Event, check_person
from .definition import Workflow
from .engine import CaseState, Engine, engine_for
from .errors import ApprovalflowError, InvalidInputError, StoreError
from .forecast import parse_expected
from .invariants import check_invariants
from .versioning import BALLOTS, migrated_state, plan_case

__all__ = ["Recorded", "replay"]


class Recorded(NamedTuple):
    """What replay reads of an event; an :class:`Event` has the same attributes."""

    case_id: str
    seq: int
    kind: str
    trigger: str
    actor: str
    on: dt.date
    source: frozenset[str]
    target: frozenset[str]
    data: Mapping[str, Any]
    workflow: str = ""
    workflow_version: int = 0
    by: str | None = None
    note: str | None = None


#: Where replay finds the workflow version a ``migrate`` event moved the case to.
Workflows = Callable[[str, int], Workflow]


def replay(engine: Engine, events: Sequence[Event] | Sequence[Recorded], *,
           check: list[str] | None = None, unchecked: list[str] | None = None,
           workflows: Workflows | None = None) -> CaseState:
    """Rebuild a case's state from its events. With ``check``, also re-decide each step
    with the engine, on the state and data the case had just before it, and append every
    disagreement to ``check``; guards not registered in this process are then named in
    ``unchecked`` (once per step they could not re-check).

    ``engine`` is the engine of the version the case was created on; a ``migrate``
    event moves the replay on to the version it names, found with ``workflows``.
    """
    first = events[0]
    if first.kind != "create":
        raise StoreError(f"case {first.case_id!r}: its first event is {first.trigger!r}, "
                         f"not its creation")
    state = engine.initial_state(first.data, first.on, first.by)
    created = engine.workflow
    if check is not None:
        _check_creation(engine, state, first, check)
        for e in events:
            _check_input(e, check)
    for e in events[1:]:
        if e.kind == "migrate":
            engine, state = _migrate(engine, state, e, check, workflows)
            continue
        if check is not None:
            _check_event(engine, state, e, check, unchecked)
        if e.kind == "fire":
            state = engine.apply(state, trigger=e.trigger, actor=e.actor, on=e.on, seq=e.seq,
                                 target=e.target, data=e.data, by=e.by)
        else:
            state = attrs.evolve(state, version=e.seq, last_on=e.on)
    if check is not None:  # the workflow file's [[invariants]], judged on the recorded steps
        check.extend(check_invariants(created, events, workflows=workflows))
    return state


def _migrate(engine: Engine, state: CaseState, e: Event | Recorded, check: list[str] | None,
             workflows: Workflows | None) -> tuple[Engine, CaseState]:
    """Apply a recorded migration (re-deciding it first when checking)."""
    where = f"case {e.case_id!r} event {e.seq}"
    info = e.data.get("migrate")
    if (not isinstance(info, Mapping) or info.get("ballots") not in BALLOTS
            or not isinstance(info.get("mapping"), Mapping)):
        raise StoreError(f"{where}: a migration without its 'migrate' record (mapping, "
                         f"ballots)")
    if workflows is None:
        raise StoreError(f"{where}: a migration, and no way to find workflow "
                         f"{e.workflow!r} version {e.workflow_version}")
    try:
        new = workflows(e.workflow, e.workflow_version)
    except ApprovalflowError as err:
        raise StoreError(f"{where}: migrates to a workflow that can't be loaded: {err}") from err
    if check is not None:
        old = engine.workflow
        plan = plan_case(e.case_id, old, new, state, mapping=info["mapping"],
                         ballots=info["ballots"])
        if e.source != state.config:
            check.append(f"{where}: the migration is recorded as leaving {sorted(e.source)}, "
                         f"but the case was in {sorted(state.config)}")
        elif plan.reasons:
            check.append(f"{where}: 'migrate' by {e.actor!r} on {e.on.isoformat()} breaks the "
                         f"rule 'migration': " + "; ".join(plan.reasons))
        elif plan.target != e.target:
            check.append(f"{where}: the migration is recorded as moving to {sorted(e.target)}, "
                         f"its mapping moves the case to {sorted(plan.target or ())}")
        if (info.get("from_version"), info.get("to_version")) != (old.version, new.version):
            check.append(f"{where}: the migration says version {info.get('from_version')!r} "
                         f"-> {info.get('to_version')!r}, the case went {old.version} -> "
                         f"{new.version}")
        if state.last_on is not None and e.on < state.last_on:
            check.append(f"{where}: dated {e.on.isoformat()}, before the case's last event on "
                         f"{state.last_on.isoformat()}")
        late = engine.overdue_reason(state, e.on, case_id=e.case_id)
        if late:
            check.append(f"{where}: 'migrate' by {e.actor!r} on {e.on.isoformat()} breaks the "
                         f"rule 'timer overdue': {late}")
    moved = engine_for(new)
    # what the new version's timers count from (engine.rebase): kept states keep their dates
    state = moved.rebase(migrated_state(state, e.target, ballots=info["ballots"], seq=e.seq,
                                        on=e.on))
    return moved, state


def _check_creation(engine: Engine, state: CaseState, first: Event | Recorded,
                    check: list[str]) -> None:
    where = f"case {first.case_id!r} event {first.seq}"
    if first.target != state.config:
        check.append(f"{where}: created in {sorted(first.target)}, the workflow starts in "
                     f"{sorted(state.config)}")
    if first.source:
        check.append(f"{where}: a creation leaves no state, this one says {sorted(first.source)}")
    for reason in engine.creation_reasons(first.data):
        check.append(f"{where}: the creation breaks the rule 'data': {reason}")
    if first.actor not in engine.workflow.actors:
        check.append(f"{where}: created by {first.actor!r}, who is not an actor of workflow "
                     f"{engine.workflow.name!r}")
    bad = _person_problem(first.by)
    if bad:
        check.append(f"{where}: the creation breaks the rule 'by': {bad}")


def _check_input(e: Event | Recorded, check: list[str]) -> None:
    """What any event's own fields must be for the library to have written them: a date
    in the accepted range, a note as ``fire`` takes it, data ``check_data`` accepts, and
    the creation (only it) named 'create'."""
    problems = []
    bad = date_range_problem(e.on)
    if bad:
        problems.append(bad)
    if (e.seq == 1) != (e.trigger == "create"):
        problems.append(f"the trigger {e.trigger!r}: the creation, and only it, is 'create'")
    try:
        if e.note is not None:
            check_text(e.note, "note", max_length=MAX_NOTE_LENGTH)
        if e.data:
            check_data(e.data)
    except InvalidInputError as err:
        problems.append(str(err).rstrip("."))
    for problem in problems:
        check.append(f"case {e.case_id!r} event {e.seq}: breaks the rule 'input': {problem}")


def _person_problem(by: str | None) -> str | None:
    """Why ``by`` is not a person ``fire`` or ``create_case`` would record (None if it is,
    or if no person was recorded)."""
    if by is None:
        return None
    try:
        check_person(by)
    except InvalidInputError as e:
        return str(e).rstrip(".")
    return None


#: What the body of an expectation holds (``Case.expect`` writes nothing else).
_EXPECT_KEYS = frozenset({"step", "on", "given", "voter"})


def _expectation_problems(wf: Workflow, e: Event | Recorded) -> list[tuple[str, str]]:
    """(rule, reason) for each way an expectation is not one ``Case.expect`` records: by
    an actor of the workflow, about one of its steps (and a voter of it), dated as given,
    with nothing else in its data and no person."""
    problems: list[tuple[str, str]] = []
    if e.actor not in wf.actors:
        problems.append(("actor", f"{e.actor!r} is not an actor of workflow {wf.name!r}"))
    if e.by is not None:
        problems.append(("by", f"an expectation records no person, this one says {e.by!r}"))
    body = e.data.get("expect")
    if set(e.data) != {"expect"} or not isinstance(body, Mapping) \
            or not {"step", "on", "given"} <= set(body) or not set(body) <= _EXPECT_KEYS:
        problems.append(("expectation", f"its data is not {{'expect': {{'step', 'on', 'given'"
                                        f"[, 'voter']}}}}: {_short(dict(e.data))}"))
        return problems
    step, on, given, voter = body["step"], body["on"], body["given"], body.get("voter")
    if not isinstance(step, str) or step not in wf.triggers:
        problems.append(("step", f"{step!r} is not a step of workflow {wf.name!r}"))
    try:
        day, text = parse_expected(given)
    except (InvalidInputError, TypeError, ValueError):
        day, text = None, None
    if text != given or day is None or day.isoformat() != on:
        problems.append(("expectation", f"expected on {on!r}, given as {given!r}: not a date "
                                        f"'YYYY-MM-DD' or a month 'YYYY-MM' and its last day"))
    if "voter" in body and isinstance(step, str) and step in wf.triggers:
        groups = [wf.votes[t.vote] for t in wf.transitions_for(step) if t.vote]
        if not any(voter in g.voters for g in groups):
            problems.append(("voter", f"{voter!r} is not a voter of {step!r}"))
    return problems


def _short(value: Any) -> str:
    return shortened(repr(value))


def _check_event(engine: Engine, state: CaseState, e: Event | Recorded, check: list[str],
                 unchecked: list[str] | None) -> None:
    # messages are built only when there is a problem: verify runs this for every event
    if e.kind == "expect":
        if e.source != state.config or e.target != state.config:
            check.append(f"case {e.case_id!r} event {e.seq}: an expectation changes no state, "
                         f"this one is recorded as {sorted(e.source)} -> {sorted(e.target)} "
                         f"while the case was in {sorted(state.config)}")
        elif engine.is_final(state.config):
            check.append(f"case {e.case_id!r} event {e.seq}: an expectation recorded after the "
                         f"case ended in {sorted(state.config)}")
        elif engine.timed and (late := engine.overdue(state, e.on, case_id=e.case_id)):
            check.append(f"case {e.case_id!r} event {e.seq}: an expectation dated "
                         f"{e.on.isoformat()} breaks the rule 'timer overdue': the clock's "
                         f"step {late[0][1].trigger!r} fell due on {late[0][0].isoformat()} "
                         f"and was not recorded before it")
        for rule, reason in _expectation_problems(engine.workflow, e):
            check.append(f"case {e.case_id!r} event {e.seq}: an expectation by {e.actor!r} on "
                         f"{e.on.isoformat()} breaks the rule '{rule}': {reason}")
        return
    if e.kind != "fire":
        check.append(f"case {e.case_id!r} event {e.seq}: of kind {e.kind!r}; after the "
                     f"creation every event is a step ('fire') or an expectation ('expect')")
        return
    if e.source != state.config:
        check.append(f"case {e.case_id!r} event {e.seq}: recorded as leaving "
                     f"{sorted(e.source)}, but the case was in {sorted(state.config)}")
        return
    decision = engine.evaluate(state, e.trigger, actor=e.actor, on=e.on, data=e.data,
                               case_id=e.case_id, unchecked=unchecked, by=e.by)
    step = f"case {e.case_id!r} event {e.seq}: {e.trigger!r} by {e.actor!r} on {e.on.isoformat()}"
    for rule, reason in zip(decision.rules, decision.reasons, strict=True):
        check.append(f"{step} breaks the rule '{rule}': {reason}")
    if e.by is not None:  # the four-eyes rules above compare it: it must be a person
        bad = _person_problem(e.by)
        if bad:
            check.append(f"{step} breaks the rule 'by': {bad}")
    if decision.reasons:
        return
    if e.target != decision.target:
        t = decision.transition
        rule = "vote threshold" if t is not None and t.vote else "statechart"
        check.append(f"{step} breaks the rule '{rule}': recorded as moving to "
                     f"{sorted(e.target)}, the workflow moves it to {sorted(decision.target)}")
