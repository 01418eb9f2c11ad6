"""Replay: a case's state rebuilt from its events, in order; no SQL here.

The log is the truth: :func:`replay` applies each recorded event's target as it is.
With ``check``, it also re-derives every step from the workflow definition (was the
step enabled, was the actor allowed, does the statechart move where the event says)
and reports each disagreement, and every invariant of the workflow file the recorded
steps break: this is how ``Store.verify`` proves a log is one the workflow could have
written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from .case import Event
from .engine import CaseState, Engine
from .errors import StoreError
from .invariants import check_invariants

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
           check: list[str] | None = None) -> CaseState:
    """Rebuild a case's state from its events. With ``check``, also re-derive each step
    from the definition and append every disagreement to ``check``."""
    first = events[0]
    if first.kind != "create":
        raise StoreError(f"case {first.case_id!r}: its first event is {first.trigger!r}, "
                         f"not its creation")
    state = engine.initial_state(first.data, first.on)
    if check is not None and first.target != state.config:
        check.append(f"case {first.case_id!r} event 1: created in {sorted(first.target)}, "
                     f"the workflow starts in {sorted(state.config)}")
    for e in events[1:]:
        if check is not None and e.kind == "fire":
            _check_step(engine, state, e, check)
        if e.kind == "fire":
            state = engine.apply(state, trigger=e.trigger, actor=e.actor, on=e.on, seq=e.seq,
                                 target=e.target, data=e.data)
        else:
            state = attrs.evolve(state, version=e.seq, last_on=e.on)
    if check is not None:  # the workflow file's [[invariants]], judged on the recorded steps
        check.extend(check_invariants(engine.workflow, events))
    return state


def _check_step(engine: Engine, state: CaseState, e: Event | Recorded,
                check: list[str]) -> None:
    # each message starts f"case {e.case_id!r} event {e.seq}: ", built only when needed
    if e.source != state.config:
        check.append(f"case {e.case_id!r} event {e.seq}: recorded as leaving "
                     f"{sorted(e.source)}, but the case was in {sorted(state.config)}")
        return
    t = engine.enabled_transition(state.config, e.trigger)
    if t is None:
        check.append(f"case {e.case_id!r} event {e.seq}: {e.trigger!r} is not a step the "
                     f"workflow allows from {sorted(state.config)}")
        return
    if e.actor not in t.actors:
        check.append(f"case {e.case_id!r} event {e.seq}: {e.actor!r} may not take {e.trigger!r}")
    moves = True
    if t.vote:
        moves = engine._ballot_moves(engine.workflow.votes[t.vote], t, state, e.actor)
    expected = engine.step(state.config, e.trigger) if moves else state.config
    if e.target != expected:
        check.append(f"case {e.case_id!r} event {e.seq}: recorded as moving to "
                     f"{sorted(e.target)}, the workflow moves {e.trigger!r} to "
                     f"{sorted(expected)}")
