"""The walk against a straightforward one: the same configurations, numbered alike, the same
steps between them, refusals, first sources and broken invariants, and, for the flagship,
the counts and counterexamples pinned.

The reference below is the walk as first written: every step of every configuration
decided by ``Engine.evaluate`` and moved by ``Engine.apply``, nothing memoised in the walk.
The walk in :mod:`approvalflow.explore` shares what does not depend on the invariants'
memory between configurations; these tests show that this changes nothing it finds.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest

import approvalflow as af
from approvalflow.engine import CaseState
from approvalflow.explore import DAY, Graph, Step, _free_engine, as_python, explore_graph
from approvalflow.invariants import Memory, Tracker

from .test_explore import DEAD, LOOP, REVIEW_SINCE_REWORK, TRAP


def _key(state: CaseState, memory: Memory) -> tuple[Hashable, ...]:
    ballots = tuple(sorted((g, tuple(sorted(b.items()))) for g, b in state.ballots.items()
                           if b))
    withdrawn = tuple(sorted((g, tuple(sorted(w))) for g, w in state.withdrawn.items() if w))
    return (state.config, ballots, withdrawn, memory)


def reference_walk(workflow: af.Workflow, limit: int) -> dict[str, Any]:
    """Every reachable configuration, walked breadth-first, each step asked of the engine."""
    free = _free_engine(workflow)
    tracker = Tracker(free)
    transition_index = {id(t): i for i, t in enumerate(free.workflow.transitions)}
    by_source: dict[str, set[str]] = {}
    for td in free.workflow.transitions:
        by_source.setdefault(td.source, set()).add(td.trigger)
    start = free.initial_state({}, DAY)
    memory, broken = tracker.start(start.config)
    index = {_key(start, memory): 0}
    states: list[tuple[CaseState, Memory]] = [(start, memory)]
    parent: list[tuple[int, Step] | None] = [None]
    edges: dict[int, list[tuple[Step, int]]] = {}
    frontier: set[int] = set()
    complete, steps = True, 0
    taken: set[int] = set()
    first_source: dict[int, int] = {}
    refusals: dict[int, str] = {}
    violations: dict[str, tuple[int, Step, frozenset[str], str]] = {}
    for inv, text in broken:
        violations.setdefault(inv.id, (0, Step("create", ""), start.config, text))
    node = 0
    while node < len(states):
        state, memory = states[node]
        out = edges[node] = []
        if free.is_final(state.config):
            node += 1
            continue
        triggers = sorted({tr for s in free.active(state.config)
                           for tr in by_source.get(s, ())})
        for trigger in triggers:
            t = free.enabled_transition(state.config, trigger)
            if t is None:
                continue
            i = transition_index[id(t)]
            first_source.setdefault(i, node)
            for actor in t.actors:
                d = free.evaluate(state, trigger, actor=actor, on=DAY)
                if not d.ok:
                    refusals.setdefault(i, d.reasons[0])
                    continue
                steps += 1
                taken.add(i)
                step = Step(trigger, actor)
                after = free.apply(state, trigger=trigger, actor=actor, on=DAY,
                                   seq=state.version, target=d.target, data={})
                new_memory, broken = tracker.step(memory, state.config, d.target, trigger)
                for inv, text in broken:
                    violations.setdefault(inv.id, (node, step, d.target, text))
                new_key = _key(after, new_memory)
                nxt = index.get(new_key)
                if nxt is None:
                    if len(states) >= limit:
                        complete = False
                        frontier.add(node)
                        continue
                    nxt = index[new_key] = len(states)
                    states.append((after, new_memory))
                    parent.append((node, step))
                out.append((step, nxt))
        node += 1
    return {"configurations": [_key(s, m) for s, m in states], "parent": parent,
            "edges": edges, "frontier": frontier, "complete": complete, "steps": steps,
            "taken": taken, "first_source": first_source, "refusals": refusals,
            "violations": violations}


def _as_walked(g: Graph) -> dict[str, Any]:
    return {"configurations": [_key(s, m) for s, m in g.states], "parent": g.parent,
            "edges": g.edges, "frontier": g.frontier, "complete": g.complete,
            "steps": g.steps, "taken": g.taken, "first_source": g.first_source,
            "refusals": g.refusals, "violations": g.violations}


WORKFLOWS = {
    "dead": lambda: af.loads_workflow(DEAD),
    "trap": lambda: af.loads_workflow(TRAP),
    "loop": lambda: af.loads_workflow(LOOP + REVIEW_SINCE_REWORK.format(since="rework")),
    **{name: (lambda name=name: af.load_workflow(name)) for name in af.bundled_workflows()},
}


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_the_walk_finds_what_the_reference_walk_finds(name):
    """Configuration by configuration, step by step, the walk is the straightforward one."""
    wf = WORKFLOWS[name]()
    limit = 200_000
    expected = reference_walk(wf, limit)
    walked = _as_walked(explore_graph(wf, limit=limit))
    for field, value in expected.items():
        assert walked[field] == value, field
    assert len(expected["configurations"]) == len(set(expected["configurations"]))


@pytest.mark.parametrize("limit", [1, 50, 2_000])
def test_over_the_limit_the_walk_stops_where_the_reference_stops(flagship, limit):
    """Cut off by the limit, both have seen the same configurations and the same frontier."""
    expected = reference_walk(flagship, limit)
    walked = _as_walked(explore_graph(flagship, limit=limit))
    assert not expected["complete"]
    for field, value in expected.items():
        assert walked[field] == value, field


def test_flagship_counts_and_shortest_paths_are_pinned(flagship):
    """The flagship's walk, pinned: its counts, finals and proofs, and the shortest paths to
    two final states and to the last configuration met (each with its number)."""
    report = flagship.explore()
    assert (report.configurations, report.steps) == (8_606, 58_107)
    assert report.ok and report.complete
    assert report.finals_reached == ("abandoned", "no_departments", "refused", "rejected",
                                     "started")
    assert report.proven == ("lbf_after_tmu", "lbf_after_residents", "start_after_grant")
    g = explore_graph(flagship)
    found = {final: next(n for n, (s, _) in enumerate(g.states) if s.config == {final})
             for final in ("no_departments", "started")}
    assert found == {"no_departments": 6_345, "started": 7_168}
    assert as_python(g.path(6_345)) == (
        "[('submit', 'tmf'), ('3b.reject', '3b'), ('3b.withdraw', '3b_board'), "
        "('aab.reject', 'aab'), ('aab.withdraw', 'aab_board'), ('vibo.reject', 'vibo_afd_1'), "
        "('vibo.withdraw_all', 'vibo_board'), ('no_departments_left', 'tmf')]")
    assert as_python(g.path(7_168)) == (
        "[('submit', 'tmf'), ('3b.approve', '3b'), ('aab.approve', 'aab'), "
        "('tmu.approve', 'tmu'), ('vibo.reject', 'vibo_afd_1'), "
        "('vibo.override', 'vibo_authority'), ('send_to_lbf', 'tmf'), ('lbf.approve', 'lbf'), "
        "('start', 'tmf')]")
    assert as_python(g.path(8_605)) == (
        "[('submit', 'tmf'), ('3b.reject', '3b'), ('3b.withdraw', '3b_board'), "
        "('aab.reject', 'aab'), ('aab.withdraw', 'aab_board'), ('tmu.approve', 'tmu'), "
        "('vibo.approve', 'vibo_afd_4'), ('vibo.withdraw', 'vibo_afd_1'), "
        "('vibo.withdraw', 'vibo_afd_2'), ('vibo.withdraw', 'vibo_afd_3'), "
        "('send_to_lbf', 'tmf'), ('lbf.send_back', 'lbf'), ('abandon', 'tmf')]")


def test_the_small_bundled_workflow_counts_are_pinned():
    """The remainder workflow: 8 configurations, 9 steps, its three finals reached."""
    report = af.load_workflow("medfinansiering-restbeloeb").explore()
    assert (report.configurations, report.steps) == (8, 9)
    assert report.finals_reached == ("approved", "rejected", "withdrawn") and report.ok
