"""The flagship workflow walked through the seed's story and the paths the domain allows."""

from __future__ import annotations

import pytest

import approvalflow as af
from tests.conftest import approve_all


def test_the_seed_story_to_the_start_on_1_march_2022(store, submitted) -> None:
    """AAB, 3B, TMU (6 Dec 2021) and VIBO approve, LBF grants, the effort starts on 1 March."""
    case = submitted
    case.fire("aab.approve", actor="aab", on="2021-11-05")
    case.fire("3b.approve", actor="3b", on="2021-11-25")
    case.fire("tmu.approve", actor="tmu", on="2021-12-06")
    for n in range(1, 5):
        case.fire("vibo.approve", actor=f"vibo_afd_{n}", on="2022-01-27")
    case.fire("send_to_lbf", actor="tmf", on="2022-01-31")
    assert case.state == frozenset({"lbf_review"})
    assert case.allowed(actor="lbf", on="2022-02-15") == ["lbf.grant", "lbf.refuse",
                                                          "lbf.send_back"]
    case.fire("lbf.grant", actor="lbf", on="2022-02-15")
    assert case.why_not("start", actor="tmf", on="2022-02-28") == [
        "the planned start 2022-03-01 has not come yet (the step is dated 2022-02-28)"]
    case.fire("start", actor="tmf", on="2022-03-01")
    assert case.state == frozenset({"started"}) and case.is_final
    assert store.verify().ok
    as_of_tmu = store.case(case.id, as_of="2021-12-06")
    assert {"tmu_approved", "aab_approved", "3b_approved", "vibo_voting"} == as_of_tmu.state


def test_no_grant_by_28_february_means_a_gap(store, submitted) -> None:
    """Without a grant when the old plan expires, the clock takes the case into the gap on
    the expiry date; no one can record a step dated after it first; a late grant ends it."""
    case = submitted
    approve_all(case, on="2022-01-31")
    case.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    assert case.why_not("old_plan_expires", actor="tmf", on="2022-02-28") == [
        "the old plan runs until 2022-02-28 (the step is dated 2022-02-28)"]
    assert "fell due on 2022-02-28" in case.why_not("lbf.grant", actor="lbf",
                                                    on="2022-03-01")[0]
    report = store.tick(on="2022-03-15")
    assert [(s.trigger, s.on.isoformat()) for s in report.taken] == [("expire", "2022-02-28")]
    case = store.case(case.id)
    assert case.state == frozenset({"gap"}) and case.history[-1].actor == "clock"
    case.fire("lbf.grant", actor="lbf", on="2022-04-20")  # after the gap
    case.fire("start", actor="tmf", on="2022-05-01")
    assert case.is_final


def test_section_37_override_after_a_no(submitted) -> None:
    """A residents' no can be overridden by the organisation's supreme authority (§ 37)."""
    case = submitted
    case.fire("3b.reject", actor="3b", on="2021-11-25")
    assert "3b_rejected" in case.state
    assert "3b.override" not in case.allowed(actor="3b", on="2021-11-26")
    case.fire("3b.override", actor="3b_board", on="2021-12-01")
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
    assert case.why_not("send_to_lbf", actor="tmf", on="2022-01-21") == []


def test_lbf_sends_back_and_everyone_approves_again(submitted) -> None:
    """LBF can send the plan back to revision; the revised plan needs every approval anew."""
    case = submitted
    approve_all(case, on="2022-01-31")
    case.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    case.fire("lbf.send_back", actor="lbf", on="2022-02-10", note="Budget must be specified.")
    assert case.state == frozenset({"revision"})
    case.fire("resubmit", actor="tmf", on="2022-02-20")
    assert {"tmu_pending", "aab_pending", "3b_pending", "vibo_voting"} == case.state
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
    assert submitted.state == frozenset({"refused"}) and submitted.is_final


@pytest.mark.parametrize("actor", ["aab", "3b", "vibo_afd_1", "lbf", "tmf"])
def test_only_tmu_takes_the_committee_step(submitted, actor: str) -> None:
    """No one but TMU may approve for the committee."""
    with pytest.raises(af.TransitionRefusedError, match="only 'tmu' may"):
        submitted.fire("tmu.approve", actor=actor, on="2021-12-06")


def test_remainder_workflow_path(store) -> None:
    """The 0.6 mio. kr. remainder goes TMF -> TMU -> ØU -> BR."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    case = store.create_case(wf, "rest-0.6", actor="tmf", on="2022-01-10")
    assert "positive whole number" in case.why_not("propose", actor="tmf", on="2022-01-10")[0]
    case.fire("propose", actor="tmf", on="2022-01-10", data={"amount": 600_000})
    case.fire("tmu.recommend", actor="tmu", on="2022-02-07")
    assert case.allowed(on="2022-02-08") == ["oeu.statement"]
    case.fire("oeu.statement", actor="oeu", on="2022-02-22")
    case.fire("br.approve", actor="br", on="2022-03-03")
    assert case.state == frozenset({"approved"}) and case.is_final
