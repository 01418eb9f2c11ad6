"""Deadlines, expected dates and the forecast, on real cases in a real SQLite file."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import approvalflow as af
from approvalflow.demo import SEED_DATA, build_demo
from approvalflow.engine import engine_for
from approvalflow.forecast import DEADLINE_STATUSES, parse_expected

from .conftest import approve_all

D = dt.date.fromisoformat


def expect_seed(case: af.Case, on: str = "2021-12-06") -> None:
    """The seed's expectations: 3B in November 2021, VIBO in January 2022."""
    case.expect("3b.approve", "2021-11", actor="tmf", said_on=on)
    case.expect("vibo.approve", "2022-01", actor="tmf", said_on=on)


def vibo_yes(case: af.Case, on: str, voters: range = range(1, 5)) -> None:
    for n in voters:
        case.fire("vibo.approve", actor=f"vibo_afd_{n}", on=on)


# --------------------------------------------------------------------------- the file format

SMALL = """
[workflow]
name = "small"
version = 1
initial = "a"
goal = "c"
target = { data = "start" }

[actors]
p = "P"

[states.a]
[states.b]
[states.c]
final = true

[[transitions]]
trigger = "go"
source = "a"
target = "b"
actors = ["p"]
duration_days = 5

[[transitions]]
trigger = "done"
source = "b"
target = "c"
actors = ["p"]
deadline = { after = "go", days = 30 }
"""


#: The flagship with an ASSUMED 28-day duration of LBF's final treatment. The seed states
#: no duration and the bundled file assumes none; the forward forecast's arithmetic with a
#: duration is tested on this variant (a new version, as a changed file must be).
ASSUMED_LBF_DAYS = 28


@pytest.fixture(scope="module")
def assumed_28() -> af.Workflow:
    text = af.load_workflow("boligsocial-helhedsplan").source_text
    text = text.replace('deadline = { data = "expires" }',
                        f'deadline = {{ data = "expires" }}\nduration_days = {ASSUMED_LBF_DAYS}')
    text = text.replace("version = 2", "version = 28", 1)
    return af.loads_workflow(text, source="flagship-with-an-assumed-lbf-duration.toml")


def test_flagship_names_goal_target_deadlines_and_no_invented_duration(
        flagship: af.Workflow) -> None:
    """The flagship aims for 'started' by the planned start; LBF has a deadline, no duration."""
    assert flagship.goal == "started"
    assert flagship.target is not None and flagship.target.describe() == "data:planned_start"
    grant = next(t for t in flagship.transitions if t.trigger == "lbf.approve"
                 and t.source == "lbf_review")
    assert grant.duration_days is None and grant.deadline is not None
    assert not any(t.duration_days for t in flagship.transitions)
    assert grant.deadline.describe() == "data:expires"
    start = flagship.transitions_for("start")[0]
    assert start.earliest is not None and start.earliest.key == "planned_start"


def test_date_references_of_every_kind_load() -> None:
    """A date, a data key with an offset and a step offset all load as DateRef."""
    text = SMALL.replace('duration_days = 5', 'duration_days = 5\ndeadline = 2022-01-01\n'
                         'earliest = { data = "start", days = -3 }')
    wf = af.loads_workflow(text)
    go = wf.transitions_for("go")[0]
    assert go.deadline is not None and go.deadline.date == dt.date(2022, 1, 1)
    assert go.earliest is not None and go.earliest.describe() == "data:start - 3 days"
    done = wf.transitions_for("done")[0]
    assert done.deadline is not None and done.deadline.describe() == "30 days after go"


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('after = "go"', 'after = "gone"', "'gone'"),
    ('goal = "c"', 'goal = "zz"', "goal 'zz' is not a state"),
    ("days = 30 }", "days = 30, hours = 2 }", "unknown keys ['hours']"),
    ('{ after = "go", days = 30 }', '{ after = "go", data = "x" }', "exactly one of"),
    ('{ after = "go", days = 30 }', "2022-01-01T10:00:00", "a date with a time"),
    ('{ after = "go", days = 30 }', '"tomorrow"', "'tomorrow'"),
    ("duration_days = 5", "duration_days = -5", "duration_days is -5"),
    ("duration_days = 5", 'duration_days = "5"', "duration_days must be int"),
    ('goal = "c"\n', "", "no [workflow].goal"),
    ("days = 30 }", "days = true }", "days is True"),
])
def test_bad_date_keys_are_refused_naming_the_file(old: str, new: str, expected: str) -> None:
    """Unknown steps, states and keys in the date settings are refused with the ids named."""
    assert old in SMALL
    with pytest.raises(af.DefinitionError) as info:
        af.loads_workflow(SMALL.replace(old, new, 1), source="small.toml")
    assert "small.toml" in str(info.value) and expected in str(info.value)


def test_two_deadlines_for_one_step_are_refused() -> None:
    """A step (trigger) has one deadline, whichever transition carries it."""
    text = SMALL + """
[[transitions]]
trigger = "done"
source = "a"
target = "c"
actors = ["p"]
deadline = 2022-03-31
"""
    with pytest.raises(af.DefinitionError, match="'done' has two deadlines"):
        af.loads_workflow(text)


# --------------------------------------------------------------------------- expectations


def test_expect_is_an_event_that_changes_no_state_and_no_data(submitted: af.Case,
                                                             store: af.Store) -> None:
    """An expectation is appended to the hash chain; state and case data stay as they were."""
    before_state, before_data = submitted.state, dict(submitted.data)
    event = submitted.expect("3b.approve", "2021-11", actor="tmf", said_on="2021-11-02",
                             note="3B forventer november")
    assert (event.kind, event.trigger, event.seq) == ("expect", "expect", 3)
    assert event.data == {"expect": {"step": "3b.approve", "on": "2021-11-30",
                                     "given": "2021-11"}}
    assert submitted.state == before_state and dict(submitted.data) == before_data
    reloaded = store.case(submitted.id)
    assert reloaded.state == before_state and dict(reloaded.data) == before_data
    assert [x.to_dict() for x in reloaded.expectations()] == \
        [x.to_dict() for x in submitted.expectations()]
    assert store.verify().ok


@pytest.mark.parametrize(("given_", "date"), [("2021-11", "2021-11-30"),
                                              ("2024-02", "2024-02-29"),
                                              ("2022-01-15", "2022-01-15"),
                                              (dt.date(2022, 1, 15), "2022-01-15")])
def test_a_month_means_its_last_day(given_: object, date: str) -> None:
    """'YYYY-MM' is the end of that month; a day is itself."""
    assert parse_expected(given_)[0] == D(date)


@pytest.mark.parametrize("bad", ["2021-13", "2021-1", "november", "2021-11-31", 20211130])
def test_a_bad_expected_date_is_refused(submitted: af.Case, bad: object) -> None:
    """Anything but a date or a month is refused with the forms allowed."""
    with pytest.raises(af.InvalidInputError, match="YYYY-MM"):
        submitted.expect("3b.approve", bad, actor="tmf", said_on="2021-11-02")
    assert submitted.version == 2


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"step": "3b.vote"}, "is not a step"),
    ({"step": "expect"}, "is not a step"),
    ({"actor": "nobody"}, "is not an actor"),
    ({"said_on": "2021-10-31"}, "dates may not go backwards"),
    ({"voter": "vibo_afd_1"}, "is not a vote"),
    ({"step": "vibo.approve", "voter": "3b"}, "is not a voter"),
])
def test_expect_refuses_and_writes_nothing(submitted: af.Case, store: af.Store,
                                           kwargs: dict[str, Any], reason: str) -> None:
    """Unknown steps, actors and voters, and a date before the last event, are refused."""
    args: dict[str, Any] = {"step": "3b.approve", "on": "2021-11", "actor": "tmf",
                            "said_on": "2021-11-02", **kwargs}
    with pytest.raises(af.TransitionRefusedError, match=reason):
        submitted.expect(args.pop("step"), args.pop("on"), **args)
    assert len(list(store.events(submitted.id))) == 2


def test_expect_refused_on_a_view_as_of_a_date(submitted: af.Case, store: af.Store) -> None:
    """A view of the past can't record anything."""
    view = store.case(submitted.id, as_of="2021-11-01")
    with pytest.raises(af.TransitionRefusedError, match="as of 2021-11-01"):
        view.expect("3b.approve", "2021-11", actor="tmf", said_on="2021-11-02")


def test_expect_with_a_key_is_stored_once(submitted: af.Case, store: af.Store) -> None:
    """A retry with the same idempotency key returns the stored expectation."""
    first = submitted.expect("3b.approve", "2021-11", actor="tmf", said_on="2021-11-02",
                             key="k1")
    again = store.case(submitted.id).expect("3b.approve", "2021-11", actor="tmf",
                                            said_on="2021-11-02", key="k1")
    assert again.seq == first.seq and len(list(store.events(submitted.id))) == 3


def test_a_later_expectation_replaces_and_taking_the_step_spends_it(submitted: af.Case) -> None:
    """The latest expectation of a step counts; once the step is taken it counts no more."""
    submitted.expect("3b.approve", "2021-11", actor="tmf", said_on="2021-11-02")
    submitted.expect("3b.approve", "2021-12-15", actor="3b", said_on="2021-11-20")
    (only,) = submitted.expectations()
    assert (only.date, only.actor, only.said_on) == (D("2021-12-15"), "3b", D("2021-11-20"))
    submitted.fire("3b.approve", actor="3b", on="2021-12-01")
    assert submitted.expectations() == []


# --------------------------------------------------------------------------- the forecast


@pytest.fixture
def demo(store: af.Store, assumed_28: af.Workflow) -> af.Case:
    """The demo case: TMU and AAB approved on 6 Dec 2021; 3B (Nov) and VIBO (Jan) expected;
    on the variant that assumes 28 days for LBF's treatment (see ASSUMED_LBF_DAYS)."""
    return build_demo(store, workflow=assumed_28)


def test_demo_forecast_starts_on_time_with_one_day_to_spare(demo: af.Case) -> None:
    """VIBO in January, LBF's four weeks: the grant on 28 Feb, the start on 1 March."""
    fc = demo.forecast(on="2021-12-06")
    assert (fc.goal, fc.reached, fc.reachable) == ("started", False, True)
    assert (fc.date, fc.target, fc.on_time, fc.slack_days) == \
        (D("2022-03-01"), D("2022-03-01"), True, 1)
    assert fc.critical_path == ("vibo.approve", "send_to_lbf", "lbf.approve", "start")
    assert fc.step("lbf.approve").date == D("2022-02-28")
    assert [p.actor for p in fc.holding_up] == [f"vibo_afd_{n}" for n in range(1, 5)]
    three_b = fc.step("3b.approve")
    assert three_b.late and three_b.date == D("2021-12-06") and not three_b.critical
    assert any("'3b.approve' was expected by 2021-11-30" in n for n in fc.notes)
    json.dumps(fc.to_dict())


def test_a_later_vibo_makes_the_start_late_and_names_vibo(demo: af.Case) -> None:
    """VIBO in February: the grant comes after the expiry and the start is 27 days late."""
    demo.expect("vibo.approve", "2022-02", actor="vibo_board", said_on="2022-01-10")
    fc = demo.forecast(on="2022-01-10")
    assert (fc.date, fc.on_time, fc.slack_days) == (D("2022-03-28"), False, -27)
    assert fc.critical_path[0] == "vibo.approve"
    assert {p.actor for p in fc.holding_up} == {f"vibo_afd_{n}" for n in range(1, 5)}


def test_a_vote_waits_for_its_slowest_voter(demo: af.Case) -> None:
    """One department expected later than the rest decides the vote, and leads the list."""
    demo.expect("vibo.approve", "2022-02-10", actor="vibo_board", voter="vibo_afd_3",
                said_on="2021-12-07")
    fc = demo.forecast(on="2021-12-07")
    vote = fc.step("vibo.approve")
    assert vote.date == D("2022-02-10")
    assert fc.holding_up[0].actor == "vibo_afd_3"
    assert {v.voter: v.date for v in vote.voters}["vibo_afd_1"] == D("2022-01-31")


def test_a_vote_counts_only_the_voters_still_to_vote(demo: af.Case) -> None:
    """Ballots already cast leave the vote to those who have not voted."""
    vibo_yes(demo, "2021-12-10", range(1, 4))
    fc = demo.forecast(on="2021-12-10")
    assert [v.voter for v in fc.step("vibo.approve").voters] == ["vibo_afd_4"]
    assert [p.actor for p in fc.holding_up] == ["vibo_afd_4"]


def test_a_join_waits_for_its_latest_region(demo: af.Case) -> None:
    """When 3B is expected after VIBO, 3B's step is the critical one."""
    demo.expect("3b.approve", "2022-02-05", actor="3b", said_on="2021-12-07")
    fc = demo.forecast(on="2021-12-07")
    assert fc.critical_path[0] == "3b.approve"
    assert fc.step("send_to_lbf").ready == D("2022-02-05")
    assert fc.step("vibo.approve").slack_days == 5 + fc.step("3b.approve").slack_days
    assert [p.actor for p in fc.holding_up] == ["3b"]


def test_no_step_is_forecast_before_the_day_asked(demo: af.Case) -> None:
    """Asked later, a step whose expected date has passed is forecast on the day asked."""
    fc = demo.forecast(on="2022-02-15")
    vote = fc.step("vibo.approve")
    assert vote.late and vote.date == D("2022-02-15") and vote.set_by == "on"
    assert fc.date == D("2022-03-15") and fc.on_time is False


def test_the_goal_reached_reports_its_date(demo: af.Case) -> None:
    """Once started, the forecast reports the start's date and the margin to the target."""
    demo.fire("3b.approve", actor="3b", on="2021-12-10")
    vibo_yes(demo, "2022-01-20")
    demo.fire("send_to_lbf", actor="tmf", on="2022-01-21")
    demo.fire("lbf.approve", actor="lbf", on="2022-02-20")
    demo.fire("old_plan_expires", actor="clock", on="2022-02-28")  # the clock's step
    demo.fire("start", actor="tmf", on="2022-03-01")
    fc = demo.forecast(on="2022-04-01")
    assert (fc.reached, fc.date, fc.on_time, fc.slack_days) == (True, D("2022-03-01"), True, 0)
    assert fc.critical_path == () and fc.holding_up == ()


def test_a_case_that_ended_elsewhere_cannot_reach_the_goal(submitted: af.Case) -> None:
    """A rejected plan never starts: not reachable, not on time."""
    submitted.fire("tmu.reject", actor="tmu", on="2021-12-06")
    fc = submitted.forecast(on="2021-12-06")
    assert (fc.reachable, fc.date, fc.on_time) == (False, None, False)
    assert "can no longer be reached" in fc.describe()


def test_a_workflow_without_a_goal_has_no_forecast(store: af.Store) -> None:
    """The forecast says the workflow names no goal instead of guessing one."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    case = store.create_case(wf, "rest", actor="tmf", on="2022-01-01", data={"amount": 600_000})
    fc = case.forecast(on="2022-01-01")
    assert fc.goal is None and fc.date is None and "no goal" in fc.describe()


def test_a_view_as_of_a_date_forecasts_with_what_was_known(demo: af.Case,
                                                           store: af.Store) -> None:
    """VIBO's later expectation (said in January) is not known in a view as of December."""
    demo.expect("vibo.approve", "2022-02", actor="vibo_board", said_on="2022-01-10")
    then = store.case(demo.id, as_of="2021-12-15").forecast(on="2021-12-15")
    now = store.case(demo.id).forecast(on="2022-01-10")
    assert (then.date, then.on_time) == (D("2022-03-01"), True)
    assert (now.date, now.on_time) == (D("2022-03-28"), False)


# --------------------------------------------------------------------------- deadlines


def deadline(case: af.Case, step: str, on: str) -> af.forecast.Deadline:
    return next(d for d in case.deadlines(on=on) if d.step == step)


def test_deadline_open(demo: af.Case) -> None:
    """Not yet taken, not yet due and forecast in time: open, with the days left."""
    d = deadline(demo, "lbf.approve", "2021-12-06")
    assert (d.status, d.due, d.days_left, d.forecast) == \
        ("open", D("2022-02-28"), 84, D("2022-02-28"))


def test_deadline_at_risk(demo: af.Case) -> None:
    """Not yet due, but forecast after the due date: at risk."""
    demo.expect("vibo.approve", "2022-02", actor="vibo_board", said_on="2022-01-10")
    d = deadline(demo, "lbf.approve", "2022-01-10")
    assert (d.status, d.forecast, d.days_left) == ("at risk", D("2022-03-28"), 49)


def test_deadline_missed_when_not_taken_in_time(demo: af.Case) -> None:
    """Past the due date and not taken: missed, with the days overdue as negative days left."""
    d = deadline(demo, "lbf.approve", "2022-03-02")
    assert (d.status, d.days_left, d.taken_on) == ("missed", -2, None)


def test_deadline_met_and_missed_when_taken(submitted: af.Case) -> None:
    """Taken on or before the due date: met; taken after it: missed."""
    approve_all(submitted, on="2022-01-10")
    submitted.fire("send_to_lbf", actor="tmf", on="2022-01-10")
    submitted.fire("lbf.approve", actor="lbf", on="2022-02-20")
    submitted.fire("old_plan_expires", actor="clock", on="2022-02-28")  # the clock's step
    met = deadline(submitted, "lbf.approve", "2022-02-21")
    assert (met.status, met.taken_on, met.days_left) == ("met", D("2022-02-20"), 8)
    submitted.fire("start", actor="tmf", on="2022-03-03")
    late = deadline(submitted, "start", "2022-03-03")
    assert (late.status, late.days_left) == ("missed", -2)


def test_every_status_is_one_of_the_four(demo: af.Case) -> None:
    """Statuses are exactly met, open, at risk and missed."""
    assert DEADLINE_STATUSES == ("met", "open", "at risk", "missed")
    assert {d.status for d in demo.deadlines(on="2021-12-06")} <= set(DEADLINE_STATUSES)


def test_deadline_after_a_step_is_projected_until_the_step_is_taken(store: af.Store) -> None:
    """'30 days after go' counts from go's forecast (projected), then from its event."""
    wf = af.loads_workflow(SMALL)
    case = store.create_case(wf, "s", actor="p", on="2022-01-01", data={"start": "2022-03-01"})
    d = deadline(case, "done", "2022-01-01")
    assert (d.due, d.projected, d.status) == (D("2022-02-05"), True, "open")
    case.fire("go", actor="p", on="2022-01-10")
    d = deadline(case, "done", "2022-01-10")
    assert (d.due, d.projected) == (D("2022-02-09"), False)
    fc = case.forecast(on="2022-01-10")
    assert (fc.date, fc.slack_days) == (D("2022-01-10"), 50)


def test_deadline_from_missing_data_is_open_with_a_note(store: af.Store,
                                                        flagship: af.Workflow) -> None:
    """Without the data date, the due date is unknown: open, and the note says why."""
    data = {k: v for k, v in copy.deepcopy(SEED_DATA).items() if k != "expires"}
    case = store.create_case(flagship, "x", actor="tmf", on="2021-11-01", data=data)
    d = deadline(case, "lbf.approve", "2021-11-01")
    assert (d.status, d.due) == ("open", None) and "'expires'" in d.note


# --------------------------------------------------------------------------- store.due


def test_store_due_lists_overdue_and_soon_across_cases(store: af.Store,
                                                       assumed_28: af.Workflow) -> None:
    """Overdue and soon-due items of open cases, earliest first; ended cases are left out
    (with LBF's treatment assumed to take 28 days, so that the deadlines are at risk)."""
    demo = build_demo(store, workflow=assumed_28)
    other = store.create_case(assumed_28, "andet", actor="tmf", on="2021-11-01",
                              data=copy.deepcopy(SEED_DATA))
    other.fire("submit", actor="tmf", on="2021-11-01")
    other.fire("tmu.reject", actor="tmu", on="2021-12-01")
    items = store.due(on="2021-12-06", within_days=14)
    assert [(i.case_id, i.kind, i.step, i.status) for i in items] == \
        [(demo.id, "expected", "3b.approve", "missed")]
    later = store.due(on="2022-02-20", within_days=14)
    assert [(i.kind, i.step, i.status) for i in later] == [
        ("expected", "3b.approve", "missed"), ("expected", "vibo.approve", "missed"),
        ("deadline", "lbf.approve", "at risk"), ("timer", "old_plan_expires", "upcoming"),
        ("deadline", "start", "at risk")]
    assert all(i.case_id == demo.id for i in later)
    json.dumps([i.to_dict() for i in later])


def test_store_due_as_of_uses_what_was_known(store: af.Store) -> None:
    """As of a date before the case existed, nothing is due."""
    build_demo(store)
    assert store.due(on="2021-12-01", as_of="2021-12-01") == []
    with pytest.raises(af.InvalidInputError, match="within_days"):
        store.due(within_days=-1)


# --------------------------------------------------------------------------- properties

DAY0 = dt.date(2021, 11, 1)
_ids = itertools.count()
_DIR = tempfile.TemporaryDirectory(prefix="approvalflow-forecast-")
_STORE_PATH = Path(_DIR.name) / "forecast.db"
_FLAGSHIP = af.load_workflow("boligsocial-helhedsplan")
_TRIGGERS = sorted(_FLAGSHIP.triggers)

actions = st.lists(st.tuples(st.sampled_from(["fire", "fire", "expect"]),
                             st.integers(0, 20), st.integers(0, 120), st.integers(0, 99)),
                   max_size=14)


def drive(store: af.Store, plan: list[tuple[str, int, int, int]]) -> af.Case:
    """A flagship case driven by ``plan``: steps taken by whoever may, expectations said."""
    case = store.create_case(_FLAGSHIP, f"p{next(_ids)}", actor="tmf", on=DAY0,
                             data=copy.deepcopy(SEED_DATA))
    day = DAY0
    for kind, gap, ahead, pick in plan:
        if case.is_final:
            break
        day = day + dt.timedelta(days=gap)
        if engine_for(_FLAGSHIP).overdue(case.engine_state, day):  # the clock acts first
            store.tick(on=day)
            case = store.case(case.id)
            if case.is_final:
                break
        if kind == "fire":
            options = sorted((a, t) for a, ts in case.awaiting(on=day).items() for t in ts)
            if options:
                actor, trigger = options[pick % len(options)]
                case.fire(trigger, actor=actor, on=day)
        else:
            step = _TRIGGERS[pick % len(_TRIGGERS)]
            case.expect(step, day + dt.timedelta(days=ahead - 30), actor="tmf", said_on=day)
    return case


@pytest.fixture(scope="module")
def prop_store():
    with af.open_store(_STORE_PATH, durability="normal") as s:
        yield s


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=actions, ask=st.integers(0, 200))
def test_forecast_never_claims_a_date_a_known_fact_rules_out(prop_store: af.Store,
                                                            plan: list[Any], ask: int) -> None:
    """No step before the day asked, the last event, its own wait, expectation or earliest."""
    case = drive(prop_store, plan)
    on = DAY0 + dt.timedelta(days=ask)
    fc = case.forecast(on=on)
    floor = max(on, case.last_on or on)
    for s in fc.steps:
        assert s.date >= floor and s.date >= s.ready
        if s.expected is not None and s.basis == "expected":
            assert s.date >= s.expected.date
        for v in s.voters:
            assert v.date >= floor and (v.expected is None or v.date >= v.expected.date)
        for w in s.waits_for:
            assert s.ready >= max(x.date for x in fc.steps if x.step == w)
    if fc.date is not None and not fc.reached:
        assert fc.date >= floor and fc.date >= max(s.date for s in fc.steps)
        assert fc.date >= D(SEED_DATA["planned_start"])
    if fc.reached:
        started = [e for e in case.history if e.trigger == "start"]
        assert fc.date == started[-1].on
    for d in case.deadlines(on=on):
        assert d.status in DEADLINE_STATUSES
        if d.status == "at risk":
            assert d.forecast is not None and d.due is not None and d.forecast > d.due


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=actions, ask=st.integers(0, 200), later=st.integers(0, 90),
       which=st.integers(0, 9))
def test_a_later_expectation_on_a_critical_step_never_makes_it_earlier(
        prop_store: af.Store, plan: list[Any], ask: int, later: int, which: int) -> None:
    """Expecting a critical step later than forecast can only move the goal later."""
    case = drive(prop_store, plan)
    on = DAY0 + dt.timedelta(days=ask)
    said = max(on, case.last_on or on)
    prop_store.tick(on=said)  # the clock acts on what has fallen due before anything is said
    case = prop_store.case(case.id)
    before = case.forecast(on=on)
    if before.date is None or before.reached or not before.critical_path:
        return
    step = before.step(before.critical_path[which % len(before.critical_path)])
    case.expect(step.step, step.date + dt.timedelta(days=later), actor="tmf", said_on=said)
    after = case.forecast(on=on)
    assert after.date is not None and after.date >= before.date
    assert after.step(step.step).date >= step.date
