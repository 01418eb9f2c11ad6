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
from hypothesis import given, settings
from hypothesis import strategies as st

import approvalflow as af
from approvalflow.engine import CaseState
from approvalflow.explore import DAY, Graph, Step, _free_engine, as_python, explore_graph
from approvalflow.invariants import Memory, Tracker

from .strategies import to_toml
from .test_explore import DEAD, HEAD, LOOP, REVIEW_SINCE_REWORK, TRAP


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


# Two votes in turn whose ballots share their triggers: a ballot that decides nothing
# leaves the same states in both, and is recorded in a different vote.
TWO_VOTES = HEAD.format(name="two-votes") + """
[actors]
adm = "Administration"
a = "A"
b = "B"
c = "C"
[states.draft]
[states.first]
[states.second]
[states.passed]
final = true
[states.failed]
final = true
[votes.one]
state = "first"
voters = ["a", "b", "c"]
need = 2
[votes.two]
state = "second"
voters = ["a", "b", "c"]
need = 2
[[transitions]]
trigger = "open"
source = "draft"
target = "first"
actors = ["adm"]
[[transitions]]
trigger = "yes"
source = "first"
target = "second"
vote = "one"
[[transitions]]
trigger = "yes"
source = "second"
target = "passed"
vote = "two"
[[transitions]]
trigger = "no"
source = "first"
target = "failed"
vote = "one"
ballot = "no"
[[transitions]]
trigger = "no"
source = "second"
target = "failed"
vote = "two"
ballot = "no"
"""

WORKFLOWS = {
    "dead": lambda: af.loads_workflow(DEAD),
    "two-votes": lambda: af.loads_workflow(TWO_VOTES),
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


# -- random workflows with parallel regions, votes and shared triggers ---------------------


@st.composite
def parallel_workflows(draw: st.DrawFn) -> str:
    """A workflow whose parallel state mixes what the walk shares decisions over: regions
    with plain steps, votes (with a 'withdrawn' state or not), a nested parallel state
    (with a join, and a quorum or not), a trigger with a second transition outside the
    parallel state, a step that resets its region, a timed step, a step out of the
    parallel state from inside a region, and a way back in."""
    states: dict[str, Any] = {
        "draft": {}, "work": {"parallel": True}, "approved": {"final": True},
        "rejected": {"final": True}, "revision": {}}
    transitions: list[dict[str, Any]] = [
        {"trigger": "submit", "source": "draft", "target": "work", "actors": ["adm"]},
        {"trigger": "finish", "source": "work", "target": "approved", "actors": ["adm"]},
        {"trigger": "resubmit", "source": "revision", "target": "work", "actors": ["adm"]},
        {"trigger": "give_up", "source": "revision", "target": "rejected",
         "actors": ["adm"]}]
    votes: dict[str, Any] = {}
    people = ["p1", "p2", "p3"]
    leaves: list[str] = []
    poked = False
    kinds = draw(st.lists(st.sampled_from(["steps", "vote", "nested"]), min_size=1,
                          max_size=3))
    for k, kind in enumerate(kinds):
        r = f"r{k}"
        if kind == "steps":
            states[r] = {"parent": "work", "initial": f"{r}_a"}
            states[f"{r}_a"] = {"parent": r}
            states[f"{r}_b"] = {"parent": r}
            states[f"{r}_c"] = {"parent": r, "final": True}
            transitions += [
                {"trigger": f"{r}.ok", "source": f"{r}_a", "target": f"{r}_b",
                 "actors": draw(st.sampled_from([["adm"], ["p1"], ["adm", "p2"]]))},
                {"trigger": f"{r}.fin", "source": f"{r}_b", "target": f"{r}_c",
                 "actors": ["adm"]}]
            if draw(st.booleans()):
                transitions.append({"trigger": f"{r}.back", "source": f"{r}_b",
                                    "target": f"{r}_a", "actors": ["p1"]})
            if draw(st.booleans()):  # the region itself left and entered again
                transitions.append({"trigger": f"{r}.reset", "source": r, "target": r,
                                    "actors": ["p3"]})
            if not poked and draw(st.booleans()):  # a trigger with a second transition
                poked = True
                transitions += [{"trigger": "poke", "source": f"{r}_a", "target": f"{r}_b",
                                 "actors": ["adm"]},
                                {"trigger": "poke", "source": "revision", "target": "work",
                                 "actors": ["p2"]}]
            if draw(st.booleans()):
                transitions.append({"trigger": f"{r}.expire", "source": f"{r}_a",
                                    "target": f"{r}_c", "at": {"data": "expires"}})
            leaves += [f"{r}_a", f"{r}_b"]
        elif kind == "vote":
            voters = draw(st.lists(st.sampled_from(people), min_size=1, max_size=3,
                                   unique=True))
            need = draw(st.one_of(st.just("all"), st.integers(1, len(voters))))
            states[r] = {"parent": "work", "initial": f"{r}_v"}
            states[f"{r}_v"] = {"parent": r}
            states[f"{r}_yes"] = {"parent": r, "final": True}
            states[f"{r}_no"] = {"parent": r}
            votes[r] = {"state": f"{r}_v", "voters": voters, "need": need}
            if draw(st.booleans()):
                states[f"{r}_w"] = {"parent": r, "final": True}
                states[r]["done"] = [f"{r}_yes"]
                votes[r]["withdrawn"] = f"{r}_w"
            transitions += [
                {"trigger": f"{r}.yes", "source": f"{r}_v", "target": f"{r}_yes", "vote": r},
                {"trigger": f"{r}.no", "source": f"{r}_v", "target": f"{r}_no", "vote": r,
                 "ballot": "no"},
                {"trigger": f"{r}.again", "source": f"{r}_no", "target": f"{r}_v",
                 "actors": ["adm"]}]
            if draw(st.booleans()):
                transitions.append({"trigger": f"{r}.out", "source": f"{r}_v",
                                    "target": f"{r}_yes", "vote": r, "ballot": "withdraw"})
            leaves += [f"{r}_v", f"{r}_no"]
        else:
            states[r] = {"parent": "work", "initial": f"{r}_p"}
            states[f"{r}_p"] = {"parent": r, "parallel": True}
            states[f"{r}_c"] = {"parent": r, "final": True}
            quorum = draw(st.booleans())  # sub-regions may drop out; one done is enough
            for sub in ("x", "y"):
                s = f"{r}{sub}"
                states[s] = {"parent": f"{r}_p", "initial": f"{s}_a"}
                states[f"{s}_a"] = {"parent": s}
                states[f"{s}_b"] = {"parent": s, "final": True}
                transitions.append({"trigger": f"{s}.ok", "source": f"{s}_a",
                                    "target": f"{s}_b", "actors": ["adm"]})
                if quorum:
                    states[s]["done"] = [f"{s}_b"]
                    states[f"{s}_out"] = {"parent": s, "final": True}
                    transitions.append({"trigger": f"{s}.out", "source": f"{s}_a",
                                        "target": f"{s}_out", "actors": ["p1"]})
                leaves.append(f"{s}_a")
            transitions.append({"trigger": f"{r}.join", "source": f"{r}_p",
                                "target": f"{r}_c", "actors": ["adm"]})
            if quorum:
                states[f"{r}_p"]["quorum"] = {"regions": [f"{r}x", f"{r}y"], "at_least": 1}
                states[f"{r}_lost"] = {"parent": r, "final": True}
                transitions.append({"trigger": f"{r}.lost", "source": f"{r}_p",
                                    "target": f"{r}_lost", "actors": ["adm"],
                                    "quorum_lost": True})
    if draw(st.booleans()):  # out of the parallel state, from inside one region
        transitions.append({"trigger": "reject", "source": draw(st.sampled_from(leaves)),
                            "target": "rejected", "actors": ["adm"]})
    # back out of the parallel state, whatever its regions do
    transitions.append({"trigger": "send_back", "source": "work", "target": "revision",
                        "actors": ["adm"], "join": False})
    doc: dict[str, Any] = {
        "workflow": {"name": "random", "version": 1, "initial": "draft"},
        "actors": {a: a for a in ["adm", *people]},
        "states": states, "transitions": transitions}
    if votes:
        doc["votes"] = votes
    if draw(st.booleans()):
        doc["invariants"] = [{"id": "after_submit", "when_entering": "approved",
                              "requires_entered": [draw(st.sampled_from(leaves))],
                              "since": "draft"}]
    return to_toml(doc)


@settings(max_examples=60)
@given(text=parallel_workflows())
def test_random_parallel_workflows_walk_as_the_reference_does(text):
    """Over random workflows with parallel regions and votes, the walk is the reference."""
    try:
        wf = af.loads_workflow(text)
    except af.DefinitionError as e:
        raise AssertionError(f"{e}\n{text}") from e
    expected = reference_walk(wf, 5_000)  # the larger ones cut off, as the limit does
    walked = _as_walked(explore_graph(wf, limit=5_000))
    for field, value in expected.items():
        assert walked[field] == value, field
