"""Taking part, as a workflow file declares it: regions that end done or not, quorums, votes
everyone withdrew from, which data a step may set, and what must be stated again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.store.rows import event_hash

pytestmark = pytest.mark.backends

GENERIC = """
[workflow]
name = "club-outing"
version = 1
initial = "planning"
creation_sets = ["cost"]

[actors]
office = "Office"
a = "Team A"
b1 = "Team B, member 1"
b2 = "Team B, member 2"

[states.planning]
parallel = true
quorum = { regions = ["team_a", "team_b"], at_least = 1 }

[states.team_a]
parent = "planning"
initial = "a_open"
done = ["a_in"]
covers = ["a"]

[states.a_open]
parent = "team_a"

[states.a_in]
parent = "team_a"
final = true

[states.a_out]
parent = "team_a"
final = true

[states.team_b]
parent = "planning"
initial = "b_voting"
done = ["b_in"]
covers = ["b1", "b2"]

[states.b_voting]
parent = "team_b"

[states.b_in]
parent = "team_b"
final = true

[states.b_out]
parent = "team_b"
final = true

[states.booked]
final = true

[states.cancelled]
final = true

[votes.b]
state = "b_voting"
voters = ["b1", "b2"]
withdrawn = "b_out"

[[transitions]]
trigger = "a.join"
source = "a_open"
target = "a_in"
actors = ["a"]
sets = []

[[transitions]]
trigger = "a.leave"
source = "a_open"
target = "a_out"
actors = ["a"]
sets = []

[[transitions]]
trigger = "b.join"
source = "b_voting"
target = "b_in"
vote = "b"
sets = []

[[transitions]]
trigger = "b.leave"
source = "b_voting"
target = "b_in"
vote = "b"
ballot = "withdraw"
sets = []

[[transitions]]
trigger = "book"
source = "planning"
target = "booked"
actors = ["office"]
sets = ["cost"]
restate_after_withdrawal = ["cost"]

[[transitions]]
trigger = "cancel"
source = "planning"
target = "cancelled"
actors = ["office"]
quorum_lost = true
sets = []
"""


@pytest.fixture
def outing() -> af.Workflow:
    return af.loads_workflow(GENERIC, source="club-outing.toml")


def test_a_region_that_withdrew_is_not_done_and_the_quorum_still_holds(store, outing) -> None:
    """Team A leaves, team B joins: the join fires once the cost is stated again."""
    case = store.create_case(outing, "outing-1", actor="office", on="2024-01-01",
                             data={"cost": 100})
    case.fire("a.leave", actor="a", on="2024-01-02")
    case.fire("b.join", actor="b1", on="2024-01-03")
    case.fire("b.join", actor="b2", on="2024-01-03")
    assert case.region_outcome("team_a") == "not done"
    assert case.region_outcome("team_b") == "done"
    assert case.coverage() == {"team_a": ((), ("a",)), "team_b": (("b1", "b2"), ())}
    assert case.why_not("cancel", actor="office", on="2024-01-04") == [
        "'cancel' is for when the regions 'team_a', 'team_b' can no longer reach 1 done; "
        "1 still can"]
    assert "needs 'cost' stated again" in case.why_not("book", actor="office",
                                                       on="2024-01-04")[0]
    case.fire("book", actor="office", on="2024-01-04", data={"cost": 80})
    assert case.state == frozenset({"booked"}) and store.verify().ok


def test_a_region_outside_the_quorum_that_withdrew_holds_back_the_join(store) -> None:
    """With only team B in the quorum, team A leaving is a region not done that the join
    needs: 'book' is refused though B is done, and nothing else is allowed."""
    text = GENERIC.replace('quorum = { regions = ["team_a", "team_b"], at_least = 1 }',
                           'quorum = { regions = ["team_b"], at_least = 1 }')
    case = store.create_case(af.loads_workflow(text, source="club-outing.toml"), "outing-3",
                             actor="office", on="2024-01-01", data={"cost": 100})
    case.fire("a.leave", actor="a", on="2024-01-02")
    case.fire("b.join", actor="b1", on="2024-01-03")
    case.fire("b.join", actor="b2", on="2024-01-03")
    assert case.why_not("book", actor="office", on="2024-01-04", data={"cost": 80}) == [
        "region 'team_a' (team_a) ended without being done; it is needed before 'book'"]
    with pytest.raises(af.TransitionRefusedError, match="ended without being done"):
        case.fire("book", actor="office", on="2024-01-04", data={"cost": 80})
    assert case.allowed(on="2024-01-04") == [] and store.verify().ok


def test_everyone_withdrawn_is_its_own_outcome(store, outing) -> None:
    """Both B members withdraw: B is 'b_out', never 'b_in'; with A out too, only cancel is left."""
    case = store.create_case(outing, "outing-2", actor="office", on="2024-01-01")
    case.fire("b.leave", actor="b1", on="2024-01-02")
    assert "b_voting" in case.state
    case.fire("b.leave", actor="b2", on="2024-01-02")
    assert "b_out" in case.state and "b_in" not in case.state
    case.fire("a.leave", actor="a", on="2024-01-03")
    assert case.allowed(on="2024-01-03") == ["cancel"]
    case.fire("cancel", actor="office", on="2024-01-03")
    assert case.is_final and store.verify().ok


def test_every_problem_with_the_new_keys_is_reported_at_once() -> None:
    """done, covers, quorum, withdrawn, sets, restate and quorum_lost are checked together."""
    broken = (GENERIC
              .replace('done = ["a_in"]', 'done = ["a_in", "a_open"]')
              .replace('covers = ["a"]', 'covers = ["a", "zed"]')
              .replace('at_least = 1 }', 'at_least = 3 }')
              .replace('withdrawn = "b_out"', 'withdrawn = "b_in"')
              .replace('quorum_lost = true', 'quorum_lost = true\njoin = true'))
    with pytest.raises(af.DefinitionError) as info:
        af.loads_workflow(broken, source="broken.toml")
    text = "\n".join(info.value.problems)
    assert "[states.team_a].done ['a_open'] are not final states of region 'team_a'" in text
    assert "[states.team_a].covers ['zed'] are not actors" in text
    assert "[states.planning].quorum.at_least is 3" in text
    assert len(info.value.problems) >= 4
    second = GENERIC.replace('withdrawn = "b_out"', 'withdrawn = "b_in"').replace(
        'quorum_lost = true', 'quorum_lost = true\njoin = true')
    with pytest.raises(af.DefinitionError) as info:
        af.loads_workflow(second, source="second.toml")
    text = "\n".join(info.value.problems)
    assert "[votes.b].withdrawn 'b_in' would count as done" in text
    assert "quorum_lost and join exclude each other" in text


def test_a_malformed_data_key_is_refused() -> None:
    """A 'sets' entry that is not a key or a dotted path of keys is refused, the value named."""
    broken = GENERIC.replace('sets = ["cost"]\nrestate', 'sets = ["cost..x"]\nrestate')
    with pytest.raises(af.DefinitionError, match="'cost..x' is not a data key"):
        af.loads_workflow(broken, source="broken.toml")


def test_restating_a_key_no_step_may_set_is_refused() -> None:
    """restate_after_withdrawal naming a key no step may set could never be met: refused."""
    broken = GENERIC.replace('restate_after_withdrawal = ["cost"]',
                             'restate_after_withdrawal = ["budget"]')
    with pytest.raises(af.DefinitionError, match="names 'budget', but no step may set it"):
        af.loads_workflow(broken, source="broken.toml")


def test_quorum_lost_needs_a_parallel_state_with_a_quorum() -> None:
    """A quorum_lost step from a state without a quorum is refused when the file loads."""
    broken = GENERIC.replace('quorum = { regions = ["team_a", "team_b"], at_least = 1 }\n', "")
    with pytest.raises(af.DefinitionError, match="'planning' is not a parallel state with a"):
        af.loads_workflow(broken, source="broken.toml")


def _rewrite_data(path: Path, case_id: str, seq: int, data: dict[str, object]) -> None:
    """Rewrite one event's data and rebuild the chain after it, as an attacker could."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("DROP TRIGGER events_no_update")
    rows = [dict(r) for r in conn.execute("SELECT * FROM events WHERE case_id = ? ORDER BY seq",
                                          (case_id,))]
    rows[seq - 1]["data"] = json.dumps(data, sort_keys=True, separators=(",", ":"))
    prev = rows[seq - 2]["hash"]
    for row in rows[seq - 1:]:
        row["prev_hash"] = prev
        row["hash"] = prev = event_hash(row)
        conn.execute("UPDATE events SET data = ?, prev_hash = ?, hash = ? "
                     "WHERE case_id = ? AND seq = ?",
                     (row["data"], row["prev_hash"], row["hash"], case_id, row["seq"]))
    conn.execute("UPDATE cases SET head_hash = ? WHERE case_id = ?", (rows[-1]["hash"], case_id))
    conn.close()


def test_verify_names_a_step_that_set_data_it_may_not(db_path: Path, flagship,
                                                      seed_data) -> None:
    """A residents' vote rewritten to carry a budget is named by verify, chain or no chain."""
    with af.open_store(db_path) as store:
        case = store.create_case(flagship, "example-plan", actor="tmf", on="2021-11-01",
                                 data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-01")
        case.fire("aab.approve", actor="aab", on="2021-11-02")
    _rewrite_data(db_path, "example-plan", 3, {"budget": {"earmarked": 9}})
    with af.open_store(db_path) as store:
        problems = store.verify().problems
    assert "case 'example-plan' event 3: 'aab.approve' by 'aab' on 2021-11-02 breaks the " \
           "rule 'data': 'aab.approve' may not set the data 'budget.earmarked'; it may set: " \
           "none" in problems


def test_verify_names_a_send_to_lbf_without_the_restated_budget(db_path: Path, flagship,
                                                                seed_data) -> None:
    """After a withdrawal, a send_to_lbf whose re-stated budget was removed is named."""
    budget = {"total": 4_000_000, "lbf": 3_000_000, "municipality": 500_000,
              "housing": 500_000}
    with af.open_store(db_path) as store:
        case = store.create_case(flagship, "example-plan", actor="tmf", on="2021-11-01",
                                 data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-01")
        case.fire("aab.reject", actor="aab", on="2021-11-02")
        case.fire("aab.withdraw", actor="aab_board", on="2021-11-03")
        case.fire("tmu.approve", actor="tmu", on="2021-12-06")
        case.fire("3b.approve", actor="3b", on="2021-12-06")
        for n in range(1, 5):
            case.fire("vibo.approve", actor=f"vibo_afd_{n}", on="2022-01-10")
        case.fire("send_to_lbf", actor="tmf", on="2022-01-11", data={"budget": budget})
        seq = case.version
        assert store.verify().ok
    _rewrite_data(db_path, "example-plan", seq, {})
    with af.open_store(db_path) as store:
        problems = store.verify().problems
    assert any(p.startswith(f"case 'example-plan' event {seq}: 'send_to_lbf' by 'tmf' on "
                            f"2022-01-11 breaks the rule 'data': a party withdrew (event 4)")
               for p in problems), problems


def test_a_sibling_region_that_leaves_the_whole_is_a_way_out() -> None:
    """A final state in one region is not stuck when a step in a sibling region leaves the
    parallel state; with no such step, it is refused as before."""
    text = GENERIC.replace('[[transitions]]\ntrigger = "cancel"', '''[[transitions]]
trigger = "a.abort"
source = "a_open"
target = "cancelled"
actors = ["a"]

[[transitions]]
trigger = "cancel"''')
    af.loads_workflow(text, source="with-abort.toml")
    stuck = GENERIC.replace('[states.planning]\nparallel = true', '[states.outer]\ninitial = '
                            '"planning"\n\n[states.planning]\nparent = "outer"\nparallel = true')
    stuck = stuck.replace('initial = "planning"\ncreation_sets', 'initial = "outer"\n'
                          'creation_sets')
    stuck = stuck.replace('target = "booked"', 'target = "planning"').replace(
        'target = "cancelled"', 'target = "planning"')
    with pytest.raises(af.DefinitionError, match="no chain of steps leads to a final"):
        af.loads_workflow(stuck, source="stuck.toml")


def test_show_and_html_say_a_withdrawn_region_is_not_done(store, flagship, seed_data) -> None:
    """A department that withdrew is shown as ended without taking part, never as done."""
    from approvalflow.views.html import case_html
    from approvalflow.views.summary import case_summary, summary_text

    case = store.create_case(flagship, "example-plan", actor="tmf", on="2021-11-01",
                             data=seed_data)
    case.fire("submit", actor="tmf", on="2021-11-01")
    case.fire("aab.reject", actor="aab", on="2021-11-02")
    case.fire("aab.withdraw", actor="aab_board", on="2021-11-03")
    doc = case_summary(case, on=case.last_on)
    aab = next(r for r in doc["regions"] if r["id"] == "aab")
    assert (aab["done"], aab["outcome"]) == (False, "not done")
    assert "ended without taking part (not done)" in " ".join(summary_text(doc).split())
    assert doc["coverage"]["aab"] == {"in": [], "left": ["aab"]}
    assert "ended without taking part (withdrawn)" in case_html(case)
