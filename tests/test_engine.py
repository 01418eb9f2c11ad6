"""The engine's decisions: who may fire what, the join, vote groups, guards, dates."""

from __future__ import annotations

import datetime as dt

import pytest

import approvalflow as af
from approvalflow.engine import engine_for
from approvalflow.guards import unregister_guard
from tests.conftest import approve_all
from tests.test_definition import PARALLEL, load


def test_engine_is_built_once_per_workflow(store, flagship, seed_data) -> None:
    """Many cases share one engine and one transitions model: nothing grows per case."""
    engine = engine_for(flagship)
    for n in range(20):
        case = store.create_case(flagship, f"c{n}", actor="tmf", on="2021-11-01", data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-01")
    assert engine_for(af.load_workflow("boligsocial-helhedsplan")) is engine
    assert len(engine._machine.models) == 1


def test_allowed_why_not_and_fire_agree(submitted) -> None:
    """allowed lists a trigger exactly when why_not is empty, and fire obeys the same answer."""
    case = submitted
    wf = case.definition
    on = "2021-11-02"
    for actor in sorted(wf.actors):
        allowed = set(case.allowed(actor=actor, on=on))
        for trigger in sorted(wf.triggers):
            reasons = case.why_not(trigger, actor=actor, on=on)
            assert (trigger in allowed) == (reasons == []), (actor, trigger, reasons)
    version = case.version
    with pytest.raises(af.TransitionRefusedError) as info:
        case.fire("lbf.approve", actor="lbf", on=on)
    assert info.value.reasons == case.why_not("lbf.approve", actor="lbf", on=on)
    assert case.version == version


def test_why_not_lists_every_reason(submitted) -> None:
    """A wrong actor, a wrong state and a date going backwards are all reported together."""
    reasons = submitted.why_not("start", actor="aab", on="2021-01-01")
    assert len(reasons) == 3
    assert any("'start' can't be taken while the case is in" in r for r in reasons)
    assert any("'aab' may not take 'start'; only 'tmf' may" in r for r in reasons)
    assert any("dates may not go backwards" in r for r in reasons)


def test_unknown_trigger_and_actor(submitted) -> None:
    """Unknown triggers and actors are named, with what exists."""
    [reason] = submitted.why_not("tmu.celebrate", actor="tmu", on="2021-11-02")
    assert "'tmu.celebrate' is not a step" in reason and "'tmu.approve'" in reason
    reasons = submitted.why_not("tmu.approve", actor="mayor", on="2021-11-02")
    assert any("'mayor' is not an actor" in r for r in reasons)


def test_join_waits_for_every_region(submitted) -> None:
    """send_to_lbf is refused until every region is done, naming the regions still waiting."""
    case = submitted
    case.fire("tmu.approve", actor="tmu", on="2021-12-06")
    [reason] = case.why_not("send_to_lbf", actor="tmf", on="2021-12-06")
    assert "waiting for" in reason
    for region in ("'aab'", "'3b'", "'vibo'"):
        assert region in reason
    assert "'committee'" not in reason
    case.fire("aab.approve", actor="aab", on="2021-12-06")
    case.fire("3b.approve", actor="3b", on="2021-12-06")
    assert "'vibo'" in case.why_not("send_to_lbf", actor="tmf", on="2021-12-06")[0]
    for n in range(1, 5):
        case.fire("vibo.approve", actor=f"vibo_afd_{n}", on="2022-01-20")
    assert case.why_not("send_to_lbf", actor="tmf", on="2022-01-20") == []


def test_one_party_never_moves_another_region(submitted) -> None:
    """Each approval moves only its own region's state."""
    case = submitted
    before = set(case.state)
    event = case.fire("3b.approve", actor="3b", on="2021-11-20")
    assert event.source - event.target == {"3b_pending"}
    assert event.target - event.source == {"3b_approved"}
    assert set(case.state) == (before - {"3b_pending"}) | {"3b_approved"}


def test_vote_group_needs_every_department(submitted) -> None:
    """VIBO's region moves only when the last department votes yes; each ballot is an event."""
    case = submitted
    events = [case.fire("vibo.approve", actor=f"vibo_afd_{n}", on="2022-01-10")
              for n in range(1, 5)]
    assert [e.moved for e in events] == [False, False, False, True]
    assert "vibo_approved" in case.state
    assert case.ballots() == {}  # the vote is over: its round is closed


def test_a_voter_votes_once(submitted) -> None:
    """A department that has voted can't vote again, neither yes nor no."""
    case = submitted
    case.fire("vibo.approve", actor="vibo_afd_1", on="2022-01-10")
    assert case.ballots() == {"vibo": {"vibo_afd_1": "yes"}}
    for trigger in ("vibo.approve", "vibo.reject"):
        reasons = case.why_not(trigger, actor="vibo_afd_1", on="2022-01-11")
        assert reasons == ["'vibo_afd_1' has already voted 'yes' in the vote 'vibo'; "
                           "each voter votes once"]


def test_a_no_under_need_all_rejects_at_once(submitted) -> None:
    """With need = all, one no makes approval impossible, so the region moves to rejected."""
    case = submitted
    case.fire("vibo.approve", actor="vibo_afd_1", on="2022-01-10")
    event = case.fire("vibo.reject", actor="vibo_afd_2", on="2022-01-11")
    assert event.moved and "vibo_rejected" in case.state


def test_vote_again_starts_a_new_round(submitted) -> None:
    """After a no and vote_again, every department votes anew."""
    case = submitted
    case.fire("vibo.approve", actor="vibo_afd_1", on="2022-01-10")
    case.fire("vibo.reject", actor="vibo_afd_2", on="2022-01-11")
    case.fire("vibo.vote_again", actor="vibo_board", on="2022-01-20")
    assert "vibo_voting" in case.state and case.ballots() == {}
    assert case.why_not("vibo.approve", actor="vibo_afd_1", on="2022-01-21") == []


def test_withdrawal_shrinks_the_electorate(submitted) -> None:
    """A department that withdraws no longer counts; the others decide VIBO's vote."""
    case = submitted
    for n in (1, 2, 3):
        case.fire("vibo.approve", actor=f"vibo_afd_{n}", on="2022-01-10")
    event = case.fire("vibo.withdraw", actor="vibo_afd_4", on="2022-01-12")
    assert event.moved and "vibo_approved" in case.state
    assert case.withdrawn() == {"vibo": frozenset({"vibo_afd_4"})}


def test_k_of_n_vote() -> None:
    """With need = 2 of 3, two yes-votes pass; two no-votes make passing impossible."""
    wf = load(PARALLEL)
    with af.open_store(":memory:") as store:
        case = store.create_case(wf, "yes", actor="x", on="2024-01-01")
        case.fire("begin", actor="x", on="2024-01-01")
        assert not case.fire("right.yes", actor="v1", on="2024-01-02").moved
        assert case.fire("right.yes", actor="v3", on="2024-01-02").moved
        assert "r2" in case.state
        other = store.create_case(wf, "no", actor="x", on="2024-01-01")
        other.fire("begin", actor="x", on="2024-01-01")
        assert not other.fire("right.no", actor="v1", on="2024-01-02").moved
        assert other.fire("right.no", actor="v2", on="2024-01-02").moved
        assert other.state == frozenset({"stopped"}) and other.is_final


def test_exit_from_a_region_leaves_the_whole_parallel_state(submitted) -> None:
    """TMU sending the plan back ends every region's progress; resubmitting starts them anew."""
    case = submitted
    case.fire("aab.approve", actor="aab", on="2021-11-10")
    case.fire("tmu.send_back", actor="tmu", on="2021-12-06")
    assert case.state == frozenset({"revision", "old_running"})
    case.fire("resubmit", actor="tmf", on="2022-01-05")
    assert "aab_pending" in case.state and "tmu_pending" in case.state


def test_guard_reasons_and_data_merging(store, flagship, seed_data) -> None:
    """The financing guard lists every broken rule; data given with the step is seen by guards."""
    bad = dict(seed_data, budget={"total": 4_000_000, "lbf": 3_500_000, "municipality": 400_000,
                                  "housing": 100_000, "earmarked": 300_000})
    case = store.create_case(flagship, "bad-budget", actor="tmf", on="2021-11-01", data=bad)
    case.fire("submit", actor="tmf", on="2021-11-01")
    approve_all(case)
    reasons = case.why_not("send_to_lbf", actor="tmf", on="2022-02-01")
    assert any("more than 75 %" in r for r in reasons)
    assert any("less than 25 %" in r for r in reasons)
    assert any("more than the housing organisations' share" in r for r in reasons)
    assert any("more than the earmarked" in r for r in reasons)
    # the administration re-states the budget with the step; the earmark is not its to change
    fixed = {"budget": {"total": 4_000_000, "lbf": 3_000_000, "municipality": 300_000,
                        "housing": 700_000}}
    assert case.why_not("send_to_lbf", actor="tmf", on="2022-02-01", data=fixed) == []
    case.fire("send_to_lbf", actor="tmf", on="2022-02-01", data=fixed)
    assert case.data["budget"] == {**fixed["budget"], "earmarked": 300_000}
    assert store.case("bad-budget").data["budget"] == case.data["budget"]


def test_a_failing_guard_refuses_instead_of_crashing() -> None:
    """A guard that raises refuses the step with its error as the reason."""

    @af.guard("explodes")
    def explodes(ctx: af.GuardContext) -> bool:
        raise RuntimeError("boom")

    try:
        wf = load(PARALLEL.replace('actors = ["x"]\n\n[[transitions]]\ntrigger = "left.ok"',
                                   'actors = ["x"]\nguards = ["explodes"]\n\n[[transitions]]\n'
                                   'trigger = "left.ok"'))
        with af.open_store(":memory:") as store:
            case = store.create_case(wf, "c", actor="x", on="2024-01-01")
            assert case.why_not("begin", actor="x", on="2024-01-01") == [
                "guard 'explodes' failed with RuntimeError: boom"]
    finally:
        unregister_guard("explodes")


def test_date_may_not_go_backwards(submitted) -> None:
    """A step dated before the case's last event is refused; the same day is fine."""
    case = submitted
    with pytest.raises(af.TransitionRefusedError, match="dates may not go backwards"):
        case.fire("tmu.approve", actor="tmu", on="2021-10-31")
    case.fire("tmu.approve", actor="tmu", on="2021-11-01")
    assert case.last_on == dt.date(2021, 11, 1)


def test_an_earlier_date_is_refused_right_after_the_same_step_was_allowed(store) -> None:
    """A step allowed on the last event's date is still refused dated the day before, on a
    workflow without timed steps, where decisions are remembered by state, step and actor."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    assert not engine_for(wf).timed  # (on a timed one no decision dated apart is remembered)
    case = store.create_case(wf, "rest", actor="tmf", on="2022-01-10", data={"amount": 600_000})
    assert case.why_not("withdraw", actor="tmf", on="2022-01-10") == []
    with pytest.raises(af.TransitionRefusedError, match="dates may not go backwards"):
        case.fire("withdraw", actor="tmf", on="2022-01-09")
    assert case.version == 1


def test_final_state_allows_nothing(store) -> None:
    """A case in a final state allows no step and says it has ended."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    case = store.create_case(wf, "rest", actor="tmf", on="2022-01-10", data={"amount": 600_000})
    case.fire("withdraw", actor="tmf", on="2022-01-11")
    assert case.is_final and case.allowed() == []
    [reason] = case.why_not("propose", actor="tmf", on="2022-01-12")
    assert "has ended in final state 'withdrawn'" in reason


def test_awaiting_names_actors_and_their_steps(submitted) -> None:
    """awaiting() maps each actor who may act now to the triggers open to them."""
    awaiting = submitted.awaiting(on="2021-11-02")
    assert awaiting["tmu"] == ["tmu.approve", "tmu.reject", "tmu.send_back"]
    assert awaiting["aab"] == ["aab.approve", "aab.reject"]
    assert "lbf" not in awaiting
    regions = {r.id: r for r in submitted.regions(on="2021-11-02")}
    assert set(regions) == {"committee", "aab", "3b", "vibo", "old_plan"}
    assert regions["vibo"].awaiting["vibo_afd_1"] == ("vibo.approve", "vibo.reject",
                                                      "vibo.withdraw")


def test_entered_by_names_who_decided(submitted) -> None:
    """entered_by() maps each active leaf to the event that put the case there."""
    submitted.fire("tmu.approve", actor="tmu", on="2021-12-06")
    entered = submitted.entered_by()
    assert entered["tmu_approved"].actor == "tmu" and entered["tmu_approved"].seq == 3
    assert entered["aab_pending"].trigger == "submit"


def test_the_last_voter_withdrawing_leaves_the_vote_withdrawn(submitted) -> None:
    """An empty vote never passes: the flagship's vote names its 'withdrawn' state instead."""
TWO_OF_THREE = """
[workflow]
name = "two-of-three"
version = 1
initial = "voting"
[actors]
a = "A"
b = "B"
c = "C"
[states.voting]
[states.passed]
final = true
[states.failed]
final = true
[votes.v]
state = "voting"
voters = ["a", "b", "c"]
need = 2
[[transitions]]
trigger = "yes"
source = "voting"
target = "passed"
vote = "v"
[[transitions]]
trigger = "no"
source = "voting"
target = "failed"
vote = "v"
ballot = "no"
[[transitions]]
trigger = "out"
source = "voting"
target = "passed"
vote = "v"
ballot = "withdraw"
"""


def test_a_withdrawal_may_not_leave_a_vote_that_no_one_can_pass(store) -> None:
    """Two yes of three needed, one has said no: a second voter's withdrawal would leave one
    voter who can still say yes, and a case stranded in the vote; it is refused."""
    case = store.create_case(af.loads_workflow(TWO_OF_THREE), "x", actor="a", on="2022-01-01")
    case.fire("no", actor="a", on="2022-01-01")
    assert case.state == {"voting"}  # yes from b and c could still pass it
    [reason] = case.why_not("out", actor="b", on="2022-01-01")
    assert reason == ("'b' can't withdraw from the vote 'v': it would leave 1 voter(s) who can "
                      "still vote yes where 2 yes-vote(s) are needed; vote no instead")
    case.fire("yes", actor="b", on="2022-01-01")
    case.fire("yes", actor="c", on="2022-01-01")
    assert case.state == {"passed"}


def test_the_last_voter_cannot_withdraw(submitted) -> None:
    """Withdrawing may not leave an empty vote (which would pass with no yes): vote no instead."""
    case = submitted
    for n in (1, 2, 3):
        case.fire("vibo.withdraw", actor=f"vibo_afd_{n}", on="2021-11-03")
    assert case.why_not("vibo.withdraw", actor="vibo_afd_4", on="2021-11-03") == []
    case.fire("vibo.withdraw", actor="vibo_afd_4", on="2021-11-04")
    assert "vibo_withdrawn" in case.state and "vibo_approved" not in case.state


def test_the_last_voter_cannot_withdraw_without_a_withdrawn_state(submitted) -> None:
    """Without a vote's 'withdrawn' state, the last voter can't withdraw: vote no instead."""
    text = submitted.definition.source_text.replace('withdrawn = "vibo_withdrawn"\n', "")
    wf = af.loads_workflow(text.replace("version = 3", "version = 4", 1), source="x.toml")
    case = submitted._store.create_case(wf, "other", actor="tmf", on="2021-11-01")
    case.fire("submit", actor="tmf", on="2021-11-01")
    for n in (1, 2, 3):
        case.fire("vibo.withdraw", actor=f"vibo_afd_{n}", on="2021-11-03")
    [reason] = case.why_not("vibo.withdraw", actor="vibo_afd_4", on="2021-11-03")
    assert "can't withdraw from the vote 'vibo'" in reason and "vote no instead" in reason
    assert "vibo.withdraw" not in case.allowed(actor="vibo_afd_4", on="2021-11-03")
    case.fire("vibo.reject", actor="vibo_afd_4", on="2021-11-04")
    assert "vibo_rejected" in case.state
    case.fire("vibo.withdraw_all", actor="vibo_board", on="2021-11-05")
    assert "vibo_withdrawn" in case.state


def test_a_withdrawal_may_not_make_a_k_of_n_vote_impossible() -> None:
    """With need = 2 of 3, after one withdrawal a second is refused: 1 voter can't give 2 yes."""
    text = PARALLEL.replace('[[transitions]]\ntrigger = "right.no"', '''[[transitions]]
trigger = "right.leave"
source = "r1"
target = "r2"
vote = "panel"
ballot = "withdraw"

[[transitions]]
trigger = "right.no"''')
    wf = load(text)
    with af.open_store(":memory:") as store:
        case = store.create_case(wf, "c", actor="x", on="2024-01-01")
        case.fire("begin", actor="x", on="2024-01-01")
        assert not case.fire("right.leave", actor="v1", on="2024-01-02").moved
        [reason] = case.why_not("right.leave", actor="v2", on="2024-01-02")
        assert "leave 1 voter(s) who can still vote yes where 2 yes-vote(s) are needed" in reason


def test_a_guard_returning_none_refuses() -> None:
    """A guard that forgot its return value refuses the step rather than letting it through."""
    from approvalflow.guards import GuardContext, run_guard

    ctx = GuardContext(case_id="c", trigger="t", actor="a", on=dt.date(2024, 1, 1), data={},
                       state=frozenset(), workflow="w")
    [reason] = run_guard("forgetful", lambda c: None, ctx)
    assert "returned None" in reason
    assert run_guard("fine", lambda c: True, ctx) == []
    assert run_guard("listed", lambda c: [], ctx) == []


def test_a_guard_answer_that_says_nothing_still_refuses_with_a_reason() -> None:
    """An empty string, bytes, or a generator of reasons that fails part-way each refuse
    with a reason that names the guard, never an empty one and never an exception."""
    from approvalflow.guards import GuardContext, run_guard

    ctx = GuardContext(case_id="c", trigger="t", actor="a", on=dt.date(2024, 1, 1), data={},
                       state=frozenset(), workflow="w")

    def failing(c: GuardContext):  # type: ignore[no-untyped-def]
        yield "first"
        raise KeyError("budget")

    assert run_guard("quiet", lambda c: "", ctx) == [
        "guard 'quiet' does not hold (it gave an empty reason)"]
    assert run_guard("quiet", lambda c: ["", "too late"], ctx) == [
        "guard 'quiet' does not hold (it gave an empty reason)", "too late"]
    [bytes_reason] = run_guard("raw", lambda c: b"", ctx)
    assert "returned b''" in bytes_reason
    [failed] = run_guard("gen", failing, ctx)
    assert failed == "guard 'gen' failed with KeyError: 'budget'"


def test_a_guard_that_changes_its_data_changes_no_case() -> None:
    """A guard that writes into the data it is given (it should not) changes neither the
    case's data nor, in an import, other cases that share a state with it: what was
    decided is what is stored, and verify agrees."""

    @af.guard("meddles")
    def meddles(ctx: af.GuardContext) -> bool:
        ctx.data["budget"]["total"] = 0  # type: ignore[index]
        ctx.data["tags"].append("meddled")  # type: ignore[union-attr]
        ctx.data["new"] = 1  # type: ignore[index]
        return True

    data = {"budget": {"total": 5}, "tags": ["a"]}
    try:
        wf = load(PARALLEL.replace('actors = ["x"]\n\n[[transitions]]\ntrigger = "left.ok"',
                                   'actors = ["x"]\nguards = ["meddles"]\n\n[[transitions]]\n'
                                   'trigger = "left.ok"'))
        with af.open_store(":memory:") as store:
            case = store.create_case(wf, "c", actor="x", on="2024-01-01", data=data)
            case.fire("begin", actor="x", on="2024-01-01")
            assert case.data == data and store.case("c").data == data
            store.import_events([
                {"case_id": f"i{n}", "trigger": t, "workflow": wf, "actor": "x",
                 "on": "2024-01-01", "data": data if t == "create" else None}
                for n in range(2) for t in ("create", "begin")])
            assert [store.case(f"i{n}").data for n in range(2)] == [data, data]
            assert store.verify().ok
    finally:
        unregister_guard("meddles")


def test_a_guard_name_is_not_silently_taken_over() -> None:
    """Registering a different function under a taken guard name is an error."""

    @af.guard("only_once")
    def first(ctx: af.GuardContext) -> bool:
        return True

    try:
        with pytest.raises(af.ApprovalflowError, match="already registered"):

            @af.guard("only_once")
            def second(ctx: af.GuardContext) -> bool:
                return False

        af.guard("only_once")(first)  # the same function again is fine (a reloaded module)
    finally:
        unregister_guard("only_once")


def test_steps_lists_every_way_out_allowed_or_not(submitted) -> None:
    """steps() names every trigger leaving the current states; transition() gives its definition."""
    steps = submitted.steps()
    assert {"tmu.approve", "aab.reject", "vibo.withdraw", "send_to_lbf"} <= set(steps)
    assert "lbf.approve" not in steps
    assert submitted.transition("send_to_lbf").join is True
    assert submitted.transition("lbf.approve") is None
