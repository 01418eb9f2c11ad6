"""Exploration: every configuration a workflow can reach, walked breadth-first.

A configuration is what the engine decides a step on, except the case's data and its
dates: the active states, each vote's ballots and withdrawals, and (for the workflow's
invariants) the states entered since each invariant's reset state. The join's status
follows from the active states. The walk asks the engine itself: for every step
enabled in a configuration and every actor allowed to take it, :meth:`Engine.evaluate`
decides and :meth:`Engine.apply` moves, so exploring follows exactly the engine's rules
(who may act, the join, each vote's counting, withdrawals).

Data and dates are abstracted away. A named guard or a date rule may pass or fail
depending on data the walk does not know, so both are taken as possible: the walk
decides with an engine built from the same file without guards and date rules (the
branch where they pass), and a refused step leaves the case where it was (the branch
where they fail), so it adds nothing to walk. Each step guarded this way is listed.

What the walk proves, when it is complete (under its ``limit``): no other
configuration can be reached, whatever the data; a transition never taken (dead) can
never be taken; a configuration with no way to a final state (stuck) is reachable by
the shortest path shown; an invariant not broken holds on every path.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from collections import deque
from collections.abc import Hashable
from typing import Any

import attrs

from .definition import DateRef, TransitionDef, Workflow
from .engine import CaseState, Engine, engine_for
from .errors import InvalidInputError
from .invariants import Memory, Tracker

__all__ = ["explore", "explore_graph", "ExploreReport", "Finding", "Graph", "Step",
           "DEFAULT_LIMIT"]

#: Every step of the walk is dated this day: dates are abstracted away.
DAY = dt.date(2000, 1, 1)
DEFAULT_LIMIT = 200_000

Key = tuple[Hashable, ...]


@attrs.frozen
class Step:
    """One step of a path: the trigger and the actor who takes it."""

    trigger: str
    actor: str


def as_python(path: tuple[Step, ...]) -> str:
    """A path as a Python list of (trigger, actor) tuples, ready to paste into a test."""
    return "[" + ", ".join(f"({s.trigger!r}, {s.actor!r})" for s in path) + "]"


@attrs.frozen
class Finding:
    """A dead transition, a stuck configuration or a broken invariant, and how to get there.

    ``path`` is a shortest sequence of steps from a new case to ``config`` (for a dead
    transition: to the nearest configuration where its source is active; empty when the
    source is never active).
    """

    kind: str  # "dead", "stuck" or "violation"
    subject: str  # the transition, the configuration or the invariant id
    why: str
    path: tuple[Step, ...]
    config: frozenset[str] = frozenset()

    @property
    def python(self) -> str:
        return as_python(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "why": self.why,
                "config": sorted(self.config),
                "path": [[s.trigger, s.actor] for s in self.path]}


@attrs.frozen
class ExploreReport:
    """What a walk over every reachable configuration found. ``ok``: nothing wrong, proven."""

    workflow: str
    version: int
    limit: int
    complete: bool  # False: the limit was hit, and what follows covers what was seen
    configurations: int
    steps: int
    seconds: float
    dead: tuple[Finding, ...]  # steps that can never be taken (only when complete)
    unseen: tuple[str, ...]  # steps not taken before the limit (when incomplete)
    stuck: tuple[Finding, ...]
    finals_reached: tuple[str, ...]
    finals_unreached: tuple[str, ...]
    proven: tuple[str, ...]  # invariant ids proven over every configuration
    violations: tuple[Finding, ...]
    guarded: tuple[str, ...]  # steps a guard or date rule may refuse (both branches walked)

    @property
    def ok(self) -> bool:
        return self.complete and not (self.dead or self.stuck or self.violations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow, "version": self.version, "limit": self.limit,
            "complete": self.complete, "ok": self.ok, "configurations": self.configurations,
            "steps": self.steps, "seconds": round(self.seconds, 3),
            "dead": [f.to_dict() for f in self.dead], "unseen": list(self.unseen),
            "stuck": [f.to_dict() for f in self.stuck],
            "finals_reached": list(self.finals_reached),
            "finals_unreached": list(self.finals_unreached),
            "invariants_proven": list(self.proven),
            "violations": [f.to_dict() for f in self.violations],
            "guarded": list(self.guarded),
        }

    def text(self, *, show: int = 5) -> str:
        """The report as lines for a terminal; at most ``show`` stuck configurations listed."""
        lines = [f"{self.workflow} v{self.version}: {self.configurations} configurations, "
                 f"{self.steps} steps, {self.seconds:.2f} s"]
        if not self.complete:
            lines.append(f"INCOMPLETE: the limit of {self.limit} configurations was hit; "
                         f"what follows covers only what was seen, and proves nothing")
        lines.append(f"final states reached: {', '.join(self.finals_reached) or '(none)'}")
        if self.finals_unreached:
            lines.append(f"final states never reached: {', '.join(self.finals_unreached)}")
        if self.guarded:
            lines.append(f"may be refused by a guard or date rule (both outcomes explored): "
                         f"{', '.join(self.guarded)}")
        if self.complete:
            lines.append(f"dead transitions: {len(self.dead) or 'none'}")
        elif self.unseen:
            lines.append(f"steps not seen before the limit: {', '.join(self.unseen)}")
        for f in self.dead:
            lines += [f"  dead: {f.subject}: {f.why}", f"    path: {f.python}"]
        lines.append(f"stuck configurations (no final state reachable): "
                     f"{len(self.stuck) or 'none'}")
        for f in self.stuck[:show]:
            lines += [f"  stuck: {f.subject}", f"    path: {f.python}"]
        if len(self.stuck) > show:
            lines.append(f"  ... and {len(self.stuck) - show} more (--json lists them all)")
        if self.proven:
            lines.append(f"invariants proven: {', '.join(self.proven)}")
        for f in self.violations:
            lines += [f"  VIOLATED: {f.subject}: {f.why}", f"    path: {f.python}"]
        lines.append("ok" if self.ok else "NOT ok")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


@attrs.define
class Graph:
    """The walk itself: every configuration seen (numbered in the order the walk met them,
    so a lower number is never farther from a new case), its state, and the steps between
    them."""

    engine: Engine  # the engine the walk decided with (guards and date rules dropped)
    index: dict[Key, int]  # a configuration's key -> its number
    states: list[tuple[CaseState, Memory]]  # per number: the engine's state, the memory
    parent: list[tuple[int, Step] | None]  # per number: where the walk first came from
    edges: dict[int, list[tuple[Step, int]]]  # only for expanded configurations
    frontier: set[int]  # configurations with a step to a configuration over the limit
    complete: bool
    steps: int
    taken: set[int]  # indexes of transitions taken at least once
    first_source: dict[int, int]  # per transition: nearest configuration with it enabled
    refusals: dict[int, str]  # per transition: a reason it was refused there
    violations: dict[str, tuple[int, Step, frozenset[str], str]]

    def path(self, node: int) -> tuple[Step, ...]:
        """The shortest sequence of steps from a new case to configuration ``node``."""
        out: list[Step] = []
        link = self.parent[node]
        while link is not None:
            node, step = link
            out.append(step)
            link = self.parent[node]
        return tuple(reversed(out))


def _key(state: CaseState, memory: Memory) -> Key:
    ballots = tuple(sorted((g, tuple(sorted(b.items()))) for g, b in state.ballots.items()
                           if b))
    withdrawn = tuple(sorted((g, tuple(sorted(w))) for g, w in state.withdrawn.items() if w))
    return (state.config, ballots, withdrawn, memory)


def describe(state: CaseState) -> str:
    """A configuration in words: active states, then any ballots and withdrawals."""
    text = "{" + ", ".join(sorted(state.config)) + "}"
    for group, cast in sorted(state.ballots.items()):
        if cast:
            text += f" ballots {group}: " + ", ".join(f"{v}={b}" for v, b in sorted(cast.items()))
    for group, gone in sorted(state.withdrawn.items()):
        if gone:
            text += f" withdrawn from {group}: " + ", ".join(sorted(gone))
    return text


_FREE: dict[tuple[str, int, str], Engine] = {}


def _free_engine(workflow: Workflow) -> Engine:
    """The workflow's engine with every guard, date rule and restatement rule passing
    (built once). Data is abstracted: a step that must state keys again after a
    withdrawal can carry them (its ``sets`` allow them), so that rule may always pass."""
    key = (workflow.name, workflow.version, workflow.digest)
    found = _FREE.get(key)
    if found is None:
        # a timed step's date is a date rule too: its timer falls on the walk's one day
        free = attrs.evolve(workflow, transitions=tuple(
            attrs.evolve(t, guards=(), earliest=None, restate_after_withdrawal=(),
                         timer=None if t.timer is None else DateRef(kind="date", date=DAY))
            for t in workflow.transitions))
        found = _FREE[key] = Engine(free)
    return found


def _may_be_refused(t: TransitionDef) -> bool:
    return (bool(t.guards) or t.earliest is not None or bool(t.restate_after_withdrawal)
            or t.timer is not None)


def explore_graph(workflow: Workflow, *, limit: int = DEFAULT_LIMIT) -> Graph:
    """Walk every configuration of ``workflow`` reachable from a new case (at most ``limit``)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(f"limit must be a whole number of configurations, 1 or more, "
                                f"not {limit!r}.")
    # The walk allocates many small objects that form no cycles; the cyclic collector's
    # passes over them cost about a fifth of the time, so it pauses for the walk.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _walk(workflow, limit)
    finally:
        if collecting:
            gc.enable()


def _walk(workflow: Workflow, limit: int) -> Graph:
    engine_for(workflow)  # the real engine: built (and checked) first
    free = _free_engine(workflow)
    tracker = Tracker(free)
    transition_index = {id(t): i for i, t in enumerate(free.workflow.transitions)}
    by_source: dict[str, set[str]] = {}
    for td in free.workflow.transitions:
        by_source.setdefault(td.source, set()).add(td.trigger)

    enabled: dict[frozenset[str], list[tuple[str, TransitionDef, int]]] = {}
    start = free.initial_state({}, DAY)
    memory, broken = tracker.start(start.config)
    g = Graph(engine=free, index={_key(start, memory): 0}, states=[(start, memory)],
              parent=[None], edges={}, frontier=set(), complete=True, steps=0, taken=set(),
              first_source={}, refusals={}, violations={})
    for inv, text in broken:
        g.violations.setdefault(inv.id, (0, Step("create", ""), start.config, text))
    index, states, parent = g.index, g.states, g.parent
    node = 0
    while node < len(states):  # breadth-first: the numbers are the queue
        state, memory = states[node]
        out = g.edges[node] = []
        if free.is_final(state.config):
            node += 1
            continue
        steps = enabled.get(state.config)
        if steps is None:  # the steps enabled in these active states, in trigger order
            triggers = sorted({tr for s in free.active(state.config)
                               for tr in by_source.get(s, ())})
            steps = enabled[state.config] = [
                (trigger, t, transition_index[id(t)]) for trigger in triggers
                if (t := free.enabled_transition(state.config, trigger)) is not None]
        for trigger, t, i in steps:
            g.first_source.setdefault(i, node)
            for actor in t.actors:
                d = free.evaluate(state, trigger, actor=actor, on=DAY)
                if not d.ok:
                    g.refusals.setdefault(i, d.reasons[0])
                    continue
                g.steps += 1
                g.taken.add(i)
                step = Step(trigger, actor)
                after = free.apply(state, trigger=trigger, actor=actor, on=DAY,
                                   seq=state.version, target=d.target, data={})
                new_memory, broken = tracker.step(memory, state.config, d.target, trigger)
                for inv, text in broken:
                    g.violations.setdefault(inv.id, (node, step, d.target, text))
                new_key = _key(after, new_memory)
                nxt = index.get(new_key)
                if nxt is None:
                    if len(states) >= limit:
                        g.complete = False
                        g.frontier.add(node)
                        continue
                    nxt = index[new_key] = len(states)
                    states.append((after, new_memory))
                    parent.append((node, step))
                out.append((step, nxt))
        node += 1
    return g


def explore(workflow: Workflow, *, limit: int = DEFAULT_LIMIT) -> ExploreReport:
    """Walk every reachable configuration of ``workflow`` and report what was found."""
    began = time.perf_counter()
    g = explore_graph(workflow, limit=limit)
    free = g.engine
    wf = workflow
    # stuck: expanded configurations from which no final one (nor the unwalked frontier)
    # can be reached
    preds: list[list[int]] = [[] for _ in g.states]
    for node, out in g.edges.items():
        for _, nxt in out:
            preds[nxt].append(node)
    finals = [n for n, (s, _) in enumerate(g.states) if free.is_final(s.config)]
    can_end = [False] * len(g.states)
    todo = deque([*finals, *g.frontier])
    for n in todo:
        can_end[n] = True
    while todo:
        for p in preds[todo.popleft()]:
            if not can_end[p]:
                can_end[p] = True
                todo.append(p)
    stuck = tuple(Finding("stuck", describe(g.states[n][0]),
                          "no final state can be reached from this configuration",
                          g.path(n), g.states[n][0].config)
                  for n in range(len(g.states)) if not can_end[n] and n in g.edges)
    dead: list[Finding] = []
    unseen: list[str] = []
    for i, t in enumerate(wf.transitions):
        if i in g.taken:
            continue
        name = f"{t.trigger!r} from {t.source!r} to {t.target!r}"
        if not g.complete:
            unseen.append(name)
            continue
        if i in g.first_source:
            k = g.first_source[i]
            why = (f"it is enabled but always refused; where it is first enabled: "
                   f"{g.refusals.get(i, 'another step with the same trigger goes first')}")
            dead.append(Finding("dead", name, why, g.path(k), g.states[k][0].config))
        else:
            dead.append(Finding("dead", name, f"{t.source!r} is never active where "
                                f"{t.trigger!r} would take this transition", ()))
    violations = []
    for inv in wf.invariants:
        found = g.violations.get(inv.id)
        if found is not None:
            node, step, config, text = found
            path = () if step.trigger == "create" else (*g.path(node), step)
            violations.append(Finding("violation", inv.id, text, path, config))
    violated = {f.subject for f in violations}
    reached = {next(iter(g.states[n][0].config)) for n in finals}
    top_finals = sorted(s for s, d in wf.state_defs.items() if d.final and d.parent is None)
    return ExploreReport(
        workflow=wf.name, version=wf.version, limit=limit, complete=g.complete,
        configurations=len(g.states), steps=g.steps, seconds=time.perf_counter() - began,
        dead=tuple(dead), unseen=tuple(unseen), stuck=stuck,
        finals_reached=tuple(s for s in top_finals if s in reached),
        finals_unreached=tuple(s for s in top_finals if s not in reached),
        proven=tuple(inv.id for inv in wf.invariants
                     if g.complete and inv.id not in violated),
        violations=tuple(violations),
        guarded=tuple(sorted({t.trigger for t in wf.transitions if _may_be_refused(t)})),
    )

