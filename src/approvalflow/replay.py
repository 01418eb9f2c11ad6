"""Replay: a case's state rebuilt from its events, in order; no SQL here.

The log is the truth: :func:`replay` applies each recorded event's target as it is.
With ``check``, it also re-decides every step with the engine, exactly as ``fire``
decided it (the step enabled from that state, the actor, the date order, the join,
each vote's rules, every guard on the data as of that step, and where the statechart
moves) and reports each disagreement, naming the rule: this is how ``Store.verify``
proves a log is one the workflow could have written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from .case import Event
from .engine import CaseState, Engine
from .errors import StoreError

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


def replay(engine: Engine, events: Sequence[Event] | Sequence[Recorded], *,
           check: list[str] | None = None, unchecked: list[str] | None = None) -> CaseState:
    """Rebuild a case's state from its events. With ``check``, also re-decide each step
    with the engine, on the state and data the case had just before it, and append every
    disagreement to ``check``; guards not registered in this process are then named in
    ``unchecked`` (once per step they could not re-check)."""
    first = events[0]
    if first.kind != "create":
        raise StoreError(f"case {first.case_id!r}: its first event is {first.trigger!r}, "
                         f"not its creation")
    state = engine.initial_state(first.data, first.on)
    if check is not None:
        _check_creation(engine, state, first, check)
    for e in events[1:]:
        if check is not None:
            _check_event(engine, state, e, check, unchecked)
        if e.kind == "fire":
            state = engine.apply(state, trigger=e.trigger, actor=e.actor, on=e.on, seq=e.seq,
                                 target=e.target, data=e.data)
        else:
            state = attrs.evolve(state, version=e.seq, last_on=e.on)
    return state


def _check_creation(engine: Engine, state: CaseState, first: Event | Recorded,
                    check: list[str]) -> None:
    where = f"case {first.case_id!r} event {first.seq}"
    if first.target != state.config:
        check.append(f"{where}: created in {sorted(first.target)}, the workflow starts in "
                     f"{sorted(state.config)}")
    if first.source:
        check.append(f"{where}: a creation leaves no state, this one says {sorted(first.source)}")
    if first.actor not in engine.workflow.actors:
        check.append(f"{where}: created by {first.actor!r}, who is not an actor of workflow "
                     f"{engine.workflow.name!r}")


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
                               case_id=e.case_id, unchecked=unchecked)
    step = f"case {e.case_id!r} event {e.seq}: {e.trigger!r} by {e.actor!r} on {e.on.isoformat()}"
    for rule, reason in zip(decision.rules, decision.reasons, strict=True):
        check.append(f"{step} breaks the rule '{rule}': {reason}")
    if decision.reasons:
        return
    if e.target != decision.target:
        t = decision.transition
        rule = "vote threshold" if t is not None and t.vote else "statechart"
        check.append(f"{step} breaks the rule '{rule}': recorded as moving to "
                     f"{sorted(e.target)}, the workflow moves it to {sorted(decision.target)}")
