"""Invariants: what a workflow file says must hold whenever a state is entered.

An ``[[invariants]]`` table (:class:`~approvalflow.definition.Invariant`) names a
state and what must be true on entering it: states active right after the step, and
states entered earlier, counted since the case last entered a reset state (``since``),
so a loop back through revision starts the count again.

:class:`Tracker` follows one case step by step and remembers, per invariant, only the
states that invariant asks about. The exploration (:mod:`approvalflow.explore`) carries
that memory in every configuration it visits, and :func:`check_invariants` runs the
same tracker over a real case's events (``Store.verify`` calls it through replay), so
both judge a step by one rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .definition import Invariant, Workflow
from .engine import Engine, engine_for

__all__ = ["Tracker", "Memory", "check_invariants", "tracker_for"]

#: Per invariant (in the file's order): the tracked states entered since its reset state.
Memory = tuple[frozenset[str], ...]
#: The invariants a step breaks, each with why.
Broken = tuple[tuple[Invariant, str], ...]


class _Recorded(Protocol):
    """What the check reads of an event (an Event or replay's Recorded)."""

    @property
    def case_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def trigger(self) -> str: ...
    @property
    def source(self) -> frozenset[str]: ...
    @property
    def target(self) -> frozenset[str]: ...
    @property
    def workflow_version(self) -> int: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


class Tracker:
    """Follows a case's entries into states and judges the workflow's invariants on each."""

    def __init__(self, engine: Engine) -> None:
        wf = engine.workflow
        self.engine = engine
        self.invariants: tuple[Invariant, ...] = wf.invariants
        self.states = frozenset(wf.state_defs)  # every state id of the workflow
        self._lineage = {s: frozenset([s, *wf.ancestors(s)]) for s in wf.state_defs}
        self._tracked = tuple(inv.tracked for inv in self.invariants)
        self._watched = frozenset(inv.when_entering for inv in self.invariants) | frozenset(
            inv.since for inv in self.invariants if inv.since) | frozenset().union(
            *self._tracked)
        self._memo: dict[tuple[frozenset[str] | None, frozenset[str], str], frozenset[str]] = {}
        self._steps: dict[tuple[Memory, frozenset[str], frozenset[str], str],
                          tuple[Memory, Broken]] = {}

    def entered(self, before: frozenset[str] | None, after: frozenset[str],
                trigger: str = "") -> frozenset[str]:
        """The states a step from ``before`` to ``after`` enters (``before`` None: creation).

        A state is entered when it becomes active, and an explicit step also re-enters its
        target (and the target's active children) even when it was active already; a ballot
        that does not decide its vote enters nothing.
        """
        active_after = self.engine.active(after)
        if before is None:
            return active_after
        out = active_after - self.engine.active(before)
        t = self.engine.enabled_transition(before, trigger)
        if t is not None and (not t.vote or after != before) and t.target in active_after:
            out |= {s for s in active_after if t.target in self._lineage[s]}
        return out

    def _watched_entries(self, before: frozenset[str] | None, after: frozenset[str],
                         trigger: str) -> frozenset[str]:
        # the states an invariant looks at, among those entered; a step is a pure function
        # of (before, after, trigger), and the same steps repeat across cases: memoised
        key = (before, after, trigger)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) > 50_000:
                self._memo.clear()
            found = self._memo[key] = self.entered(before, after, trigger) & self._watched
        return found

    def start(self, config: frozenset[str]) -> tuple[Memory, Broken]:
        """The memory and the broken invariants of a case created in ``config``."""
        empty: Memory = tuple(frozenset() for _ in self.invariants)
        return self.advance(empty, self._watched_entries(None, config, ""), config)

    def step(self, memory: Memory, before: frozenset[str], after: frozenset[str],
             trigger: str) -> tuple[Memory, Broken]:
        """The memory after a step, and every invariant the step breaks (with why)."""
        if not self.invariants:
            return memory, ()
        key = (memory, before, after, trigger)
        found = self._steps.get(key)
        if found is None:  # the same steps from the same memory repeat across cases
            if len(self._steps) > 50_000:
                self._steps.clear()
            found = self._steps[key] = self.advance(
                memory, self._watched_entries(before, after, trigger), after)
        return found

    def advance(self, memory: Memory, entered: frozenset[str],
                after: frozenset[str]) -> tuple[Memory, Broken]:
        """The memory after entering ``entered`` (ending in ``after``), and what broke."""
        if not self.invariants or not (entered & self._watched):
            return memory, ()
        new: list[frozenset[str]] = []
        broken: list[tuple[Invariant, str]] = []
        active = self.engine.active(after)
        for inv, tracked, seen in zip(self.invariants, self._tracked, memory, strict=True):
            now = entered & tracked
            seen = now if inv.since is not None and inv.since in entered else seen | now
            new.append(seen)
            if inv.when_entering in entered:
                missing = self._missing(inv, seen, active)
                if missing:
                    label = f" ({inv.label})" if inv.label else ""
                    broken.append((inv, f"entering {inv.when_entering!r} breaks invariant "
                                        f"{inv.id!r}{label}: {'; '.join(missing)}"))
        return tuple(new), tuple(broken)

    @staticmethod
    def _missing(inv: Invariant, seen: frozenset[str], active: frozenset[str]) -> list[str]:
        since = f" since {inv.since!r} was last entered" if inv.since else ""
        out = [f"{s!r} was not entered{since}" for s in inv.requires_entered if s not in seen]
        if inv.requires_any_entered and not seen & set(inv.requires_any_entered):
            names = ", ".join(repr(s) for s in inv.requires_any_entered)
            out.append(f"none of {names} was entered{since}")
        out += [f"{s!r} is not active" for s in inv.requires_active if s not in active]
        return out


@functools.lru_cache(maxsize=64)
def tracker_for(engine: Engine) -> Tracker:
    """The tracker of ``engine``'s workflow, built once per engine."""
    return Tracker(engine)


def check_invariants(workflow: Workflow, events: Sequence[_Recorded], *,
                     workflows: Callable[[str, int], Workflow] | None = None) -> list[str]:
    """Every invariant a case's recorded events break, one line each naming the case, the
    event's sequence number and the invariant's id (empty: every invariant held).

    ``workflow`` is the version the case was created on. At a ``migrate`` event the check
    moves on to the version it names (found with ``workflows``; without it, the check
    stops there), and the new version's invariants count what the case entered before,
    under the migration's mapping of state ids. A step naming a state the workflow does
    not have is skipped here (the replay's own check reports it).
    """
    if not events:
        return []
    tracker = tracker_for(engine_for(workflow))
    states, step = tracker.states, tracker.step
    problems: list[str] = []
    memory: Memory = ()
    for k, e in enumerate(events):
        kind = e.kind
        if kind == "fire":
            if not (memory and e.target <= states and e.source <= states):
                continue
            memory, broken = step(memory, e.source, e.target, e.trigger)
        elif kind == "create":
            if not e.target <= states:
                continue
            memory, broken = tracker.start(e.target)
        elif kind == "migrate":
            if workflows is None or not e.workflow_version:
                break
            tracker = tracker_for(engine_for(workflows(workflow.name, e.workflow_version)))
            states, step = tracker.states, tracker.step
            last = _last_entries(workflow, events[:k + 1], workflows)
            memory = tuple(_remembered(inv, last) for inv in tracker.invariants)
            continue
        else:
            continue
        if broken:
            problems.extend(f"case {e.case_id!r} event {e.seq}: {text}" for _, text in broken)
    return problems


def _remembered(inv: Invariant, last: dict[str, int]) -> frozenset[str]:
    """The tracked states of ``inv`` entered at or after its reset state's last entry."""
    floor = last.get(inv.since, -1) if inv.since else -1
    return frozenset(s for s in inv.tracked if last.get(s, -2) >= floor)


def _last_entries(workflow: Workflow, events: Sequence[_Recorded],
                  workflows: Callable[[str, int], Workflow]) -> dict[str, int]:
    """Per state: the index of the event that last entered it, across migrations (whose
    mappings rename the states entered before them). Run only at a migration."""
    tracker = tracker_for(engine_for(workflow))
    last: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.kind == "migrate":
            info = e.data.get("migrate")
            mapping = info.get("mapping") if isinstance(info, Mapping) else None
            renamed: dict[str, int] = {}
            for state, n in last.items():
                new = str(mapping.get(state, state)) if isinstance(mapping, Mapping) else state
                renamed[new] = max(n, renamed.get(new, -1))
            last = renamed
            tracker = tracker_for(engine_for(workflows(workflow.name, e.workflow_version)))
            continue
        if e.kind not in ("create", "fire") or not (e.target <= tracker.states
                                                      and e.source <= tracker.states):
            continue
        for state in tracker.entered(None if e.kind == "create" else e.source, e.target,
                                     e.trigger):
            last[state] = i
    return last
