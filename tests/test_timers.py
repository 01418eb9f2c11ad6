"""Timed steps: the file format, the clock's rules, the timers table, tick, and forgeries."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import approvalflow as af
from approvalflow.cli import cli
from approvalflow.engine import engine_for
from approvalflow.guards import unregister_guard
from tests import timed_workflow as tw
from tests import writer_process as wp
from tests.conftest import approve_all
from tests.test_forgery import forge

pytestmark = pytest.mark.backends

CTX = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def wf() -> af.Workflow:
    return af.loads_workflow(tw.TEXT)


def submitted(store: af.Store, wf: af.Workflow, case_id: str = "a", *, created: str = "2024-01-01",
              submitted_on: str | None = "2024-01-10", expires: str = "2024-03-01") -> af.Case:
    case = store.create_case(wf, case_id, actor="applicant", on=created,
                             data={"expires": expires})
    if submitted_on is not None:
        case.fire("submit", actor="applicant", on=submitted_on)
    return case


def log_of(store: af.Store) -> list[tuple[Any, ...]]:
    """Every event without its recording time and hashes: what a tick decides."""
    return [(e.case_id, e.seq, e.trigger, e.actor, e.on, tuple(sorted(e.source)),
             tuple(sorted(e.target))) for e in store.events()]


def timer_table(store: af.Store) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in store._conn.execute(
        "SELECT case_id, trigger, due_on FROM timers ORDER BY case_id, trigger")]


# --------------------------------------------------------------------------- the file format


def test_timed_steps_load_with_their_dates(wf: af.Workflow) -> None:
    """at, after and escalates load as timers the clock takes; no target makes a reminder."""
    timed = {t.trigger: t for t in wf.timed_transitions}
    assert sorted(timed) == ["escalate", "expire", "lapse", "remind"]
    assert all(t.actors == ("clock",) for t in timed.values())
    assert timed["remind"].reminder and timed["remind"].target == "review"
    assert not timed["escalate"].reminder
    assert timed["expire"].timer.describe() == "data:expires"
    assert timed["lapse"].timer.describe() == "10 days after entering escalated"
    assert wf.state("review").deadline.describe() == "30 days after entering review"
    assert not wf.transitions_for("submit")[0].timed


def test_every_timer_shape_problem_is_reported_at_once() -> None:
    """A file with many mistakes in its timers' shape lists each in one DefinitionError."""
    bad = tw.TEXT.replace('dean = "Dekan"', 'dean = "Dekan"\nclock = "Uret"').replace(
        'after = { state = "escalated", days = 10 }',
        'after = { state = "escalated", days = 10 }\nat = 2024-01-01\nactors = ["dean"]',
    ).replace('at = { data = "expires" }', 'after = { join = "review", hours = 3 }')
    with pytest.raises(af.DefinitionError) as info:
        af.loads_workflow(bad)
    expected = ["defines 'clock', an actor name reserved",
                "gives at and after; a timed step has one date",
                "only the clock takes it, so it lists no 'actors'",
                "has the unknown keys ['hours']"]
    assert [e for e in expected if e not in str(info.value)] == [], str(info.value)
    assert len(info.value.problems) == 4


def test_every_timer_reference_problem_is_reported_at_once() -> None:
    """A file whose timers name the wrong things lists each mistake in one DefinitionError."""
    bad = tw.TEXT.replace('escalates = "review"', 'escalates = "submitted"') + \
        """
[[transitions]]
trigger = "approve"
source = "submitted"
target = "approved"
after = { step = "nothing", days = 2 }
"""
    with pytest.raises(af.DefinitionError) as info:
        af.loads_workflow(bad)
    text = str(info.value)
    expected = ["is timed on some of its transitions and not on others",
                "'escalates' names 'submitted', which is neither a step nor a state with a "
                "deadline",
                "'after' names 'nothing', which is not a step"]
    assert [e for e in expected if e not in text] == [], text


def test_a_state_deadline_is_escalated_only_from_inside_that_state() -> None:
    """escalates = STATE on a step leaving another state is refused: the clock took it on
    the day after a fixed deadline of a state the case had never entered."""
    bad = tw.TEXT.replace('deadline = { after = { state = "review" }, days = 30 }',
                          'deadline = 2024-03-01') + """
[[transitions]]
trigger = "hurry"
source = "submitted"
target = "escalated"
escalates = "review"
"""
    with pytest.raises(af.DefinitionError) as info:
        af.loads_workflow(bad)
    assert ("('hurry' from 'submitted').escalates names the state 'review', but 'submitted' "
            "is not 'review' or inside it") in str(info.value)
    assert len(info.value.problems) == 1


def test_a_person_step_may_not_name_the_clock() -> None:
    """'clock' listed among a step's actors, the step having no date, is refused."""
    bad = tw.TEXT.replace('actors = ["dean"]', 'actors = ["dean", "clock"]', 1)
    with pytest.raises(af.DefinitionError, match="lists 'clock', the reserved actor of timed "
                                                 "steps"):
        af.loads_workflow(bad)


def test_join_timer_must_name_a_parallel_state() -> None:
    """after = { join = ID } names a parallel state; a plain state is refused."""
    bad = tw.TEXT.replace('at = { data = "expires" }', 'after = { join = "review", days = 1 }')
    with pytest.raises(af.DefinitionError, match="'join' names 'review', which is not a "
                                                 "parallel state"):
        af.loads_workflow(bad)


def test_a_ballot_can_not_be_timed() -> None:
    """A vote's ballot is cast by a voter: a timer on it is refused."""
    text = tw.TEXT + '''
[votes.panel]
state = "escalated"
voters = ["dean", "applicant"]

[[transitions]]
trigger = "panel.yes"
source = "escalated"
target = "approved"
vote = "panel"
at = 2030-01-01
'''
    with pytest.raises(af.DefinitionError, match="a ballot is cast by a voter, never by the "
                                                 "clock"):
        af.loads_workflow(text)


def test_a_timed_step_takes_no_four_eyes() -> None:
    """not_by on a timed step is refused: the clock has no person, so the step would wait
    for ever (it loaded, every tick listed it 'waiting', and later steps were recorded)."""
    bad = tw.TEXT.replace('at = { data = "expires" }',
                          'at = { data = "expires" }\nnot_by = ["create"]')
    with pytest.raises(af.DefinitionError, match=r"\('expire'\) is timed \('at'\): the clock "
                                                 r"takes it, and the clock is no person"):
        af.loads_workflow(bad)


# --------------------------------------------------------------------------- the clock's rules


def test_a_timed_step_is_refused_to_anyone_but_the_clock(store: af.Store,
                                                          wf: af.Workflow) -> None:
    """Every actor of the workflow is refused a timed step, even on its date."""
    case = submitted(store, wf, submitted_on=None)
    for actor in wf.actors:
        reasons = case.why_not("expire", actor=actor, on="2024-03-01")
        assert reasons == [f"{actor!r} may not take 'expire'; only 'clock' may (a timed "
                           f"step, taken when its date comes)"]
    with pytest.raises(af.TransitionRefusedError):
        case.fire("expire", actor="applicant", on="2024-03-01")
    assert case.why_not("expire", actor="clock", on="2024-03-01") == []


def test_the_clock_can_take_nothing_else(store: af.Store, wf: af.Workflow) -> None:
    """'clock' is refused every step that is not timed, and can't create a case."""
    case = submitted(store, wf)
    for trigger in ("submit", "approve"):
        reasons = case.why_not(trigger, actor="clock", on="2024-01-11")
        assert any("'clock' takes only timed steps" in r for r in reasons), reasons
    with pytest.raises(af.InvalidInputError, match="'clock' is not an actor"):
        store.create_case(wf, "by-clock", actor="clock", on="2024-01-01")


def test_the_clock_is_refused_before_the_date_and_on_another_date(store: af.Store,
                                                                   wf: af.Workflow) -> None:
    """The clock's step is dated with the timer's date: not before it, not after it."""
    case = submitted(store, wf, submitted_on=None)
    assert case.why_not("expire", actor="clock", on="2024-02-29") == [
        "'expire' is not due before 2024-03-01 (data:expires); 2024-02-29 is too early"]
    assert case.why_not("expire", actor="clock", on="2024-03-02") == [
        "'expire' fell due on 2024-03-01; the clock's step is dated with that date, not "
        "2024-03-02"]


def test_nothing_is_recorded_after_an_overdue_timer(store: af.Store, wf: af.Workflow) -> None:
    """Past a due timer's date, neither a step nor an expectation can be recorded before it."""
    case = submitted(store, wf, submitted_on=None)
    assert case.why_not("submit", actor="applicant", on="2024-03-01") == []  # the same day
    reasons = case.why_not("submit", actor="applicant", on="2024-03-02")
    assert reasons == ["the clock's step 'expire' fell due on 2024-03-01 and has not been "
                       "recorded; nothing dated after it can be recorded before it (run "
                       "'approvalflow tick')"]
    with pytest.raises(af.TransitionRefusedError, match="fell due on 2024-03-01"):
        case.expect("submit", "2024-04-01", actor="applicant", said_on="2024-03-05")


def test_a_reminder_records_without_moving_and_only_once(store: af.Store,
                                                           wf: af.Workflow) -> None:
    """A timed step with no target is recorded once per stay in its state, and moves nothing."""
    case = submitted(store, wf)
    report = store.tick(on="2024-02-05")
    assert [(s.trigger, s.on.isoformat()) for s in report.taken] == [("remind", "2024-01-30")]
    case = store.case("a")
    remind = case.history[-1]
    assert remind.actor == "clock" and remind.source == remind.target == {"review"}
    assert ("a", "remind") not in {(c, t) for c, t, _ in timer_table(store)}
    assert store.tick(on="2024-02-05").taken == ()


# --------------------------------------------------------------------------- tick


def test_tick_follows_a_chain_in_one_call(store: af.Store, wf: af.Workflow) -> None:
    """The reminder, the escalation when the state's deadline is missed, and the lapse that
    the escalation arms are all taken by one tick, each dated with its own date."""
    submitted(store, wf)
    report = store.tick(on="2024-06-01")
    assert [(s.case_id, s.trigger, s.on.isoformat(), sorted(s.target)) for s in report.taken] == [
        ("a", "remind", "2024-01-30", ["review"]),
        ("a", "escalate", "2024-02-10", ["escalated"]),
        ("a", "lapse", "2024-02-20", ["lapsed"])]
    assert store.case("a").is_final
    assert timer_table(store) == []
    assert store.verify().ok


def test_an_escalation_timer_says_once_that_the_deadline_is_missed(tmp_path: Path,
                                                                   wf: af.Workflow) -> None:
    """show and Timer.describe() name an escalation's rule once (they added '; the
    deadline of review is missed' after 'the day after the deadline of review is missed')."""
    db = tmp_path / "esc.db"
    with af.open_store(db) as store:
        case = submitted(store, wf)
        [timer] = [t for t in case.timers(on="2024-01-11") if t.step == "escalate"]
    assert timer.describe() == ("2024-02-10  the clock takes escalate (review -> escalated; "
                                "the day after the deadline of review is missed)")
    result = CliRunner().invoke(cli, ["--db", str(db), "show", "a", "--on", "2024-01-11"])
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).count("deadline of review is missed") == 1, \
        result.output


def test_tick_is_idempotent(store: af.Store, wf: af.Workflow) -> None:
    """A second tick on the same date, or an earlier one, takes nothing and writes nothing."""
    submitted(store, wf)
    store.tick(on="2024-02-15")
    before = log_of(store)
    assert store.tick(on="2024-02-15").taken == ()
    assert store.tick(on="2024-02-01").taken == ()
    assert log_of(store) == before


def test_timers_table_follows_every_event(store: af.Store, wf: af.Workflow) -> None:
    """The table holds each armed timer with its date; a person's step re-arms or spends them."""
    case = submitted(store, wf, submitted_on=None)
    assert timer_table(store) == [("a", "expire", "2024-03-01")]
    case.fire("submit", actor="applicant", on="2024-01-10")
    assert timer_table(store) == [("a", "escalate", "2024-02-10"),
                                  ("a", "remind", "2024-01-30")]
    case.fire("approve", actor="dean", on="2024-01-20")
    assert timer_table(store) == []


def test_a_due_timer_a_guard_refuses_waits(tmp_path: Path) -> None:
    """A due timer whose guard refuses is reported as waiting and taken once the guard holds."""
    text = tw.TEXT.replace('at = { data = "expires" }',
                           'at = { data = "expires" }\nguards = ["not_on_hold"]')

    @af.guard("not_on_hold")
    def not_on_hold(ctx: af.GuardContext) -> list[str]:
        return ["the case is on hold"] if ctx.data.get("hold") else []

    try:
        wf = af.loads_workflow(text)
        with af.open_store(tmp_path / "g.db") as store:
            store.create_case(wf, "held", actor="applicant", on="2024-01-01",
                              data={"expires": "2024-03-01", "hold": True})
            report = store.tick(on="2024-03-05")
            assert report.taken == ()
            assert [(s.case_id, s.trigger, s.reasons) for s in report.waiting] == [
                ("held", "expire", ("the case is on hold",))]
            # a person may go on: the timer can't fire, so it blocks nothing
            assert store.case("held").why_not("submit", actor="applicant",
                                              on="2024-03-05") == []
    finally:
        unregister_guard("not_on_hold")


def test_tick_command_prints_and_reports_json(tmp_path: Path, wf: af.Workflow) -> None:
    """approvalflow tick prints what it took, and --json the documented object."""
    db = tmp_path / "cli.db"
    with af.open_store(db) as store:
        submitted(store, wf)
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "tick", "--on", "2024-02-12", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["on"] == "2024-02-12" and doc["already_taken"] == 0 and doc["waiting"] == []
    assert [(s["trigger"], s["on"], s["target"], s["seq"]) for s in doc["taken"]] == [
        ("remind", "2024-01-30", ["review"], 3), ("escalate", "2024-02-10", ["escalated"], 4)]
    result = runner.invoke(cli, ["--db", str(db), "tick", "--on", "2024-06-01"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Tick on 2024-06-01: 1 timed step(s) taken.",
        "  2024-02-20  a: lapse (escalated -> lapsed)"]


# --------------------------------------------------------------------------- properties


DAY0 = dt.date(2024, 1, 1)
case_plans = st.lists(st.tuples(st.integers(0, 40), st.one_of(st.none(), st.integers(0, 60)),
                                st.integers(0, 90)), min_size=1, max_size=4)


def _build(path: Path, wf: af.Workflow, plans: list[tuple[int, int | None, int]]) -> None:
    with af.open_store(path, durability="normal") as store:
        for i, (created, submit_after, expires) in enumerate(plans):
            case = store.create_case(
                wf, f"c{i}", actor="applicant", on=DAY0 + dt.timedelta(days=created),
                data={"expires": (DAY0 + dt.timedelta(days=created + expires)).isoformat()})
            if submit_after is not None:
                on = DAY0 + dt.timedelta(days=created + submit_after)
                if not case.why_not("submit", actor="applicant", on=on):
                    case.fire("submit", actor="applicant", on=on)


def _by_hand(store: af.Store, until: dt.date) -> None:
    """Take every due timed step with Case.fire, case by case, the earliest first."""
    for summary in store.cases():
        case = store.case(summary.case_id)
        while True:
            engine = engine_for(case.definition)
            due = [(d, t) for d, t in engine.timers(case.engine_state) if d <= until]
            if not due:
                break
            day, t = due[0]
            case.fire(t.trigger, actor="clock", on=day)


@given(plans=case_plans, horizon=st.integers(0, 200))
def test_one_tick_equals_daily_ticks_equals_by_hand(tmp_path_factory: pytest.TempPathFactory,
                                                    wf: af.Workflow,
                                                    plans: list[tuple[int, int | None, int]],
                                                    horizon: int) -> None:
    """tick(on=D) writes the same log as a tick every day up to D, and as taking the timed
    steps by hand in date order; a second tick(on=D) adds nothing; all three verify."""
    folder = tmp_path_factory.mktemp("prop")
    until = DAY0 + dt.timedelta(days=horizon)
    logs = []
    for mode in ("once", "daily", "hand"):
        path = folder / f"{mode}.db"
        _build(path, wf, plans)
        with af.open_store(path, durability="normal") as store:
            if mode == "once":
                store.tick(on=until)
                first = log_of(store)
                store.tick(on=until)
                assert log_of(store) == first
            elif mode == "daily":
                day = DAY0
                while day <= until:
                    store.tick(on=day)
                    day += dt.timedelta(days=1)
            else:
                _by_hand(store, until)
            assert store.verify().ok
            logs.append(log_of(store))
    assert logs[0] == logs[1] == logs[2]


# --------------------------------------------------------------------------- racing tickers


def test_racing_tickers_record_each_timer_event_once(tmp_path: Path, wf: af.Workflow) -> None:
    """Four tickers in four processes at once: every timed step is stored exactly once."""
    db = tmp_path / "race.db"
    n_cases = 40
    with af.open_store(db, durability="normal") as store, store.bulk():
        for i in range(n_cases):
            submitted(store, wf, f"r{i:03}")
    start = CTX.Event()
    results = CTX.Queue()
    procs = [CTX.Process(target=wp.tick_once, args=(str(db), tw.TEXT, "2024-06-01", start,
                                                    results)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [o for o in outcomes if "error" in o]
    assert not errors, errors
    assert sum(o["taken"] for o in outcomes) == 3 * n_cases
    with af.open_store(db) as store:
        clock = [(e.case_id, e.trigger) for e in store.events() if e.actor == "clock"]
        assert len(clock) == len(set(clock)) == 3 * n_cases
        assert store.verify().ok
        assert timer_table(store) == []


# --------------------------------------------------------------------------- verify and forgery


@pytest.fixture
def timed_log(tmp_path: Path, wf: af.Workflow) -> Path:
    path = tmp_path / "timed.db"
    with af.open_store(path) as store:
        submitted(store, wf, "x", submitted_on=None)
    return path


def _problems(path: Path) -> list[str]:
    with af.open_store(path) as store:
        return store.verify().problems


def test_forged_clock_step_before_its_date_is_named(timed_log: Path) -> None:
    """A clock step recorded before its timer's date breaks the rule 'timer'."""
    forge(timed_log, "expire", "clock", "2024-02-01")
    found = _problems(timed_log)
    assert any("'expire' by 'clock' on 2024-02-01 breaks the rule 'timer': 'expire' is not "
               "due before 2024-03-01" in p for p in found), found


def test_forged_clock_step_that_is_not_timed_is_named(timed_log: Path) -> None:
    """The clock recorded as taking a person's step breaks the rule 'clock'."""
    forge(timed_log, "submit", "clock", "2024-01-05")
    found = _problems(timed_log)
    assert any("'submit' by 'clock' on 2024-01-05 breaks the rule 'clock'" in p
               for p in found), found


def test_forged_person_taking_a_timed_step_is_named(timed_log: Path) -> None:
    """A person recorded as taking a timed step, on its very date, breaks the rule 'actor'."""
    forge(timed_log, "expire", "applicant", "2024-03-01")
    found = _problems(timed_log)
    assert any("'expire' by 'applicant' on 2024-03-01 breaks the rule 'actor': 'applicant' "
               "may not take 'expire'" in p for p in found), found


def test_forged_step_past_an_overdue_timer_is_named(timed_log: Path) -> None:
    """A person's step dated after a timer fell due, the timer never recorded: 'timer overdue'."""
    forge(timed_log, "submit", "applicant", "2024-03-04")
    found = _problems(timed_log)
    assert any("breaks the rule 'timer overdue'" in p for p in found), found


def test_verify_names_a_timers_table_that_differs_from_the_log(timed_log: Path) -> None:
    """A timers row moved, or deleted, is named by verify."""
    conn = sqlite3.connect(timed_log, isolation_level=None)
    conn.execute("UPDATE timers SET due_on = '2030-01-01'")
    conn.close()
    found = _problems(timed_log)
    assert found == ["case 'x': the timers table says {'expire': '2030-01-01'}, the replay of "
                     "its events gives {'expire': '2024-03-01'}"]
    with af.open_store(timed_log) as store:
        assert store.rebuild_timers() == 1
        assert store.verify().ok


def test_an_old_store_is_migrated_with_a_timers_table(tmp_path: Path) -> None:
    """A schema-1 file gains the (empty) timers table and still verifies."""
    source = Path(__file__).parent / "fixtures" / "schema-1.db"
    path = tmp_path / "old.db"
    path.write_bytes(source.read_bytes())
    with af.open_store(path) as store:
        assert store.schema_version == 6
        assert timer_table(store) == []
        assert store.tick(on="2030-01-01").taken == ()
        assert store.verify().ok


# --------------------------------------------------------------------------- the flagship


def test_flagship_expiry_happens_by_itself_during_the_approval(store: af.Store,
                                                              submitted: af.Case) -> None:
    """A case still in the approval on 28 February 2022: after a tick, its old plan has
    expired (the clock's step, dated the expiry) and the approval's progress is kept;
    show's timers and the forecast said so before."""
    case = submitted
    case.fire("tmu.approve", actor="tmu", on="2021-12-06")
    timers = case.timers(on="2022-02-01")
    assert [(t.step, t.due.isoformat(), t.source, t.target, t.status) for t in timers] == [
        ("old_plan_expires", "2022-02-28", "old_running", "old_expired", "upcoming")]
    assert "Timer: 2022-02-28  the clock takes old_plan_expires (old_running -> old_expired; " \
           "data:expires)" in case.forecast(on="2022-02-01").describe()
    before = case.state
    report = store.tick(on="2022-03-02")
    assert [(s.case_id, s.trigger, s.on.isoformat()) for s in report.taken] == [
        ("example-plan", "old_plan_expires", "2022-02-28")]
    case = store.case(case.id)
    assert case.state == (before - {"old_running"}) | {"old_expired"}
    assert case.history[-1].actor == "clock"
    assert store.verify().ok


def test_flagship_forecast_warns_and_the_case_goes_on_after_the_expiry(
        store: af.Store, submitted: af.Case) -> None:
    """At LBF, the forecast warns that the clock takes the expiry before the start; nothing
    dated after the expiry is recorded before the tick; after it, LBF and the start go on."""
    case = submitted
    approve_all(case, on="2022-01-31")
    case.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    notes = case.forecast(on="2022-02-01").notes
    assert any(n.startswith("the clock takes 'old_plan_expires' on 2022-02-28 (old_running "
                            "-> old_expired), before 'start'") for n in notes), notes
    assert "fell due on 2022-02-28" in case.why_not("lbf.approve", actor="lbf",
                                                    on="2022-03-01")[0]
    assert store.tick(on="2022-02-27").taken == ()
    assert [s.trigger for s in store.tick(on="2022-03-01").taken] == ["old_plan_expires"]
    case = store.case(case.id)
    case.fire("lbf.approve", actor="lbf", on="2022-03-01")
    case.fire("start", actor="tmf", on="2022-03-01")
    assert case.is_final and store.case(case.id).timers() == [] and timer_table(store) == []
    assert store.verify().ok


def test_show_lists_the_timers(tmp_path: Path, flagship: af.Workflow, seed_data: Any) -> None:
    """approvalflow show has a Timers section and a 'timers' key."""
    db = tmp_path / "show.db"
    with af.open_store(db) as store:
        case = store.create_case(flagship, "m", actor="tmf", on="2021-11-01", data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-01")
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "show", "m", "--on", "2022-01-10"])
    assert result.exit_code == 0, result.output
    assert "Timers on 2022-01-10 (taken by the clock: approvalflow tick)" in result.output
    assert "upcoming 2022-02-28  old_plan_expires (old_running -> old_expired;" in result.output
    doc = json.loads(runner.invoke(cli, ["--db", str(db), "show", "m", "--on", "2022-01-10",
                                         "--json"]).output)
    assert [(t["step"], t["due"], t["days_left"]) for t in doc["timers"]] == [
        ("old_plan_expires", "2022-02-28", 49)]
    due = json.loads(runner.invoke(cli, ["--db", str(db), "due", "--on", "2022-02-20",
                                         "--json"]).output)
    assert ("timer", "old_plan_expires", "upcoming") in [(i["kind"], i["step"], i["status"])
                                                         for i in due]


# --------------------------------------------------------------------------- joins, deadlines

PARALLEL = '''
[workflow]
name = "two-signatures"
version = 1
initial = "signing"

[actors]
a = "A"
b = "B"
clerk = "Sekretær"

[states.signing]
parallel = true
deadline = { date = 2024-03-01 }
[states.left]
parent = "signing"
initial = "left_open"
[states.left_open]
parent = "left"
[states.left_done]
parent = "left"
final = true
[states.right]
parent = "signing"
initial = "right_open"
[states.right_open]
parent = "right"
[states.right_done]
parent = "right"
final = true
[states.filed]
[states.archived]
final = true
[states.dropped]
final = true

[[transitions]]
trigger = "a.sign"
source = "left_open"
target = "left_done"
actors = ["a"]

[[transitions]]
trigger = "b.sign"
source = "right_open"
target = "right_done"
actors = ["b"]

[[transitions]]
trigger = "file"
source = "signing"
target = "filed"
after = { join = "signing", days = 5 }

[[transitions]]
trigger = "drop"
source = "signing"
target = "dropped"
actors = ["clerk"]
join = false

[[transitions]]
trigger = "archive"
source = "filed"
target = "archived"
after = { step = "file", days = 30 }
'''


def test_a_join_timer_counts_from_the_day_every_region_was_done(store: af.Store) -> None:
    """after = { join = ID } is armed when the last region is done, and counts from that day;
    the step after = { step = ID } counts from that step's event."""
    wf = af.loads_workflow(PARALLEL)
    case = store.create_case(wf, "p", actor="clerk", on="2024-01-01")
    assert case.timers() == []  # the join is not complete: nothing to count from
    case.fire("a.sign", actor="a", on="2024-01-05")
    assert case.timers() == []
    case.fire("b.sign", actor="b", on="2024-01-20")
    assert [(t.step, t.due.isoformat()) for t in case.timers(on="2024-01-20")] == [
        ("file", "2024-01-25")]
    report = store.tick(on="2024-03-31")
    assert [(s.trigger, s.on.isoformat()) for s in report.taken] == [
        ("file", "2024-01-25"), ("archive", "2024-02-24")]
    assert store.case("p").is_final and store.verify().ok


def test_a_state_deadline_is_listed_once_and_met_by_any_exit(store: af.Store) -> None:
    """A state's deadline appears once (not once per exit), open while in the state, met
    when any exit leaves it in time, missed when it is left late or not left."""
    wf = af.loads_workflow(PARALLEL)
    case = store.create_case(wf, "d", actor="clerk", on="2024-01-01")
    listed = [(d.kind, d.step, d.status, d.due.isoformat()) for d in case.deadlines(on="2024-01-02")
              if d.kind == "state"]
    assert listed == [("state", "signing", "open", "2024-03-01")]
    late = store.create_case(wf, "late", actor="clerk", on="2024-01-01")
    assert [d.status for d in late.deadlines(on="2024-03-02") if d.kind == "state"] == ["missed"]
    case.fire("drop", actor="clerk", on="2024-02-01")  # an exit other than the join
    # a case that has ended lists the deadlines of states it left
    met = [(d.step, d.status, d.taken_on.isoformat()) for d in case.deadlines(on="2024-04-01")
           if d.kind == "state"]
    assert met == [("signing", "met", "2024-02-01")]


def test_forged_second_reminder_is_named(tmp_path: Path, wf: af.Workflow) -> None:
    """A reminder recorded twice in one stay breaks the rule 'timer': it was already taken."""
    path = tmp_path / "remind.db"
    with af.open_store(path) as store:
        submitted(store, wf, "x")
        store.tick(on="2024-02-01")  # the reminder, on 2024-01-30
    forge(path, "remind", "clock", "2024-01-30", target=["review"])
    found = _problems(path)
    assert any("'remind' by 'clock' on 2024-01-30 breaks the rule 'timer': the clock can't "
               "take 'remind': the clock took it on 2024-01-30, since the case last entered "
               "'review'" in p for p in found), found


def test_a_migrated_case_keeps_its_timers_and_verifies(store: af.Store,
                                                       submitted: af.Case) -> None:
    """Moved to another version of the flagship, the case keeps its expiry timer (the
    old plan's region keeps its entry date), the timers table follows, verify agrees."""
    wf = submitted.definition
    v2 = af.loads_workflow(wf.source_text.replace(f"version = {wf.version}",
                                                  f"version = {wf.version + 1}", 1))
    result = store.migrate(v2, actor="tmf", on="2021-12-01")
    assert [p.case_id for p in result.movable] == [submitted.id]
    case = store.case(submitted.id)
    assert case.workflow_version == wf.version + 1
    assert [(t.step, t.due.isoformat()) for t in case.timers(on="2021-12-01")] == [
        ("old_plan_expires", "2022-02-28")]
    assert timer_table(store) == [("example-plan", "old_plan_expires", "2022-02-28")]
    assert store.verify().ok
    assert [s.trigger for s in store.tick(on="2022-03-01").taken] == ["old_plan_expires"]
    assert "old_expired" in store.case(submitted.id).state and store.verify().ok



def test_a_migration_does_not_start_the_clock_again(store: af.Store, wf: af.Workflow) -> None:
    """A state the new version keeps counts from when the case entered it, not from the
    migration: moving a case to an identical version leaves its reminder and its
    escalation on their dates, and the clock still takes them then."""
    submitted(store, wf, "x")  # in review since 2024-01-10
    before = [(t.step, t.due) for t in store.case("x").timers(on="2024-01-20")]
    assert before == [("remind", dt.date(2024, 1, 30)), ("escalate", dt.date(2024, 2, 10))]
    v2 = af.loads_workflow(tw.TEXT.replace("version = 1", "version = 2", 1))
    assert [p.case_id for p in store.migrate(v2, actor="applicant", on="2024-01-25").movable] \
        == ["x"]
    assert [(t.step, t.due) for t in store.case("x").timers(on="2024-01-25")] == before
    assert timer_table(store) == [("x", "escalate", "2024-02-10"), ("x", "remind", "2024-01-30")]
    taken = store.tick(on="2024-02-11").taken
    assert [(s.trigger, s.on) for s in taken] == [("remind", dt.date(2024, 1, 30)),
                                                  ("escalate", dt.date(2024, 2, 10))]
    assert store.verify().ok


SELF_LOOP = """
[workflow]
name = "self-loop"
version = 1
initial = "open"

[actors]
clerk = "Clerk"

[states.open]
[states.closed]
final = true

[[transitions]]
trigger = "extend"
source = "open"
target = "open"
actors = ["clerk"]

[[transitions]]
trigger = "expire"
source = "open"
target = "closed"
after = { state = "open", days = 10 }
"""


def test_a_step_from_a_state_to_itself_starts_its_timer_again(store: af.Store) -> None:
    """A step from 'open' to 'open' re-enters it (as the invariants count it), so a timer
    that counts from entering 'open' counts from that step: the clock waits ten days
    from it, and the timers table, tick and verify agree."""
    wf = af.loads_workflow(SELF_LOOP)
    case = store.create_case(wf, "s-1", actor="clerk", on="2024-01-01")
    assert [t.due for t in case.timers()] == [dt.date(2024, 1, 11)]
    case.fire("extend", actor="clerk", on="2024-01-05")
    assert [t.due for t in store.case("s-1").timers()] == [dt.date(2024, 1, 15)]
    assert store.tick(on="2024-01-14").taken == ()
    assert [(e.trigger, e.on) for e in store.tick(on="2024-01-20").taken] == \
        [("expire", dt.date(2024, 1, 15))]
    assert store.case("s-1").is_final and store.verify().ok


def test_a_state_deadline_counts_from_a_step_to_itself_as_its_escalation_does(
        store: af.Store) -> None:
    """A step from 'open' to 'open' enters it again for the deadline too: the deadline is
    listed ten days after that step (it was counted from the first entry, five days
    before the clock escalates it), in deadlines and due alike."""
    wf = af.loads_workflow(SELF_LOOP.replace("[states.open]\n", '[states.open]\ndeadline = '
                                             '{ after = { state = "open" }, days = 10 }\n')
                           .replace('after = { state = "open", days = 10 }',
                                    'escalates = "open"'))
    case = store.create_case(wf, "s-1", actor="clerk", on="2024-01-01")
    case.fire("extend", actor="clerk", on="2024-01-05")
    case = store.case("s-1")
    assert [(d.step, d.due) for d in case.deadlines(on="2024-01-06")] == [
        ("open", dt.date(2024, 1, 15))]
    assert [(t.step, t.due) for t in case.timers()] == [("expire", dt.date(2024, 1, 16))]
    assert [(d.kind, d.due) for d in store.due(on="2024-01-06")] == [
        ("deadline", dt.date(2024, 1, 15)), ("timer", dt.date(2024, 1, 16))]
    assert [(e.trigger, e.on) for e in store.tick(on="2024-01-20").taken] == \
        [("expire", dt.date(2024, 1, 16))]
    assert store.verify().ok


def test_due_names_each_timer_with_its_own_versions_label(store: af.Store,
                                                          wf: af.Workflow) -> None:
    """The timers due are labelled as each case's own workflow version labels the step,
    and a workflow filter keeps only that workflow's, with two versions and two workflows
    stored (the answer read from the tables equals the one replayed)."""
    v2 = af.loads_workflow(tw.TEXT.replace("version = 1", "version = 2", 1).replace(
        'label = "Påmindelse til dekanen"', 'label = "Rykker"'))
    other = af.loads_workflow(tw.TEXT.replace('name = "dean-review"', 'name = "other"', 1))
    submitted(store, wf, "one")
    submitted(store, v2, "two")
    labels = {(i.case_id, i.step): i.label for i in store.due(on="2024-02-15", within_days=0)
              if i.kind == "timer"}
    assert labels[("one", "remind")] == "Påmindelse til dekanen"
    assert labels[("two", "remind")] == "Rykker"
    submitted(store, other, "three")
    for name in (None, "dean-review", "other"):
        got = store.due(on="2024-02-15", within_days=30, workflow=name)
        assert got == store.due(on="2024-02-15", within_days=30, workflow=name,
                                as_of="2100-01-01"), name
    assert {i.case_id for i in store.due(on="2024-02-15", within_days=30,
                                         workflow="other")} == {"three"}
