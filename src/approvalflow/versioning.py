"""Moving a running case to another version of its workflow: planning and re-deciding.

A migration maps each active leaf state of the case to a leaf of the new version
(``mapping``; a state not named keeps its id), and says what happens to the ballots of
open votes: ``"keep"`` them (refused when a voter who cast one is not a voter in the
new version, or when the kept ballots would already decide the vote there), or
``"reset"`` every open vote (its round starts again). The data is kept; the new
version's date references to case data must still find dates in it.

This module decides, it does not write: the store records a ``migrate`` event (in the
hash chain, committing to the new version's text), and replay and ``verify`` re-decide
each recorded migration here, exactly as it was planned. No SQL here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from .definition import DateRef, Workflow
from .engine import CaseState, engine_for

__all__ = ["BALLOTS", "CasePlan", "MigrationPlan", "plan_case", "migrated_state",
           "config_problem"]

#: What a migration does with the ballots of open votes.
BALLOTS = ("keep", "reset")


@attrs.frozen
class CasePlan:
    """Whether one case can move to the new version, to which state, or why not."""

    case_id: str
    workflow: str
    from_version: int
    to_version: int
    source: frozenset[str]
    target: frozenset[str] | None
    reasons: tuple[str, ...] = ()

    @property
    def can_move(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "workflow": self.workflow,
                "from_version": self.from_version, "to_version": self.to_version,
                "source": sorted(self.source),
                "target": None if self.target is None else sorted(self.target),
                "can_move": self.can_move, "reasons": list(self.reasons)}


@attrs.frozen
class MigrationPlan:
    """Every case asked about: the ones that can move and the ones that can't (and why)."""

    workflow: str
    to_version: int
    mapping: Mapping[str, str]
    ballots: str
    cases: tuple[CasePlan, ...]

    @property
    def movable(self) -> list[CasePlan]:
        return [c for c in self.cases if c.can_move]

    @property
    def refused(self) -> list[CasePlan]:
        return [c for c in self.cases if not c.can_move]

    def to_dict(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "to_version": self.to_version,
                "mapping": dict(self.mapping), "ballots": self.ballots,
                "movable": len(self.movable), "refused": len(self.refused),
                "cases": [c.to_dict() for c in self.cases]}


def config_problem(wf: Workflow, config: frozenset[str]) -> str | None:
    """Why ``config`` is not a configuration a case of ``wf`` can be in (None if it is)."""
    unknown = sorted(s for s in config if s not in wf.state_defs or not wf.state_defs[s].is_leaf)
    if unknown:
        return f"{unknown} are not leaf states of version {wf.version}"
    active: set[str] = set()
    for leaf in config:
        active |= {leaf, *wf.ancestors(leaf)}
    tops = [s for s in active if wf.state_defs[s].parent is None]
    if len(tops) != 1:
        return f"{sorted(config)} are in {len(tops)} top-level states at once"
    for sid in active:
        d = wf.state_defs[sid]
        inside = [c for c in d.children if c in active]
        if d.kind == "parallel" and len(inside) != len(d.children):
            missing = sorted(set(d.children) - set(inside))
            return f"no state is active in the region(s) {missing} of {sid!r}"
        if d.kind == "compound" and len(inside) != 1:
            return f"{len(inside)} states are active at once inside {sid!r}"
    return None


def plan_case(case_id: str, old: Workflow, new: Workflow, state: CaseState, *,
              mapping: Mapping[str, str], ballots: str) -> CasePlan:
    """Decide whether a case in ``state`` on ``old`` can move to ``new`` (nothing written)."""
    reasons: list[str] = []
    target: frozenset[str] | None = None
    if new.name != old.name:
        reasons.append(f"the case runs on workflow {old.name!r}, not {new.name!r}")
    elif new.version == old.version:
        reasons.append(f"the case already runs on version {old.version}")
    elif engine_for(old).is_final(state.config):
        reasons.append(f"the case has ended in {sorted(state.config)}")
    else:
        reasons.extend(_mapping_problems(new, state.config, mapping))
        target = frozenset(mapping.get(s, s) for s in state.config)
        problem = None if reasons else config_problem(new, target)
        if problem is not None:
            unmapped = sorted(s for s in state.config if s not in mapping
                              and s not in new.state_defs)
            hint = (f"; map {unmapped} to states of version {new.version}" if unmapped else "")
            reasons.append(f"its state {sorted(state.config)} has no counterpart: {problem}"
                           f"{hint}")
        else:
            reasons.extend(_ballot_problems(old, new, state, target, ballots))
            reasons.extend(_data_problems(new, state.data))
    return CasePlan(case_id=case_id, workflow=old.name, from_version=old.version,
                    to_version=new.version, source=state.config,
                    target=None if reasons else target, reasons=tuple(reasons))


def _mapping_problems(new: Workflow, config: frozenset[str],
                      mapping: Mapping[str, str]) -> list[str]:
    """A migration moves a case to where the new version keeps what it was doing; it
    decides nothing. So the mapping may move only states the new version does not have
    (a state it has stays itself), and never into a final state (which would record an
    approval, a refusal or an ending that no one gave: a case gets there by a step)."""
    moved = {s: mapping[s] for s in sorted(config) if s in mapping and mapping[s] != s}
    problems = []
    kept = [s for s in moved if s in new.state_defs]
    if kept:
        problems.append(f"the mapping moves {kept}, which version {new.version} has too; a "
                        f"state the new version has stays as it is (a mapping moves only "
                        f"states it no longer has; a case changes state by a step)")
    ending = sorted({v for v in moved.values()
                     if v in new.state_defs and new.state_defs[v].final})
    if ending:
        problems.append(f"the mapping puts the case in the final state(s) {ending}; a "
                        f"migration decides nothing, so it may not end a case or a region "
                        f"(a case gets there by a step)")
    return problems


def _ballot_problems(old: Workflow, new: Workflow, state: CaseState, target: frozenset[str],
                     ballots: str) -> list[str]:
    if ballots == "reset":
        return []
    problems = []
    active = engine_for(new).active(target)
    for vote_id in sorted(set(state.ballots) | set(state.withdrawn)):
        cast = state.ballots.get(vote_id, {})
        gone = state.withdrawn.get(vote_id, frozenset())
        if not cast and not gone:
            continue
        group = new.votes.get(vote_id)
        if group is None or group.state not in active:
            problems.append(f"the vote {vote_id!r} has ballots but is not open in version "
                            f"{new.version} at the mapped state; migrate with ballots='reset'")
            continue
        strangers = sorted((set(cast) | set(gone)) - set(group.voters))
        if strangers:
            problems.append(f"the voters of {vote_id!r} changed: {strangers} cast a ballot or "
                            f"withdrew but are not voters in version {new.version}; migrate "
                            f"with ballots='reset'")
            continue
        electorate = [v for v in group.voters if v not in gone]
        yes = sum(1 for v in electorate if cast.get(v) == "yes")
        if electorate and yes >= group.required(len(electorate)):
            problems.append(f"the kept ballots ({yes} yes) would already decide {vote_id!r} in "
                            f"version {new.version}; migrate with ballots='reset'")
    return problems


def _data_problems(new: Workflow, data: Mapping[str, Any]) -> list[str]:
    refs: list[DateRef] = [r for r in (new.target,) if r is not None]
    for t in new.transitions:
        refs.extend(r for r in (t.deadline, t.earliest) if r is not None)
    problems = []
    for key in sorted({r.key for r in refs if r.kind == "data" and r.key}):
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            continue  # a missing date is reported by the forecast as unknown, as for new cases
        if not isinstance(value, str) or not _is_date(value):
            problems.append(f"version {new.version} reads a date from data {key!r}, which "
                            f"holds {value!r}")
    return problems


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def migrated_state(state: CaseState, target: frozenset[str], *, ballots: str, seq: int,
                   on: dt.date) -> CaseState:
    """The case's state right after a migration to ``target``. What happened in the case
    stays a fact of it: who took each step (four eyes), when a party withdrew and when
    each data key was set (what a withdrawal asks to be stated again), and when each
    state was entered and each timed step taken (the new version's ``Engine.rebase``
    keeps those its timers count from)."""
    kept = ballots == "keep"
    return CaseState(config=target, data=state.data, version=seq, last_on=on,
                     ballots=state.ballots if kept else {},
                     withdrawn=state.withdrawn if kept else {},
                     withdrew_at=state.withdrew_at, set_at=state.set_at,
                     persons=state.persons, taken=state.taken, entered=state.entered,
                     joined=state.joined)
