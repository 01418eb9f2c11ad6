"""Exploration: every reachable configuration walked, dead steps, traps and invariants found
with their shortest counterexamples, in agreement with the engine on real cases."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import approvalflow as af
from approvalflow.cli import cli
from approvalflow.engine import engine_for
from approvalflow.explore import Graph, Step, as_python, explore_graph
from approvalflow.invariants import check_invariants
from approvalflow.store.rows import event_hash

HEAD = """
[workflow]
name = "{name}"
version = 1
initial = "draft"
"""

# A vote of one: its withdrawal would leave no voter, so the engine always refuses it.
DEAD = HEAD.format(name="dead") + """
[actors]
adm = "Administration"
a = "A"
[states.draft]
[states.voting]
[states.passed]
final = true
[votes.v]
state = "voting"
voters = ["a"]
need = "all"
[[transitions]]
trigger = "open"
source = "draft"
target = "voting"
actors = ["adm"]
[[transitions]]
trigger = "v.yes"
source = "voting"
target = "passed"
vote = "v"
[[transitions]]
trigger = "v.leave"
source = "voting"
target = "passed"
vote = "v"
ballot = "withdraw"
"""

# Every state has a way out, but only 'a' may vote: after a's yes the vote waits for b,
# who has no ballot, for ever.
TRAP = HEAD.format(name="trap") + """
[actors]
adm = "Administration"
a = "A"
b = "B"
[states.draft]
[states.voting]
[states.passed]
final = true
[states.failed]
final = true
[votes.v]
state = "voting"
voters = ["a", "b"]
need = "all"
[[transitions]]
trigger = "open"
source = "draft"
target = "voting"
actors = ["adm"]
[[transitions]]
trigger = "v.yes"
source = "voting"
target = "passed"
vote = "v"
actors = ["a"]
[[transitions]]
trigger = "v.no"
source = "voting"
target = "failed"
vote = "v"
ballot = "no"
actors = ["a"]
"""

# A review that can be skipped after a send-back: approval must follow a review since the
# last rework, but 'shortcut' goes from rework straight to approved.
LOOP = HEAD.format(name="loop") + """
[actors]
adm = "Administration"
boss = "Boss"
[states.draft]
[states.review]
[states.rework]
[states.approved]
final = true
[[transitions]]
trigger = "submit"
source = "draft"
target = "review"
actors = ["adm"]
[[transitions]]
trigger = "approve"
source = "review"
target = "approved"
actors = ["boss"]
[[transitions]]
trigger = "send_back"
source = "review"
target = "rework"
actors = ["boss"]
[[transitions]]
trigger = "shortcut"
source = "rework"
target = "approved"
actors = ["adm"]
[[transitions]]
trigger = "resubmit"
source = "rework"
target = "review"
actors = ["adm"]
"""

REVIEW_SINCE_REWORK = """
[[invariants]]
id = "reviewed"
label = "approved only after a review"
when_entering = "approved"
requires_entered = ["review"]
since = "{since}"
"""

# Data and dates that pass every guard of the bundled workflows, on one day.
DAY = "2022-03-01"
DATA = {"budget": {"total": 4_000_000, "lbf": 3_000_000, "municipality": 500_000,
                   "housing": 500_000, "earmarked": 1_100_000},
        "planned_start": "2022-03-01", "expires": "2022-02-28", "amount": 600_000}


def _data(wf: af.Workflow) -> dict[str, Any]:
    """DATA, less the keys a workflow does not let a case start with."""
    allowed = wf.creation_sets
    return {k: v for k, v in DATA.items() if allowed is None or k in allowed}


def loop(since: str) -> af.Workflow:
    return af.loads_workflow(LOOP + REVIEW_SINCE_REWORK.format(since=since))


# -- hand-made workflows: each defect found, with its shortest path ----------------------


def test_dead_transition_found_with_the_path_to_where_it_is_refused():
    """A withdrawal the engine always refuses is dead, shown where it is first enabled."""
    report = af.loads_workflow(DEAD).explore()
    assert report.complete
    assert [f.subject for f in report.dead] == ["'v.leave' from 'voting' to 'passed'"]
    assert report.dead[0].python == "[('open', 'adm')]"
    assert "can't withdraw from the vote 'v'" in report.dead[0].why
    assert not report.stuck and not report.ok


def test_trap_found_with_the_shortest_path_into_it(store):
    """A vote that waits for a voter with no ballot is stuck after the other's yes; a real
    case driven along the path can do nothing more and has not ended."""
    report = af.loads_workflow(TRAP).explore()
    assert report.complete and not report.dead
    assert [f.python for f in report.stuck] == ["[('open', 'adm'), ('v.yes', 'a')]"]
    assert report.stuck[0].subject == "{voting} ballots v: a=yes"
    assert report.finals_reached == ("failed",)
    assert report.finals_unreached == ("passed",)
    case = store.create_case(af.loads_workflow(TRAP), "fast", actor="adm", on=DAY)
    for step in report.stuck[0].path:
        case.fire(step.trigger, actor=step.actor, on=DAY)
    assert case.allowed(on=DAY) == [] and not case.is_final


def test_invariant_violation_found_with_the_shortest_counterexample():
    """Counting since the rework, the shortcut breaks the invariant in three steps."""
    report = loop("rework").explore()
    assert [f.subject for f in report.violations] == ["reviewed"]
    found = report.violations[0]
    assert found.path == (Step("submit", "adm"), Step("send_back", "boss"),
                          Step("shortcut", "adm"))
    assert found.python == "[('submit', 'adm'), ('send_back', 'boss'), ('shortcut', 'adm')]"
    assert "'review' was not entered since 'rework' was last entered" in found.why
    assert report.proven == () and not report.ok


def test_the_reset_point_decides_what_counts_as_earlier():
    """Counting since the draft (entered once), the review before the rework counts."""
    report = loop("draft").explore()
    assert report.ok and report.proven == ("reviewed",)


def test_counterexample_replays_on_a_real_case_and_verify_names_it(store):
    """The counterexample's steps run on a real case; verify then names the invariant."""
    wf = loop("rework")
    path = wf.explore().violations[0].path
    case = store.create_case(wf, "c1", actor="adm", on=DAY)
    for step in path:
        case.fire(step.trigger, actor=step.actor, on=DAY)
    assert store.verify().problems == [
        "case 'c1' event 4: entering 'approved' breaks invariant 'reviewed' (approved only "
        "after a review): 'review' was not entered since 'rework' was last entered"]


def test_check_invariants_on_events_names_case_seq_and_id(store):
    """check_invariants judges a real case's events and is silent on a good one."""
    wf = loop("rework")
    good = store.create_case(wf, "good", actor="adm", on=DAY)
    for trigger, actor in [("submit", "adm"), ("send_back", "boss"), ("resubmit", "adm"),
                           ("approve", "boss")]:
        good.fire(trigger, actor=actor, on=DAY)
    assert check_invariants(wf, good.history) == []
    bad = store.create_case(wf, "bad", actor="adm", on=DAY)
    for trigger, actor in [("submit", "adm"), ("send_back", "boss"), ("shortcut", "adm")]:
        bad.fire(trigger, actor=actor, on=DAY)
    problems = check_invariants(wf, bad.history)
    assert len(problems) == 1 and problems[0].startswith("case 'bad' event 4: entering "
                                                         "'approved' breaks invariant 'reviewed'")


def test_requires_active_is_checked_right_after_the_step():
    """An invariant on states active after entering is proven, or broken with its path."""
    text = """
[[invariants]]
id = "still_drafting"
when_entering = "review"
requires_active = ["draft"]
"""
    report = af.loads_workflow(LOOP + text).explore()
    assert report.violations[0].python == "[('submit', 'adm')]"
    assert "'draft' is not active" in report.violations[0].why


def test_the_limit_says_so_and_proves_nothing(flagship):
    """Over the limit the report is incomplete: seen steps only, nothing proven or dead."""
    report = flagship.explore(limit=50)
    assert not report.complete and not report.ok
    assert report.configurations == 50
    assert report.proven == () and report.dead == ()
    assert "'start' from 'lbf_approved' to 'started'" in report.unseen
    assert "INCOMPLETE: the limit of 50 configurations was hit" in report.text()


def test_a_bad_limit_is_refused(flagship):
    """A limit that is not a positive whole number is an InvalidInputError."""
    with pytest.raises(af.InvalidInputError, match="limit must be a whole number"):
        flagship.explore(limit=0)


# -- loading [[invariants]] -----------------------------------------------------------


def test_invariants_with_unknown_states_are_refused_listing_every_problem():
    """Every unknown state, a repeated id and an empty requirement are named at once."""
    text = """
[[invariants]]
id = "one"
when_entering = "nowhere"
requires_entered = ["review", "limbo"]
since = "never"

[[invariants]]
id = "one"
when_entering = "review"

[[invariants]]
when_entering = "review"
requires_active = ["draft"]
colour = "red"
"""
    with pytest.raises(af.DefinitionError) as caught:
        af.loads_workflow(LOOP + text, source="x.toml")
    assert caught.value.problems == [
        "x.toml: [[invariants]] #1 ('one'): when_entering 'nowhere', since 'never', "
        "requires_entered 'limbo' not a state; states: ['approved', 'draft', 'review', "
        "'rework'].",
        "x.toml: [[invariants]] #2 ('one'): the invariant id 'one' is used twice.",
        "x.toml: [[invariants]] #2 ('one') requires nothing; give requires_entered, "
        "requires_any_entered or requires_active.",
        "x.toml: [[invariants]] #3 has the unknown key 'colour'; allowed keys: description, "
        "id, label, requires_active, requires_any_entered, requires_entered, since, "
        "when_entering.",
        "x.toml: [[invariants]] #3 needs 'id'.",
    ]


def test_invariants_load_into_the_workflow(flagship):
    """The flagship's invariants load with their states and reset points."""
    by_id = {inv.id: inv for inv in flagship.invariants}
    assert by_id["lbf_after_tmu"].when_entering == "lbf_review"
    assert by_id["lbf_after_tmu"].requires_entered == ("tmu_approved",)
    assert by_id["lbf_after_residents"].since == "approval"


# -- the bundled workflows ----------------------------------------------------------------


@pytest.mark.parametrize("name", af.bundled_workflows())
def test_bundled_workflow_explores_clean(name):
    """Complete, no dead transition, no stuck configuration, every final state reachable,
    and every invariant proven."""
    wf = af.load_workflow(name)
    report = wf.explore()
    assert report.complete
    assert report.dead == (), report.text()
    assert report.stuck == (), report.text()
    assert report.finals_unreached == ()
    assert wf.invariants, f"{name} declares no invariants"
    assert report.violations == (), report.text()
    assert set(report.proven) == {inv.id for inv in wf.invariants}


def test_flagship_proves_no_case_reaches_lbf_without_residents(flagship):
    """With every organisation withdrawn the flagship can't reach LBF: the walk proves the
    residents' invariant over every configuration, the all-withdrawn ones among them."""
    report = flagship.explore()
    assert "lbf_after_residents" in report.proven
    assert "no_departments" in report.finals_reached


# -- agreement with the engine, on real cases in a real store -----------------------------


def _drive(store: af.Store, wf: af.Workflow, case_id: str, path: tuple[Step, ...]) -> af.Case:
    case = store.create_case(wf, case_id, actor=next(iter(wf.actors)), on=DAY, data=_data(wf))
    for step in path:
        # a step that must state keys again after a withdrawal carries them (explore
        # abstracts data: it takes such a step as able to pass)
        t = case.transition(step.trigger)
        case.fire(step.trigger, actor=step.actor, on=DAY,
                  data=_restated(t) if t is not None else None)
    return case


def _restated(t: Any) -> dict[str, Any] | None:
    """What a step must state again after a withdrawal, from DATA, within what it may set."""
    out: dict[str, Any] = {}
    for key in t.restate_after_withdrawal:
        value = DATA.get(key)
        parts = [k.split(".", 1)[1] for k in (t.sets or ()) if k.startswith(key + ".")]
        if isinstance(value, dict) and parts:
            value = {k: value[k] for k in parts if k in value}
        out[key] = value
    return out or None


def _agree(store: af.Store, wf: af.Workflow, graph: Graph, node: int, case_id: str) -> None:
    """The real case driven to ``node`` is in that configuration, and the steps the engine
    allows it are exactly the steps the walk takes from there, to the same configurations."""
    state, _ = graph.states[node]
    case = _drive(store, wf, case_id, graph.path(node))
    assert case.state == state.config
    assert case.ballots() == {g: dict(b) for g, b in state.ballots.items() if b}
    engine = engine_for(wf)  # the real one: real guards, on the case's real data
    # each step as a caller would take it: carrying what it must state again, if anything
    carried = {t: _restated(case.transition(t)) for t in case.steps()}
    # the clock takes the timed steps: it is among who may act
    actors = [*wf.actors, *(["clock"] if wf.timed_transitions else [])]
    real = {(trigger, actor) for actor in actors for trigger in case.steps()
            if not case.why_not(trigger, actor=actor, on=DAY, data=carried[trigger])}
    walked = {(s.trigger, s.actor): nxt for s, nxt in graph.edges[node]}
    assert real == set(walked)
    for (trigger, actor), nxt in walked.items():  # and each step lands where the walk says
        decision = engine.evaluate(case.engine_state, trigger, actor=actor,
                                   on=dt.date.fromisoformat(DAY), data=carried[trigger])
        assert decision.ok and decision.target == graph.states[nxt][0].config


@pytest.mark.parametrize("text", [DEAD, TRAP, LOOP + REVIEW_SINCE_REWORK.format(since="rework")],
                         ids=["dead", "trap", "loop"])
def test_every_configuration_agrees_with_the_engine(store, text):
    """Exhaustively, for the hand-made workflows: walk and engine allow the same steps."""
    wf = af.loads_workflow(text)
    graph = explore_graph(wf)
    for node in range(len(graph.states)):
        _agree(store, wf, graph, node, f"c{node}")


def test_every_configuration_of_the_small_bundled_workflow_agrees(store):
    """Exhaustively, for the remainder workflow (its guard passes with real data)."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    graph = explore_graph(wf)
    for node in range(len(graph.states)):
        _agree(store, wf, graph, node, f"c{node}")


_FLAGSHIP_GRAPH: list[tuple[af.Workflow, Graph]] = []


def _flagship_graph() -> tuple[af.Workflow, Graph]:
    if not _FLAGSHIP_GRAPH:
        wf = af.load_workflow("boligsocial-helhedsplan")
        _FLAGSHIP_GRAPH.append((wf, explore_graph(wf)))
    return _FLAGSHIP_GRAPH[0]


@settings(max_examples=40)
@given(pick=st.integers(min_value=0))
def test_random_flagship_configurations_agree_with_the_engine(tmp_path_factory, pick):
    """Over random reachable flagship configurations: walk and engine allow the same steps."""
    wf, graph = _flagship_graph()
    node = pick % len(graph.states)
    path = tmp_path_factory.mktemp("agree") / "cases.db"
    with af.open_store(path) as store:
        _agree(store, wf, graph, node, "mimerskvarteret-forsoeg")


# -- verify on a forged log ---------------------------------------------------------------


def test_verify_reports_a_forged_step_that_breaks_an_invariant(db_path, flagship):
    """An appended, correctly hashed send_to_lbf with only TMU's approval is named by the
    join it skips and the residents' invariant it breaks (not the committee's: it holds)."""
    with af.open_store(db_path) as store:
        case = store.create_case(flagship, "forfalsket", actor="tmf", on=DAY,
                                 data=_data(flagship))
        case.fire("submit", actor="tmf", on=DAY)
        case.fire("tmu.approve", actor="tmu", on=DAY)
        assert store.verify().ok
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    last = dict(conn.execute("SELECT * FROM events WHERE case_id = 'forfalsket' "
                             "ORDER BY seq DESC LIMIT 1").fetchone())
    target = engine_for(flagship).step(frozenset(json.loads(last["target"])), "send_to_lbf")
    forged = dict(last, seq=last["seq"] + 1, trigger="send_to_lbf", actor="tmf",
                  source=last["target"], target=json.dumps(sorted(target)),
                  prev_hash=last["hash"], note="forged", key=None,
                  position=conn.execute("SELECT max(position) + 1 FROM events").fetchone()[0])
    forged["hash"] = event_hash(forged)
    conn.execute(f"INSERT INTO events ({', '.join(forged)}) VALUES "
                 f"({', '.join('?' * len(forged))})", list(forged.values()))
    conn.execute("UPDATE cases SET state = ?, seq = ?, head_hash = ? WHERE case_id = ?",
                 (forged["target"], forged["seq"], forged["hash"], "forfalsket"))
    conn.close()
    with af.open_store(db_path) as store:
        problems = store.verify().problems
    assert any("event 4: entering 'lbf_review' breaks invariant 'lbf_after_residents'" in p
               for p in problems), problems
    assert all("lbf_after_tmu" not in p for p in problems), problems
    assert any("event 4: 'send_to_lbf' by 'tmf'" in p and "breaks the rule 'join'" in p
               for p in problems), problems


# -- the command line ---------------------------------------------------------------------


def test_cli_check_explore_prints_the_counterexample_and_fails(tmp_path: Path):
    """check --explore prints the pasteable path of a broken invariant and exits 1."""
    path = tmp_path / "loop.toml"
    path.write_text(LOOP + REVIEW_SINCE_REWORK.format(since="rework"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--explore", str(path)])
    assert result.exit_code == 1, result.output
    assert "loop v1: 5 configurations" in result.output
    assert "VIOLATED: reviewed" in result.output
    assert "path: [('submit', 'adm'), ('send_back', 'boss'), ('shortcut', 'adm')]" \
        in result.output
    assert result.output.rstrip().endswith("NOT ok")


def test_cli_check_explore_json_on_a_clean_workflow(tmp_path: Path):
    """check --explore --json prints one report per workflow and exits 0 when all is proven."""
    result = CliRunner().invoke(cli, ["check", "--explore", "--json",
                                      "medfinansiering-restbeloeb"])
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.output)
    assert report["ok"] and report["complete"]
    assert report["invariants_proven"] == ["br_after_oeu", "approved_by_br"]
    assert report["dead"] == [] and report["stuck"] == []


def test_cli_check_explore_limit_and_usage():
    """--limit caps the walk (and fails: nothing is proven); --json alone is a usage error."""
    runner = CliRunner()
    result = runner.invoke(cli, ["check", "--explore", "--limit", "3",
                                 "medfinansiering-restbeloeb"])
    assert result.exit_code == 1
    assert "INCOMPLETE: the limit of 3 configurations was hit" in result.output
    result = runner.invoke(cli, ["check", "--json", "medfinansiering-restbeloeb"])
    assert result.exit_code == 2
    assert "--json and --limit go with --explore" in result.output


def test_as_python_is_a_list_of_tuples():
    """A path prints as a Python literal that evaluates back to (trigger, actor) pairs."""
    path = (Step("submit", "tmf"), Step("3b.reject", "3b"))
    assert eval(as_python(path)) == [("submit", "tmf"), ("3b.reject", "3b")]  # noqa: S307


def test_an_explicit_step_re_enters_its_target_and_an_undecided_ballot_enters_nothing():
    """A self-loop enters its state again; a ballot that decides nothing enters nothing."""
    from approvalflow.invariants import tracker_for

    text = LOOP + """
[[transitions]]
trigger = "comment"
source = "review"
target = "review"
actors = ["boss"]
"""
    wf = af.loads_workflow(text)
    tracker = tracker_for(engine_for(wf))
    review = frozenset({"review"})
    assert tracker.entered(review, review, "comment") == {"review"}
    assert tracker.entered(frozenset({"draft"}), review, "submit") == {"review"}
    trap = af.loads_workflow(TRAP)
    voting = frozenset({"voting"})
    assert tracker_for(engine_for(trap)).entered(voting, voting, "v.yes") == frozenset()


def test_an_invariant_broken_at_creation_has_an_empty_path():
    """An invariant on the initial state is judged when the case is created."""
    text = """
[[invariants]]
id = "born_in_review"
when_entering = "draft"
requires_active = ["review"]
"""
    report = af.loads_workflow(LOOP + text).explore()
    [found] = report.violations
    assert found.path == () and found.python == "[]"
    assert found.config == {"draft"}
    assert "entering 'draft' breaks invariant 'born_in_review': 'review' is not active" \
        in found.why


def test_cli_check_explore_names_a_file_that_does_not_load(tmp_path: Path):
    """A workflow whose invariant names an unknown state is an Error line, exit 1."""
    path = tmp_path / "bad.toml"
    path.write_text(LOOP + REVIEW_SINCE_REWORK.format(since="nowhere"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--explore", str(path)])
    assert result.exit_code == 1
    assert "Error: " in result.output and "since 'nowhere' not a state" in result.output


def test_check_explore_in_a_real_process():
    """The command walks the bundled workflows in a process of its own."""
    done = subprocess.run([sys.executable, "-m", "approvalflow", "check", "--explore", "--json",
                           "medfinansiering-restbeloeb", "boligsocial-helhedsplan"],
                          capture_output=True, text=True, timeout=120, check=False)
    reports = {r["workflow"]: r for r in json.loads(done.stdout)}
    assert reports["medfinansiering-restbeloeb"]["ok"]
    assert reports["boligsocial-helhedsplan"]["complete"]
    assert reports["boligsocial-helhedsplan"]["configurations"] > 1000
    assert done.returncode == (0 if all(r["ok"] for r in reports.values()) else 1)


def test_a_step_behind_a_dead_one_is_dead_with_no_path():
    """A state entered only by a dead step is never active: its own step is dead too."""
    text = DEAD.replace('''trigger = "v.leave"
source = "voting"
target = "passed"''', '''trigger = "v.leave"
source = "voting"
target = "left"''') + """
[states.left]
[[transitions]]
trigger = "finish"
source = "left"
target = "passed"
actors = ["adm"]
"""
    report = af.loads_workflow(text).explore()
    by_subject = {f.subject: f for f in report.dead}
    assert set(by_subject) == {"'v.leave' from 'voting' to 'left'",
                               "'finish' from 'left' to 'passed'"}
    behind = by_subject["'finish' from 'left' to 'passed'"]
    assert behind.path == () and "'left' is never active" in behind.why


def test_invariants_follow_a_case_across_a_migration(store):
    """After a migration to a version with an invariant, what the case entered on the old
    version counts: one case breaks it, the other (reviewed after its rework) does not."""
    v1 = af.loads_workflow(LOOP)
    v2 = af.loads_workflow(LOOP.replace("version = 1", "version = 2")
                           + REVIEW_SINCE_REWORK.format(since="rework"))
    for case_id, steps in [("skips", [("submit", "adm"), ("send_back", "boss")]),
                           ("reviews", [("submit", "adm"), ("send_back", "boss"),
                                        ("resubmit", "adm")])]:
        case = store.create_case(v1, case_id, actor="adm", on=DAY)
        for trigger, actor in steps:
            case.fire(trigger, actor=actor, on=DAY)
    store.migrate(v2, actor="adm", on=DAY)
    store.case("skips").fire("shortcut", actor="adm", on=DAY)
    store.case("reviews").fire("approve", actor="boss", on=DAY)
    assert store.verify().problems == [
        "case 'skips' event 5: entering 'approved' breaks invariant 'reviewed' (approved only "
        "after a review): 'review' was not entered since 'rework' was last entered"]


def test_check_invariants_skips_a_step_into_a_state_the_workflow_lacks():
    """A recorded step naming an unknown state is skipped (replay reports it), not a crash;
    the steps after it are still judged."""
    from approvalflow.replay import Recorded

    wf = loop("rework")
    day = dt.date(2022, 3, 1)

    def row(seq: int, kind: str, trigger: str, source: set[str], target: set[str]) -> Recorded:
        return Recorded("c", seq, kind, trigger, "adm", day, frozenset(source),
                        frozenset(target), {})

    events = [row(1, "create", "create", set(), {"draft"}),
              row(2, "fire", "submit", {"draft"}, {"limbo"}),
              row(3, "fire", "send_back", {"review"}, {"rework"}),
              row(4, "fire", "shortcut", {"rework"}, {"approved"})]
    [problem] = check_invariants(wf, events)
    assert problem.startswith("case 'c' event 4: entering 'approved' breaks invariant 'reviewed'")


# Four eyes: 'sign' must be taken by another person than who took 'check'.
FOUR_EYES = HEAD.format(name="four-eyes") + """
[actors]
clerk = "Clerk"
[states.draft]
[states.checked]
[states.signed]
final = true
[[transitions]]
trigger = "check"
source = "draft"
target = "checked"
actors = ["clerk"]
[[transitions]]
trigger = "sign"
source = "checked"
target = "signed"
actors = ["clerk"]
not_by = ["check"]
"""


def test_a_four_eyes_step_is_walked_as_taken_by_another_person() -> None:
    """A step with not_by is neither dead nor a trap: the walk takes it by another person
    (it was called dead, 'say who takes it (by)', and the workflow NOT ok), and lists it
    among the steps a rule may refuse."""
    wf = af.loads_workflow(FOUR_EYES)
    report = wf.explore()
    assert report.ok, report.text()
    assert report.dead == () and report.stuck == ()
    assert report.finals_reached == ("signed",)
    assert report.guarded == ("sign",)
    assert "four-eyes rule (both outcomes explored): sign" in report.text()
    case = af.open_store(":memory:").create_case(wf, "c", actor="clerk", on="2024-01-01")
    case.fire("check", actor="clerk", on="2024-01-01", by="ann")
    case.fire("sign", actor="clerk", on="2024-01-01", by="bo")  # the walk's path is real
    assert case.is_final
