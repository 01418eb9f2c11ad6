"""Exploration: every configuration a workflow can reach, walked breadth-first.

A configuration is what the engine decides a step on, except the case's data and its
dates: the active states, each vote's ballots and withdrawals, and (for the workflow's
invariants) the states entered since each invariant's reset state. The join's status
follows from the active states. The walk asks the engine itself: for every step
enabled in a configuration and every actor allowed to take it, :meth:`Engine.evaluate`
decides and :meth:`Engine.apply` moves, so exploring follows exactly the engine's rules
(who may act, the join, each vote's counting, withdrawals). Each decision is asked once
per what the engine reads to make it (see :class:`_Decider`), and shared by every
configuration that agrees on that.

Data and dates are abstracted away. A named guard or a date rule may pass or fail
depending on data the walk does not know, so both are taken as possible: the walk
decides with an engine built from the same file without guards and date rules (the
branch where they pass), and a refused step leaves the case where it was (the branch
where they fail), so it adds nothing to walk. Four eyes (``not_by``) is alike: who takes
a step is not part of a configuration, so the walk takes the step by another person
(the branch where the rule passes). Each step guarded this way is listed.

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
    guarded: tuple[str, ...]  # steps a guard, date or four-eyes rule may refuse (both walked)

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
            lines.append(f"may be refused by a guard, date or four-eyes rule (both outcomes "
                         f"explored): "
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
    #: a configuration's key (its engine configuration's number, the invariants' memory)
    #: -> its number
    index: dict[tuple[int, Memory], int]
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
    """The workflow's engine with every guard, date rule, restatement rule and four-eyes
    rule passing (built once). Data is abstracted: a step that must state keys again after
    a withdrawal can carry them (its ``sets`` allow them), so that rule may always pass;
    and persons are: a step with ``not_by`` can be taken by another person."""
    key = (workflow.name, workflow.version, workflow.digest)
    found = _FREE.get(key)
    if found is None:
        # a timed step's date is a date rule too: its timer falls on the walk's one day
        free = attrs.evolve(workflow, transitions=tuple(
            attrs.evolve(t, guards=(), earliest=None, restate_after_withdrawal=(), not_by=(),
                         timer=None if t.timer is None else DateRef(kind="date", date=DAY))
            for t in workflow.transitions))
        found = _FREE[key] = Engine(free)
    return found


def _may_be_refused(t: TransitionDef) -> bool:
    return (bool(t.guards) or t.earliest is not None or bool(t.restate_after_withdrawal)
            or t.timer is not None or bool(t.not_by))


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
    start = free.initial_state({}, DAY)
    memory, broken = tracker.start(start.config)
    g = Graph(engine=free, index={}, states=[(start, memory)], parent=[None], edges={},
              frontier=set(), complete=True, steps=0, taken=set(), first_source={},
              refusals={}, violations={})
    decider = _Decider(free, g)
    g.index[(decider.number(start), memory)] = 0
    for inv, text in broken:
        g.violations.setdefault(inv.id, (0, Step("create", ""), start.config, text))
    index, states, parent, edges, violations = (g.index, g.states, g.parent, g.edges,
                                                g.violations)
    engine_of: list[int] = [0]  # per configuration: its engine configuration's number
    moves_of, decide, step_of, apply = decider.moves, decider.decide, tracker.step, free.apply
    steps = 0
    node = 0
    while node < len(states):  # breadth-first: the numbers are the queue
        state, memory = states[node]
        out: list[tuple[Step, int]] = []
        edges[node] = out
        config = state.config
        if free.is_final(config):
            node += 1
            continue
        moves = moves_of[engine_of[node]]
        if moves is None:
            # the first configuration met with these active states and ballots: the engine
            # decides here, and a transition is first enabled (or first refused) here if
            # anywhere, as that depends on nothing else; decide records both in the graph
            moves = decide(engine_of[node], state, node)
        steps += len(moves)
        for step, target, after in moves:
            new_memory, broken = step_of(memory, config, target, step.trigger)
            for inv, text in broken:
                violations.setdefault(inv.id, (node, step, target, text))
            new_key = (after, new_memory)
            nxt = index.get(new_key)
            if nxt is None:
                if len(states) >= limit:
                    g.complete = False
                    g.frontier.add(node)
                    continue
                nxt = index[new_key] = len(states)
                states.append((apply(state, trigger=step.trigger, actor=step.actor, on=DAY,
                                     seq=state.version, target=target, data={}), new_memory))
                engine_of.append(after)
                parent.append((node, step))
            out.append((step, nxt))
        node += 1
    g.steps = steps
    return g


#: The steps the engine allows from an engine configuration, in trigger order, then in the
#: order of each step's actors: the step, its target, and the number of the engine
#: configuration it leads to.
_Moves = list[tuple[Step, frozenset[str], int]]
#: What the engine decided about one transition, for each actor allowed to take it: the
#: reason it refuses the first actor it refuses (None: none), and per actor it allows, in
#: order, the step, the states it leaves and enters, and the number of that move.
_Decided = tuple[str | None, tuple[tuple[Step, frozenset[str], frozenset[str], int], ...]]


class _Decider:
    """The engine's side of the walk: every engine configuration's steps, each decided by
    :meth:`Engine.evaluate` and moved by :meth:`Engine.apply`, but only once per what those
    read of the configuration.

    An engine configuration is what the engine decides a step of the walk on: the active
    states and the votes' ballots and withdrawals. The rest of the walk's state is alike
    everywhere, or never read: its data is empty, every date is the walk's one day (so no
    timer is overdue, and each timer's date is that day), its sequence number never moves
    (so a timed step taken is never "taken since its source was entered"), the states a
    timer counts from are the active ones, and who took a step is never known (the free
    engine has no four-eyes rules: each step is taken by another person). The invariants' memory
    is the walk's own, and the engine never reads it.

    Within an engine configuration, the engine reads still less:

    - ``evaluate`` reads, of the votes, only the ballots and withdrawals of the step's own
      vote and, for each vote that has a 'withdrawn' state, whether every voter has
      withdrawn from it (``settle_votes`` moves such a vote on when it is entered again);
    - of the active states, a step that stays within one region of a parallel state (its
      source, its target and its vote's 'withdrawn' state lie in that region) reads and
      changes only that region's: the regions of a parallel state are independent. What
      the engine checks of the active states for such a step (its source; the join, the
      quorum or the timer of a state within the region) lies within the region;
      validation refuses a trigger that leaves two states that can be active together, so
      no other region moves on the same trigger; and a vote elsewhere that every voter has
      left is never active (it moves to its 'withdrawn' state when the last voter leaves,
      and again whenever it is entered);
    - ``apply`` changes the ballots and withdrawals by the step's own vote, and clears the
      ballots of each vote whose state the step leaves or enters again; which votes those
      are follows from the transition, the states it leaves and enters, and whether each
      vote's state was active.

    So each decision is memoised on what it reads, and asked of the engine on the first
    configuration met with it. ``tests/test_explore_reference.py`` checks the walk against
    one that asks the engine at every step, on hand-made, bundled and random workflows.
    """

    def __init__(self, free: Engine, graph: Graph) -> None:
        wf = free.workflow
        self.free = free
        self._graph = graph
        self._transition_index = {id(t): i for i, t in enumerate(wf.transitions)}
        self._by_source: dict[str, set[str]] = {}
        for td in wf.transitions:
            self._by_source.setdefault(td.source, set()).add(td.trigger)
        self._votes = tuple(wf.votes.values())
        self._emptied = tuple(vg for vg in self._votes if vg.withdrawn)
        #: per active states: the steps enabled there, each with the active states it reads
        self._enabled: dict[frozenset[str], list[tuple[TransitionDef, int,
                                                       frozenset[str]]]] = {}
        #: per active states: the number of which votes' states are among them
        self._voting: dict[frozenset[str], int] = {}
        #: the votes' ballots and withdrawals -> their number; per number: whether every
        #: voter left each vote that has a 'withdrawn' state, and each vote's own part
        self._tallies: dict[Key, int] = {}
        self._emptied_of: list[tuple[bool, ...]] = []
        self._own_of: list[dict[str, Key]] = []
        #: (active states, tallies' number) -> the engine configuration's number
        self._numbers: dict[tuple[frozenset[str], int], int] = {}
        self._configs: list[tuple[frozenset[str], int]] = []
        #: per engine configuration's number: its steps, once decided
        self.moves: list[_Moves | None] = []
        self._decisions: dict[Key, _Decided] = {}
        #: (tallies' number, move's number, votes' states active) -> tallies' number after
        self._afters: dict[tuple[int, int, int], int] = {}
        #: (transition's index, actor, states left, states entered) -> the move's number
        self._move_ids: dict[Key, int] = {}
        self._voting_ids: dict[tuple[bool, ...], int] = {}
        self._local = self._regions(wf)

    @staticmethod
    def _regions(wf: Workflow) -> list[frozenset[str] | None]:
        """Per transition: the leaves of the smallest region (a child of a parallel state)
        that holds its source, its target and its vote's 'withdrawn' state, if any."""
        lineage = {s: frozenset([s, *wf.ancestors(s)]) for s in wf.state_defs}
        out: list[frozenset[str] | None] = []
        for t in wf.transitions:
            vg = wf.votes.get(t.vote) if t.vote else None
            within = [t.source, t.target, *([vg.withdrawn] if vg and vg.withdrawn else [])]
            region = next((r for r in (t.source, *wf.ancestors(t.source))
                           if (p := wf.state_defs[r].parent) is not None
                           and wf.state_defs[p].kind == "parallel"
                           and all(r in lineage[s] for s in within)), None)
            out.append(None if region is None else
                       frozenset(s for s in wf.leaves if region in lineage[s]))
        return out

    def _tally(self, state: CaseState) -> int:
        """The number of ``state``'s ballots and withdrawals (numbered in first-met order)."""
        ballots, withdrawn = state.ballots, state.withdrawn
        own: dict[str, Key] = {
            vg.id: (tuple(sorted(ballots.get(vg.id, {}).items())),
                    tuple(sorted(withdrawn.get(vg.id, ()))))
            for vg in self._votes}
        key = tuple(own.values())
        number = self._tallies.get(key)
        if number is None:
            number = self._tallies[key] = len(self._own_of)
            self._own_of.append(own)
            self._emptied_of.append(tuple(
                bool(gone := withdrawn.get(vg.id, frozenset()))
                and all(v in gone for v in vg.voters)
                for vg in self._emptied))
        return number

    def _number(self, config: frozenset[str], tally: int) -> int:
        key = (config, tally)
        number = self._numbers.get(key)
        if number is None:
            number = self._numbers[key] = len(self._configs)
            self._configs.append(key)
            self.moves.append(None)
        return number

    def number(self, state: CaseState) -> int:
        """The number of ``state``'s engine configuration (numbered in first-met order)."""
        return self._number(state.config, self._tally(state))

    def _enabled_in(self, config: frozenset[str]) -> list[tuple[TransitionDef, int,
                                                                frozenset[str]]]:
        """The steps enabled in ``config``, in trigger order, each with the part of
        ``config`` the engine reads to decide it."""
        steps = self._enabled.get(config)
        if steps is None:
            free = self.free
            triggers = sorted({tr for s in free.active(config)
                               for tr in self._by_source.get(s, ())})
            steps = self._enabled[config] = []
            for trigger in triggers:
                t = free.enabled_transition(config, trigger)
                if t is not None:
                    i = self._transition_index[id(t)]
                    region = self._local[i]
                    steps.append((t, i, config if region is None else config & region))
            voting = tuple(vg.state in config for vg in self._votes)
            self._voting[config] = self._voting_ids.setdefault(voting, len(self._voting_ids))
        return steps

    def decide(self, number: int, state: CaseState, node: int) -> _Moves:
        """Every step from engine configuration ``number``, of which ``state`` (the walk's
        configuration ``node``) is the first met: the steps allowed, and in the graph each
        step's first source and first refusal, and the transitions taken."""
        free, decisions, afters, numbers, number_of = (
            self.free, self._decisions, self._afters, self._numbers, self._number)
        g = self._graph
        config, tally = self._configs[number]
        emptied, own, voting = self._emptied_of[tally], self._own_of[tally], None
        moves: _Moves = []
        for t, i, part in self._enabled_in(config):
            g.first_source.setdefault(i, node)
            key: Key = (i, part, emptied, own[t.vote] if t.vote else None)
            decided = decisions.get(key)
            if decided is None:
                decided = decisions[key] = self._evaluate(state, t)
            refused, allowed = decided
            if refused is not None:
                g.refusals.setdefault(i, refused)
            if not allowed:
                continue
            g.taken.add(i)
            if voting is None:
                voting = self._voting[config]
            for step, left, entered, move in allowed:
                target = (config - left) | entered if left or entered else config
                key = (tally, move, voting)
                after = afters.get(key)
                if after is None:
                    after = afters[key] = self._tally(free.apply(
                        state, trigger=t.trigger, actor=step.actor, on=DAY, seq=state.version,
                        target=target, data={}))
                key = (target, after)
                nxt = numbers.get(key)
                if nxt is None:
                    nxt = number_of(target, after)
                moves.append((step, target, nxt))
        self.moves[number] = moves
        return moves

    def _evaluate(self, state: CaseState, t: TransitionDef) -> _Decided:
        """The engine's decision on ``t`` in ``state``, for each actor allowed to take it."""
        refused = None
        allowed = []
        for actor in t.actors:
            d = self.free.evaluate(state, t.trigger, actor=actor, on=DAY)
            if not d.ok:
                refused = refused or d.reasons[0]
                continue
            left, entered = state.config - d.target, d.target - state.config
            move_key = (self._transition_index[id(t)], actor, left, entered)
            move = self._move_ids.setdefault(move_key, len(self._move_ids))
            allowed.append((Step(t.trigger, actor), left, entered, move))
        return refused, tuple(allowed)


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

