"""The engine: what a trigger does to a case, decided on ``transitions``' statechart.

One :class:`Engine` is built per workflow (and cached), never per case: it holds a
single ``transitions`` ``HierarchicalMachine`` and a cursor model that is set to a
case's configuration, triggered, and read back. A statechart step is a pure
function of (configuration, trigger), so the machine's answers are memoised and
the cost of a step does not grow with the number of cases.

What ``transitions`` does not do, the engine does before anything moves: it checks
who may fire a step, the effective date, the named guards, the AND-join of parallel
regions (``transitions`` lets a parallel parent's transition fire before every
region is done), and vote groups. ``evaluate`` lists every reason a step would be
refused; ``allowed``, ``why_not`` and ``fire`` all go through it, so they agree.

No SQL here: the store persists what the engine decides.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from transitions.extensions.nesting import HierarchicalMachine, NestedState

from . import guards as _guards
from .definition import TransitionDef, VoteGroup, Workflow

__all__ = ["Engine", "CaseState", "Decision", "engine_for", "merge_data"]

_SEP = "\u241f"  # a separator no state id can contain


class _State(NestedState):
    separator = _SEP


class _Machine(HierarchicalMachine):
    state_cls = _State


class _Cursor:
    """The one model the machine moves: set to a case's configuration, triggered, read back."""

    state: Any
    trigger: Any  # added by the machine


def merge_data(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in; nested objects are merged key by key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_data(out[key], value)
        else:
            out[key] = value
    return out


@attrs.frozen
class CaseState:
    """Everything the engine knows about a case, rebuilt by applying its events in order."""

    config: frozenset[str]  # active leaf states
    data: Mapping[str, Any]
    version: int  # seq of the last event applied
    last_on: dt.date | None
    ballots: Mapping[str, Mapping[str, str]]  # vote group -> voter -> "yes"/"no"
    withdrawn: Mapping[str, frozenset[str]]  # vote group -> voters who left for good


@attrs.frozen
class Decision:
    """What firing a trigger would do: refused (``reasons``), or the target configuration."""

    trigger: str
    actor: str
    on: dt.date
    reasons: tuple[str, ...]
    transition: TransitionDef | None = None
    target: frozenset[str] = frozenset()
    moves: bool = False  # False: a ballot recorded without a change of state

    @property
    def ok(self) -> bool:
        return not self.reasons


def _ids(items: Iterable[str]) -> str:
    return ", ".join(repr(i) for i in sorted(items))


class Engine:
    """The runnable form of one workflow. Get it with :func:`engine_for`."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        wf = workflow
        self._path: dict[str, str] = {}
        for sid in wf.state_defs:
            self._path[sid] = _SEP.join([*reversed(wf.ancestors(sid)), sid])
        self._leaf_of_path = {p: s for s, p in self._path.items()}
        self._lineage: dict[str, frozenset[str]] = {
            s: frozenset([s, *wf.ancestors(s)]) for s in wf.state_defs
        }
        self._by_trigger: dict[str, tuple[TransitionDef, ...]] = {}
        for t in wf.transitions:
            self._by_trigger[t.trigger] = (*self._by_trigger.get(t.trigger, ()), t)
        self._cursor = _Cursor()
        self._machine = _Machine(
            model=self._cursor,
            states=[self._spec(s) for s, d in wf.state_defs.items() if d.parent is None],
            transitions=[{"trigger": t.trigger, "source": self._path[t.source],
                          "dest": self._path[t.target]} for t in wf.transitions],
            initial=self._path[wf.initial],
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )
        self._lock = threading.Lock()
        self._memo: dict[tuple[frozenset[str], str], frozenset[str]] = {}
        self._active_memo: dict[frozenset[str], frozenset[str]] = {}
        self._finals = frozenset(s for s, d in wf.state_defs.items()
                                 if d.final and d.parent is None)
        self.initial_config = self._read_cursor()

    # -- building and driving the transitions machine ----------------------------------

    def _spec(self, sid: str) -> Any:
        d = self.workflow.state_defs[sid]
        if d.kind == "atomic":
            # Finality is the engine's own business: transitions' final-state support is
            # experimental in 0.9.x and fails on a top-level final state.
            return sid
        children = [self._spec(c) for c in d.children]
        if d.kind == "parallel":
            return {"name": sid, "parallel": children}
        return {"name": sid, "initial": d.initial, "children": children}

    def _flatten(self, value: Any) -> Iterable[str]:
        if isinstance(value, list | tuple):
            for v in value:
                yield from self._flatten(v)
        else:
            yield self._leaf_of_path[value]

    def _read_cursor(self) -> frozenset[str]:
        return frozenset(self._flatten(self._cursor.state))

    def _nest(self, config: frozenset[str]) -> Any:
        paths = sorted(self._path[s] for s in config)
        return paths[0] if len(paths) == 1 else paths

    def step(self, config: frozenset[str], trigger: str) -> frozenset[str]:
        """The configuration ``transitions`` moves ``config`` to on ``trigger`` (no checks)."""
        key = (config, trigger)
        found = self._memo.get(key)
        if found is not None:
            return found
        with self._lock:
            self._machine.set_state(self._nest(config), model=self._cursor)
            self._cursor.trigger(trigger)
            result = self._read_cursor()
        if len(self._memo) > 50_000:
            self._memo.clear()
        self._memo[key] = result
        return result

    # -- questions about a configuration -----------------------------------------------

    def active(self, config: frozenset[str]) -> frozenset[str]:
        """Every active state: the leaves and all their ancestors."""
        found = self._active_memo.get(config)
        if found is not None:
            return found
        out: set[str] = set()
        for leaf in config:
            out |= self._lineage[leaf]
        result = frozenset(out)
        if len(self._active_memo) > 50_000:
            self._active_memo.clear()
        self._active_memo[config] = result
        return result

    def is_final(self, config: frozenset[str]) -> bool:
        """True when the case has reached a top-level final state: nothing more can happen."""
        return len(config) == 1 and next(iter(config)) in self._finals

    def enabled_transition(self, config: frozenset[str], trigger: str) -> TransitionDef | None:
        active = self.active(config)
        for t in self._by_trigger.get(trigger, ()):
            if t.source in active:
                return t
        return None

    def pending_regions(self, parallel_state: str, config: frozenset[str]) -> list[str]:
        """Regions of ``parallel_state`` whose active leaf is not final (the join waits)."""
        defs = self.workflow.state_defs
        waiting = []
        for region in defs[parallel_state].children:
            leaves = [s for s in config if region in self._lineage[s]]
            if not leaves or not all(defs[s].final for s in leaves):
                waiting.append(region)
        return waiting

    def initial_state(self, data: Mapping[str, Any], on: dt.date) -> CaseState:
        return CaseState(config=self.initial_config, data=dict(data), version=1, last_on=on,
                         ballots={}, withdrawn={})

    # -- deciding ----------------------------------------------------------------------

    def evaluate(self, state: CaseState, trigger: str, *, actor: str, on: dt.date,
                 data: Mapping[str, Any] | None = None, case_id: str = "") -> Decision:
        """Decide what firing ``trigger`` would do; every reason it can't is in ``reasons``."""
        wf = self.workflow
        reasons: list[str] = []
        if self.is_final(state.config):
            reasons.append(f"the case has ended in final state {_ids(state.config)}; nothing "
                           f"more can happen")
            return Decision(trigger, actor, on, tuple(reasons))
        candidates = self._by_trigger.get(trigger)
        if not candidates:
            reasons.append(f"{trigger!r} is not a step of workflow {wf.name!r}; its steps: "
                           f"{_ids(self._by_trigger)}")
            return Decision(trigger, actor, on, tuple(reasons))
        if actor not in wf.actors:
            reasons.append(f"{actor!r} is not an actor of workflow {wf.name!r}; actors: "
                           f"{_ids(wf.actors)}")
        t = self.enabled_transition(state.config, trigger)
        if t is None:
            sources = _ids({c.source for c in candidates})
            reasons.append(f"{trigger!r} can't be taken while the case is in "
                           f"{_ids(state.config)}; it leaves {sources}")
            permitted = {a for c in candidates for a in c.actors}
        else:
            permitted = set(t.actors)
        if actor in wf.actors and actor not in permitted:
            reasons.append(f"{actor!r} may not take {trigger!r}; only {_ids(permitted)} may")
        if state.last_on is not None and on < state.last_on:
            reasons.append(f"the date {on.isoformat()} is before the case's last event on "
                           f"{state.last_on.isoformat()}; dates may not go backwards")
        if t is None:
            return Decision(trigger, actor, on, tuple(reasons))
        if t.join:
            waiting = self.pending_regions(t.source, state.config)
            if waiting:
                labels = ", ".join(f"{r!r} ({wf.label_of(r)})" for r in waiting)
                reasons.append(f"waiting for {labels}: every region of {t.source!r} must be "
                               f"done before {trigger!r}")
        vg = wf.votes.get(t.vote) if t.vote else None
        if vg is not None and actor in vg.voters:
            cast = state.ballots.get(vg.id, {}).get(actor)
            if actor in state.withdrawn.get(vg.id, frozenset()):
                reasons.append(f"{actor!r} has withdrawn from the vote {vg.id!r}")
            elif cast is not None:
                reasons.append(f"{actor!r} has already voted {cast!r} in the vote {vg.id!r}; "
                               f"each voter votes once")
            elif t.ballot == "withdraw":
                # A withdrawal may not leave a vote that can no longer pass (nor an empty
                # one, which would pass with no one having said yes): vote no instead.
                # A "no" already cast counts against it: those voters can't say yes.
                gone = state.withdrawn.get(vg.id, frozenset()) | {actor}
                cast_no = {v for v, b in state.ballots.get(vg.id, {}).items() if b == "no"}
                remaining = sum(1 for v in vg.voters if v not in gone)
                needed = vg.required(remaining)
                can_say_yes = sum(1 for v in vg.voters if v not in gone and v not in cast_no)
                if remaining == 0 or needed > can_say_yes:
                    reasons.append(f"{actor!r} can't withdraw from the vote {vg.id!r}: it would "
                                   f"leave {can_say_yes} voter(s) who can still vote yes where "
                                   f"{max(needed, 1)} yes-vote(s) are needed; vote no instead")
        if t.guards:
            merged = merge_data(state.data, data or {})
            ctx = _guards.GuardContext(case_id=case_id, trigger=trigger, actor=actor, on=on,
                                       data=merged, state=state.config, workflow=wf.name)
            for g in t.guards:
                reasons.extend(_guards.run_guard(g, _guards.lookup_guard(g), ctx))
        if reasons:
            return Decision(trigger, actor, on, tuple(reasons), transition=t)
        moves = True if vg is None else self._ballot_moves(vg, t, state, actor)
        target = self.step(state.config, trigger) if moves else state.config
        return Decision(trigger, actor, on, (), transition=t, target=target, moves=moves)

    def _ballot_moves(self, vg: VoteGroup, t: TransitionDef, state: CaseState,
                      actor: str) -> bool:
        """Does this ballot decide the vote (so the region moves to the ballot's target)?"""
        ballots = dict(state.ballots.get(vg.id, {}))
        withdrawn = set(state.withdrawn.get(vg.id, frozenset()))
        if t.ballot == "withdraw":
            withdrawn.add(actor)
        else:
            ballots[actor] = t.ballot
        electorate = [v for v in vg.voters if v not in withdrawn]
        needed = vg.required(len(electorate))
        yes = sum(1 for v in electorate if ballots.get(v) == "yes")
        undecided = sum(1 for v in electorate if v not in ballots)
        if t.ballot == "no":
            return yes + undecided < needed
        return yes >= needed and needed <= len(electorate)

    # -- applying ----------------------------------------------------------------------

    def apply(self, state: CaseState, *, trigger: str, actor: str, on: dt.date, seq: int,
              target: frozenset[str], data: Mapping[str, Any]) -> CaseState:
        """The state after a recorded event: the log is the truth, so ``target`` is taken as is."""
        t = self.enabled_transition(state.config, trigger)
        # copied only when they change: a state's mappings are never changed in place, so an
        # unchanged one is shared with the state before
        ballots: Mapping[str, Mapping[str, str]] = state.ballots
        withdrawn: Mapping[str, frozenset[str]] = state.withdrawn
        if t is not None and t.vote:
            vg = self.workflow.votes[t.vote]
            if t.ballot == "withdraw":
                left_for_good = dict(withdrawn)
                left_for_good[vg.id] = left_for_good.get(vg.id, frozenset()) | {actor}
                withdrawn = left_for_good
            else:
                cast = {k: dict(v) for k, v in ballots.items()}
                cast.setdefault(vg.id, {})[actor] = t.ballot
                ballots = cast
        if target != state.config:
            for vg in self.workflow.votes.values():
                left = vg.state in state.config and vg.state not in target
                reentered = t is not None and t.source in self._lineage[vg.state] \
                    and vg.state in target and not t.vote
                if (left or reentered) and vg.id in ballots:
                    ballots = {k: dict(v) for k, v in ballots.items() if k != vg.id}
        return CaseState(config=target, data=merge_data(state.data, data) if data else
                         state.data, version=seq, last_on=on, ballots=ballots,
                         withdrawn=withdrawn)

    def allowed(self, state: CaseState, *, actor: str | None, on: dt.date,
                case_id: str = "") -> list[str]:
        """Triggers that ``actor`` (or anyone, when None) may fire now, sorted."""
        out = []
        for trigger in sorted(self._by_trigger):
            t = self.enabled_transition(state.config, trigger)
            if t is None:
                continue
            actors = [actor] if actor is not None else list(t.actors)
            if any(self.evaluate(state, trigger, actor=a, on=on, case_id=case_id).ok
                   for a in actors):
                out.append(trigger)
        return out


_ENGINES: dict[tuple[str, int, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(workflow: Workflow) -> Engine:
    """The engine of ``workflow``, built once per (name, version, content) and reused."""
    key = (workflow.name, workflow.version, workflow.digest)
    engine = _ENGINES.get(key)
    if engine is None:
        with _ENGINES_LOCK:
            engine = _ENGINES.get(key)
            if engine is None:
                engine = Engine(workflow)
                _ENGINES[key] = engine
    return engine
