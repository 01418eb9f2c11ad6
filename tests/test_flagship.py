"""The flagship workflow walked through the paths the domain allows.

These cases use invented dates on a fictional case id ("example-plan"): the case named
``mimerskvarteret`` (the demo) carries only the seed's facts.
"""

from __future__ import annotations

import pytest

import approvalflow as af
from tests.conftest import approve_all

pytestmark = pytest.mark.backends

OLD = "old_running"  # the old plan's region: running until the expiry is recorded


def test_the_seed_story_to_the_start_on_1_march_2022(store, submitted) -> None:
    """AAB, 3B, TMU and VIBO approve, LBF approves in its final treatment, the start is 1 March."""
    case = submitted
    case.fire("aab.approve", actor="aab", on="2021-11-05")
    case.fire("3b.approve", actor="3b", on="2021-11-25")
    case.fire("tmu.approve", actor="tmu", on="2021-12-06")
    for n in range(1, 5):
        case.fire("vibo.approve", actor=f"vibo_afd_{n}", on="2022-01-27")
    case.fire("send_to_lbf", actor="tmf", on="2022-01-31")
    assert case.state == frozenset({"lbf_review", OLD})
    assert case.allowed(actor="lbf", on="2022-02-15") == ["lbf.approve", "lbf.refuse",
                                                          "lbf.send_back"]
    case.fire("lbf.approve", actor="lbf", on="2022-02-15")
    assert case.why_not("start", actor="tmf", on="2022-02-28") == [
        "the planned start 2022-03-01 has not come yet (the step is dated 2022-02-28)"]
    assert store.tick(on="2022-03-01").taken[0].trigger == "old_plan_expires"  # the clock
    case = store.case(case.id)
    case.fire("start", actor="tmf", on="2022-03-01")
    assert case.state == frozenset({"started"}) and case.is_final
    assert store.verify().ok
    as_of_tmu = store.case(case.id, as_of="2021-12-06")
    assert {"tmu_approved", "aab_approved", "3b_approved", "vibo_voting", OLD} == \
        as_of_tmu.state


def test_expiry_takes_the_case_into_the_gap_from_lbf_treatment(store, submitted) -> None:
    """Without LBF's approval when the old plan expires, the clock takes the case into the
    gap on the expiry date by itself (a tick); LBF goes on."""
    case = submitted
    approve_all(case, on="2022-01-31")
    case.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    assert "'old_plan_expires' is not due before 2022-02-28 (data:expires); 2022-02-27 is " \
           "too early" in case.why_not("old_plan_expires", actor="clock", on="2022-02-27")
    assert "only 'clock' may" in case.why_not("old_plan_expires", actor="tmf",
                                              on="2022-02-28")[0]
    assert [(s.trigger, s.on.isoformat()) for s in store.tick(on="2022-04-20").taken] == [
        ("old_plan_expires", "2022-02-28")]
    case = store.case(case.id)
    assert case.state == frozenset({"lbf_review", "old_expired"})
    case.fire("lbf.approve", actor="lbf", on="2022-04-20")
    case.fire("start", actor="tmf", on="2022-05-01")
    assert case.is_final


@pytest.mark.parametrize("steps", [[], ["tmu.approve"], ["aab.reject"]])
def test_expiry_takes_the_case_into_the_gap_from_any_state_of_the_approval(
        store, flagship, seed_data, steps: list[str]) -> None:
    """The clock takes the expiry in the draft and anywhere in the approval, keeping the
    new plan's state."""
    case = store.create_case(flagship, "example-plan", actor="tmf", on="2021-11-01",
                             data=seed_data)
    if steps:
        case.fire("submit", actor="tmf", on="2021-11-01")
        for step in steps:
            case.fire(step, actor=step.split(".")[0], on="2021-12-06")
    before = case.state
    store.tick(on="2022-03-03")
    case = store.case(case.id)
    assert case.history[-1].actor == "clock" and case.history[-1].on.isoformat() == \
        "2022-02-28"
    assert case.state == (before - {OLD}) | {"old_expired"}
    assert "lbf_approved" not in case.state and not case.is_final
    assert case._store.verify().ok


def test_expiry_is_no_step_in_revision_once_recorded(submitted) -> None:
    """The old plan expires once: a second expiry is refused, in revision as elsewhere."""
    submitted.fire("tmu.send_back", actor="tmu", on="2021-12-06")
    submitted.fire("old_plan_expires", actor="clock", on="2022-02-28")
    assert submitted.state == frozenset({"revision", "old_expired"})
    assert "can't be taken" in submitted.why_not("old_plan_expires", actor="clock",
                                                 on="2022-03-01")[0]


def test_section_37_override_after_a_no(submitted) -> None:
    """A residents' no can be overridden by the organisation's supreme authority (§ 37)."""
    case = submitted
    case.fire("3b.reject", actor="3b", on="2021-11-25")
    assert "3b_rejected" in case.state
    assert "3b.override" not in case.allowed(actor="3b", on="2021-11-26")
    assert "3b.override" not in case.allowed(actor="3b_board", on="2021-11-26")
    case.fire("3b.override", actor="3b_authority", on="2021-12-01")
    assert "øverste myndighed" in case.definition.actors["3b_authority"]
    override = case.definition.transitions_for("3b.override")[0]
    assert "øverste myndighed" in override.label and "trods afdelingens nej" in override.label
    assert "stk. 5 er ikke modelleret" in override.label
    assert "3b_approved" in case.state


def test_department_withdraws_and_the_rest_go_on(submitted) -> None:
    """An organisation whose residents said no may withdraw its department; the join accepts it."""
    case = submitted
    case.fire("aab.reject", actor="aab", on="2021-11-10")
    case.fire("aab.withdraw", actor="aab_board", on="2021-11-20")
    case.fire("tmu.approve", actor="tmu", on="2021-12-06")
    case.fire("3b.approve", actor="3b", on="2021-12-06")
    for n in range(1, 5):
        case.fire("vibo.approve", actor=f"vibo_afd_{n}", on="2022-01-20")
    assert "aab_withdrawn" in case.state
    assert case.coverage()["aab"] == ((), ("aab",))
    assert case.coverage()["3b"] == (("3b",), ())
    assert case.region_outcome("aab") == "not done"
    # the plan's basis changed: the administration must state the budget again
    reasons = case.why_not("send_to_lbf", actor="tmf", on="2022-01-21")
    assert len(reasons) == 1 and "needs 'budget' stated again" in reasons[0]
    budget = {"total": 3_400_000, "lbf": 2_550_000, "municipality": 425_000,
              "housing": 425_000}
    case.fire("send_to_lbf", actor="tmf", on="2022-01-21", data={"budget": budget})
    assert case.data["budget"]["earmarked"] == 1_100_000
    assert case._store.verify().ok


def test_lbf_sends_back_and_everyone_approves_again(submitted) -> None:
    """LBF can send the plan back to revision; the revised plan needs every approval anew."""
    case = submitted
    approve_all(case, on="2022-01-31")
    case.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    case.fire("lbf.send_back", actor="lbf", on="2022-02-10", note="Budget must be specified.")
    assert case.state == frozenset({"revision", OLD})
    case.fire("resubmit", actor="tmf", on="2022-02-20")
    assert {"tmu_pending", "aab_pending", "3b_pending", "vibo_voting", OLD} == case.state
    assert case.ballots() == {}


def test_committee_rejection_is_final(submitted) -> None:
    """TMU's rejection ends the case."""
    submitted.fire("tmu.reject", actor="tmu", on="2021-12-06")
    assert submitted.is_final and submitted.allowed() == []


def test_lbf_refusal_is_final(submitted) -> None:
    """LBF's refusal ends the case."""
    approve_all(submitted)
    submitted.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    submitted.fire("lbf.refuse", actor="lbf", on="2022-02-20")
    assert "endelige behandling" in submitted.definition.label_of("refused")
    assert submitted.state == frozenset({"refused"}) and submitted.is_final


@pytest.mark.parametrize("actor", ["aab", "3b", "vibo_afd_1", "lbf", "tmf"])
def test_only_tmu_takes_the_committee_step(submitted, actor: str) -> None:
    """No one but TMU may approve for the committee."""
    with pytest.raises(af.TransitionRefusedError, match="only 'tmu' may"):
        submitted.fire("tmu.approve", actor=actor, on="2021-12-06")


def test_remainder_workflow_path(store) -> None:
    """The 0.6 mio. kr. remainder goes TMF -> TMU -> ØU (an assumption) -> BR."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    case = store.create_case(wf, "rest-0.6", actor="tmf", on="2022-01-10")
    assert "positive whole number" in case.why_not("propose", actor="tmf", on="2022-01-10")[0]
    case.fire("propose", actor="tmf", on="2022-01-10", data={"amount": 600_000})
    case.fire("tmu.recommend", actor="tmu", on="2022-02-07")
    assert case.allowed(on="2022-02-08") == ["oeu.statement"]
    case.fire("oeu.statement", actor="oeu", on="2022-02-22")
    case.fire("br.approve", actor="br", on="2022-03-03")
    assert case.state == frozenset({"approved"}) and case.is_final


def _withdraw_everyone(case: af.Case) -> None:
    """AAB and 3B say no and withdraw; every VIBO department withdraws."""
    for org in ("aab", "3b"):
        case.fire(f"{org}.reject", actor=org, on="2021-11-10")
    for org in ("aab", "3b"):
        case.fire(f"{org}.withdraw", actor=f"{org}_board", on="2021-11-20")
    assert case.withdrawn() == {}
    for n in range(1, 5):
        case.fire("vibo.withdraw", actor=f"vibo_afd_{n}", on="2021-11-25")


def test_all_withdraw_is_never_an_approval_and_the_case_ends(submitted) -> None:
    """With every department withdrawn, nothing goes to LBF; the case ends as no_departments."""
    case = submitted
    case.fire("tmu.approve", actor="tmu", on="2021-11-05")
    assert "no_departments_left" not in case.allowed(actor="tmf", on="2021-11-05")
    _withdraw_everyone(case)
    assert {"aab_withdrawn", "3b_withdrawn", "vibo_withdrawn"} <= case.state
    assert "vibo_approved" not in case.state
    assert case.withdrawn() == {"vibo": frozenset(f"vibo_afd_{n}" for n in range(1, 5))}
    assert all(case.region_outcome(r) == "not done" for r in ("aab", "3b", "vibo"))
    assert all(covered == () for covered, _ in case.coverage().values())
    budget = {"total": 4_000_000, "lbf": 3_000_000, "municipality": 500_000,
              "housing": 500_000}
    reasons = case.why_not("send_to_lbf", actor="tmf", on="2021-11-26",
                           data={"budget": budget})
    assert reasons == ["only 0 of the regions '3b', 'aab', 'vibo' ended done (the others "
                       "withdrew); 'send_to_lbf' needs at least 1"]
    assert "send_to_lbf" not in case.allowed(on="2021-11-26")
    case.fire("no_departments_left", actor="tmf", on="2021-11-26")
    assert case.state == frozenset({"no_departments"}) and case.is_final
    assert case._store.verify().ok


def test_the_last_vibo_department_withdrawing_is_vibo_withdrawn(submitted) -> None:
    """Three VIBO departments approve and one withdraws: approved; all four withdraw: withdrawn."""
    case = submitted
    for n in range(1, 4):
        case.fire("vibo.withdraw", actor=f"vibo_afd_{n}", on="2021-11-25")
    assert "vibo_voting" in case.state
    assert case.coverage()["vibo"] == (("vibo_afd_4",), ("vibo_afd_1", "vibo_afd_2",
                                                          "vibo_afd_3"))
    case.fire("vibo.withdraw", actor="vibo_afd_4", on="2021-11-26")
    assert "vibo_withdrawn" in case.state and case.region_outcome("vibo") == "not done"


def test_a_vote_everyone_left_stays_withdrawn_after_a_revision(submitted, store) -> None:
    """All four VIBO departments withdraw, TMU sends the plan back and it is resubmitted:
    VIBO's vote does not restart with nobody left to vote (the case would be stuck), it
    ends as it ended before, and the rest can go on."""
    case = submitted
    for n in range(1, 5):
        case.fire("vibo.withdraw", actor=f"vibo_afd_{n}", on="2021-11-25")
    case.fire("tmu.send_back", actor="tmu", on="2021-12-06")
    case.fire("resubmit", actor="tmf", on="2021-12-10")
    assert "vibo_withdrawn" in case.state and "vibo_voting" not in case.state
    case.fire("tmu.approve", actor="tmu", on="2021-12-13")
    case.fire("aab.approve", actor="aab", on="2021-12-13")
    case.fire("3b.approve", actor="3b", on="2021-12-13")
    assert "send_to_lbf" in case.steps() and store.verify().ok


def test_a_residents_vote_may_not_change_the_budget(submitted) -> None:
    """aab.approve carrying a budget is refused with the key named; the case is unchanged."""
    before = submitted.data["budget"]
    with pytest.raises(af.TransitionRefusedError) as info:
        submitted.fire("aab.approve", actor="aab", on="2021-11-05",
                       data={"budget": {"lbf": 3_500_000, "earmarked": 9_000_000}})
    assert info.value.reasons == ["'aab.approve' may not set the data 'budget.earmarked', "
                                  "'budget.lbf'; it may set: none"]
    assert submitted.data["budget"] == before and "aab_pending" in submitted.state


def test_nobody_may_change_the_earmark(submitted) -> None:
    """Even the administration's re-statement of the budget can't touch budget.earmarked."""
    approve_all(submitted, on="2022-01-31")
    reasons = submitted.why_not("send_to_lbf", actor="tmf", on="2022-02-01",
                                data={"budget": {"earmarked": 2_000_000}})
    assert reasons == ["'send_to_lbf' may not set the data 'budget.earmarked'; it may set: "
                       "'budget.total', 'budget.lbf', 'budget.municipality', 'budget.housing'"]


def test_a_step_may_record_its_own_unknown_date(submitted) -> None:
    """The reserved dates.<own trigger> record passes every 'sets'; another step's does not."""
    submitted.fire("aab.approve", actor="aab", on="2021-12-06",
                   data={"dates": {"aab.approve": {"decided_on": "unknown"}}})
    reasons = submitted.why_not("3b.approve", actor="3b", on="2021-12-06",
                                data={"dates": {"aab.approve": {"decided_on": "x"}}})
    assert reasons == ["'3b.approve' may not set the data 'dates.aab.approve.decided_on'; "
                       "it may set: none"]


def test_a_case_may_not_start_with_undeclared_data(store, flagship) -> None:
    """Creation data outside [workflow].creation_sets is refused, the keys named."""
    with pytest.raises(af.InvalidInputError, match="may not start with the data 'colour'"):
        store.create_case(flagship, "example-plan", actor="tmf", on="2021-11-01",
                          data={"title": "x", "colour": "red"})
    assert [c.case_id for c in store.cases()] == []


@pytest.mark.parametrize(("municipality", "housing", "lbf", "problem"), [
    (500_000, 500_000, 3_000_000, None),
    (600_000, 600_000, 2_800_000, "more than 12.5 % of the total 4.000.000 kr."),
    (100_000, 900_000, 3_000_000, None),
    (0, 1_000_000, 3_000_000, None),
])
def test_the_municipality_pays_at_most_12_5_percent(municipality: int, housing: int, lbf: int,
                                                    problem: str | None) -> None:
    """The municipality's share is capped at 12.5 % of the total (BR 11 December 2014)."""
    from approvalflow.rules import financing_problems

    found = financing_problems({"total": 4_000_000, "lbf": lbf, "municipality": municipality,
                                "housing": housing, "earmarked": 1_100_000})
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0]


@pytest.mark.parametrize("value", [4.0, "4000000", True, -1, None])
def test_amounts_in_the_wrong_type_are_refused(value: object) -> None:
    """Amounts are whole kroner (int): a float, a string, a bool, a negative number are refused."""
    from approvalflow.rules import financing_problems

    found = financing_problems({"total": value, "lbf": 3_000_000, "municipality": 500_000,
                                "housing": 500_000, "earmarked": 1_100_000})
    assert found == [f"budget.total must be a whole, non-negative number of kroner, "
                     f"not {value!r}"]


@pytest.mark.parametrize(("amount", "ok"), [(600_000, True), (600_001, False),
                                            (10_000_000, False)])
def test_the_remainder_is_at_most_what_is_left_of_the_earmark(store, amount: int,
                                                               ok: bool) -> None:
    """The remainder case proposes at most 1.1 - 0.5 = 0.6 mio. kr. (the seed's figures)."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    case = store.create_case(wf, "example-rest", actor="tmf", on="2022-01-10",
                             data={"earmarked": 1_100_000, "used": 500_000})
    reasons = case.why_not("propose", actor="tmf", on="2022-01-10", data={"amount": amount})
    if ok:
        assert reasons == []
    else:
        assert reasons == [f"the proposal's amount {af.rules.kroner(amount)} is more than what "
                           f"is left of the earmark: 1.100.000 kr. earmarked - 500.000 kr. "
                           f"used = 600.000 kr."]


def test_backward_dates_need_no_duration(submitted) -> None:
    """Working back from 1 March 2022: LBF by 28 Feb (the expiry), so the others by then too."""
    case = submitted
    case.fire("tmu.approve", actor="tmu", on="2021-12-06")
    case.fire("aab.approve", actor="aab", on="2021-12-06")
    answer = case.latest_dates(on="2021-12-06")
    assert answer.target is not None and answer.target.isoformat() == "2022-03-01"
    by_step = {s.step: (s.latest.isoformat(), s.set_by) for s in answer.steps}
    assert by_step == {
        "start": ("2022-03-01", "target"),
        "lbf.approve": ("2022-02-28", "deadline: data:expires"),
        "send_to_lbf": ("2022-02-28", "before 'lbf.approve'"),
        "vibo.approve": ("2022-02-28", "before 'send_to_lbf'"),
        "3b.approve": ("2022-02-28", "before 'send_to_lbf'"),
    }
    assert [s.step for s in answer.steps][:2] == ["start", "lbf.approve"]
    assert not any(s.passed for s in answer.steps)
    assert "no duration is assumed" in answer.notes[0]
    late = case.latest_dates(on="2022-03-02")
    assert all(s.passed for s in late.steps if s.step != "start")
    assert not any(t.duration_days for t in case.definition.transitions)
