"""The projection tables (inbox, due, case data): kept with every event, equal to replay.

Property tests drive random steps, data and expectations on the bundled workflows and
check each projection against what replaying every case says (``Case.awaiting``,
``due`` by replay, the case data), that ``rebuild`` and the schema migration reproduce
the tables row for row, and that ``verify`` names a tampered row's case and table.
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import approvalflow as af
from approvalflow.demo import SEED_DATA
from approvalflow.engine import engine_for
from approvalflow.store.projections import TABLES, field_value, fields
from tests import rawdb

from .conftest import approve_all

pytestmark = pytest.mark.backends

START = dt.date(2021, 11, 1)
FLAGSHIP = "boligsocial-helhedsplan"
#: The data each bundled workflow's cases start with (the flagship allows only its own keys).
CREATION_DATA: dict[str, dict[str, Any]] = {
    FLAGSHIP: SEED_DATA,
    "medfinansiering-restbeloeb": {"amount": 600_000},
}
#: A workflow that lets a case start with, and a step carry, any data.
FREE = af.loads_workflow("""
[workflow]
name = "free-data"
version = 1
initial = "draft"

[actors]
tmf = "T"

[states.draft]
[states.submitted]
[states.done]
final = true

[[transitions]]
trigger = "submit"
source = "draft"
target = "submitted"
actors = ["tmf"]

[[transitions]]
trigger = "finish"
source = "submitted"
target = "done"
actors = ["tmf"]
""", source="free-data.toml")
#: Days the questions are asked on: before, during and long after the random runs.
#: The flagship's LBF approval (due by data:expires, 2022-02-28) turns "at risk" on
#: 2022-02-01 when it is given a 28 days' typical duration: asked around that day too.
ASK_ON = (START, START + dt.timedelta(days=40), dt.date(2022, 1, 31), dt.date(2022, 2, 1),
          dt.date(2022, 2, 14), START + dt.timedelta(days=120), START + dt.timedelta(days=400))

#: One action: (what, a choice index, days to move on, a number for data).
actions = st.lists(st.tuples(st.sampled_from(["fire", "fire", "fire", "data", "expect"]),
                             st.integers(0, 50), st.integers(0, 25), st.integers(0, 3)),
                   max_size=40)


def snapshot(url: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection table's rows, sorted (read with a separate connection)."""
    with rawdb.raw(str(url)) as conn:
        return {t: sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {t}").fetchall())
                for t in TABLES}


def run_actions(store: af.Store, wf: af.Workflow, todo: list[tuple[str, int, int, int]],
                n_cases: int = 3) -> None:
    """Create ``n_cases`` cases and apply the actions to them in turn."""
    engine = engine_for(wf)
    creator = "tmf" if "tmf" in wf.actors else sorted(wf.actors)[0]
    cases = [store.create_case(wf, f"c{i}", actor=creator, on=START,
                               data=copy.deepcopy(CREATION_DATA.get(wf.name, {})))
             for i in range(n_cases)]
    day = START
    for n, (what, pick, days, number) in enumerate(todo):
        case = cases[n % n_cases]
        day += dt.timedelta(days=days)
        if case.is_final:
            continue
        if what == "expect":
            if store.tick(on=day).taken:  # a timed step due by then is the clock's first
                cases = [store.case(c.id) for c in cases]
                case = cases[n % n_cases]
                if case.is_final:
                    continue
            steps = sorted(wf.triggers)
            case.expect(steps[pick % len(steps)], day + dt.timedelta(days=pick),
                        actor=sorted(wf.actors)[pick % len(wf.actors)], said_on=day)
            continue
        options = case.allowed(on=day)
        if not options:
            continue
        trigger = options[pick % len(options)]
        t = engine.enabled_transition(case.state, trigger)
        assert t is not None
        actor = next(a for a in t.actors if case.why_not(trigger, actor=a, on=day) == [])
        data = ({"extra": {"n": number, "flag": number % 2 == 0}, "note_count": number}
                if what == "data" else None)
        if data is not None and t.sets is not None:  # only the keys the step may carry
            data = {key: number for key in t.sets if "." not in key} or None
        if case.why_not(trigger, actor=actor, on=day, data=data):
            data = None
        case.fire(trigger, actor=actor, on=day, data=data)


def inbox_as_replay(store: af.Store, loaded: list[af.Case], actor: str,
                    on: Any) -> dict[str, list[str]]:
    """Assert that ``actor``'s inbox on ``on`` is what replaying ``loaded`` says; return it."""
    got = {a.case_id: list(a.triggers) for a in store.awaiting(actor, on=on)}
    want = {c.id: c.awaiting(on=on)[actor] for c in loaded if actor in c.awaiting(on=on)}
    assert got == want, (actor, on)
    return want


def check_against_replay(store: af.Store, wf: af.Workflow) -> None:
    """Every question the projections answer, against the same question asked by replay."""
    loaded = [store.case(c.case_id) for c in store.cases()]
    for on in ASK_ON:
        for actor in sorted(wf.actors):
            want = inbox_as_replay(store, loaded, actor, on)
            ids = [c.case_id for c in store.cases(awaiting=actor, on=on)]
            assert ids == sorted(want), (actor, on)
        for within in (0, 14, 365):
            replayed = store.due(on=on, within_days=within, as_of=dt.date(2100, 1, 1))
            assert store.due(on=on, within_days=within) == replayed, (on, within)
            assert store.due(on=on, within_days=within, workflow=wf.name) == replayed
        assert store.due(on=on, within_days=365, workflow="another") == []
        overdue = {i.case_id for i in store.due(on=on, within_days=0, as_of="2100-01-01")
                   if i.status == "missed"}
        assert {c.case_id for c in store.cases(overdue=True, on=on)} == overdue
    for case in loaded:
        for path, value in fields(case.data):
            found = {c.case_id for c in store.cases(data={path: value})}
            assert case.id in found
            assert all(field_value(dict(fields(store.case(i).data))[path]) == value
                       for i in found)
        last = case.last_on
        assert last is not None
        assert case.id in {c.case_id for c in store.cases(since=last, until=last)}
        assert case.id not in {c.case_id for c in store.cases(until=last - dt.timedelta(1))}


def run_and_check(path: Path, wf: af.Workflow,
                  todo: list[tuple[str, int, int, int]]) -> dict[str, list[tuple[Any, ...]]]:
    """Run ``todo`` in a new store at ``path``; assert that every projection answers as
    replay does, that verify finds nothing and that rebuild gives the same rows; the
    rows."""
    with af.open_store(path, durability="normal") as store:
        run_actions(store, wf, todo)
        check_against_replay(store, wf)
        report = store.verify()
        assert report.ok, report.problems
        kept = snapshot(path)
        store.rebuild()
    assert snapshot(path) == kept
    return kept


@pytest.mark.parametrize("name", af.bundled_workflows())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(todo=actions)
def test_projections_equal_replay(name: str, todo: list[tuple[str, int, int, int]]) -> None:
    """After random steps, data and expectations, every projection answers as replay does;
    verify finds nothing; rebuild and the 4 -> 5 migration give the same rows."""
    folder = Path(tempfile.mkdtemp(prefix="af-proj-"))
    path = folder / "cases.db"
    try:
        kept = run_and_check(path, af.load_workflow(name), todo)
        # the same file as schema 4 wrote it: no projection tables; opening migrates
        conn = sqlite3.connect(path)
        for table in TABLES:
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP INDEX cases_last_on")
        conn.execute("PRAGMA user_version = 4")
        conn.commit()
        conn.close()
        with af.open_store(path) as store:
            assert store.schema_version == af.store.SCHEMA_VERSION
            assert store.meta["migrated_from"] == "4"
        assert snapshot(path) == kept
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: Rounds of one step for each of three cases: the first two take the same step on the
#: same day, the third the same one or another, after ``days`` more.
shared_rounds = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.booleans(),
                                   st.integers(0, 20)), max_size=14)


@pytest.mark.parametrize("name", af.bundled_workflows())
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(rounds=shared_rounds)
def test_cases_taking_the_same_steps_differently_keep_their_own_rows(
        name: str, rounds: list[tuple[int, int, bool, int]]) -> None:
    """Cases in the same place that take the same step, on the same day or a later one,
    by the same or another voter, or another step: each keeps the rows replay gives it
    (the rows after a step are shared only between cases that had the same rows and took
    the same step), and verify and rebuild agree."""
    wf = af.load_workflow(name)
    todo: list[tuple[str, int, int, int]] = []
    for pick, other, same, days in rounds:
        todo += [("fire", pick, days, 0), ("fire", pick, 0, 0),
                 ("fire", pick if same else other, days % 3, 0)]
    folder = Path(tempfile.mkdtemp(prefix="af-shared-"))
    try:
        run_and_check(folder / "cases.db", wf, todo)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


STEP_DEADLINE = af.loads_workflow("""
[workflow]
name = "step-deadline"
version = 1
initial = "a"

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
deadline = { date = 2030-01-01 }

[[transitions]]
trigger = "done"
source = "b"
target = "c"
actors = ["p"]
deadline = { after = "go", days = 30 }
""", source="step-deadline.toml")


def test_the_same_step_on_another_day_has_its_own_due_rows(store: af.Store) -> None:
    """Two cases with the same rows take the same step on two days: a deadline counted
    from that step falls due 30 days after each one's own date."""
    first = store.create_case(STEP_DEADLINE, "d1", actor="p", on="2024-01-01")
    second = store.create_case(STEP_DEADLINE, "d2", actor="p", on="2024-01-01")
    first.fire("go", actor="p", on="2024-01-02")
    second.fire("go", actor="p", on="2024-01-20")
    due = {i.case_id: i.due for i in store.due(on="2024-01-01", within_days=400)}
    assert due == {"d1": dt.date(2024, 2, 1), "d2": dt.date(2024, 2, 19)}
    assert store.verify().ok


def test_the_same_ballot_by_another_voter_has_its_own_inbox(store: af.Store,
                                                            submitted: af.Case,
                                                            seed_data: dict[str, Any]) -> None:
    """Two cases with the same rows each take a VIBO department's yes, by two departments:
    each department leaves the inbox of its own case only."""
    other = store.create_case(FLAGSHIP, "other", actor="tmf", on="2021-11-01",
                              data=seed_data)
    other.fire("submit", actor="tmf", on="2021-11-01")
    submitted.fire("vibo.approve", actor="vibo_afd_1", on="2021-11-02")
    other.fire("vibo.approve", actor="vibo_afd_2", on="2021-11-02")
    for voter, waits_in in (("vibo_afd_1", {"other"}), ("vibo_afd_2", {submitted.id}),
                            ("vibo_afd_3", {"other", submitted.id})):
        assert {a.case_id for a in store.awaiting(voter, on="2021-11-02")} == waits_in
    assert store.verify().ok


def test_import_writes_the_same_projections(tmp_path: Path, seed_data: dict[str, Any]) -> None:
    """import_events leaves the same projection rows as create_case and fire, also when
    it continues a case already in the store, and across its batches."""
    steps = [("submit", "tmf"), ("tmu.approve", "tmu"), ("aab.approve", "aab")]
    said = {"tmu.approve": {"goals_commitment": "the four goals"}}  # the one step with data
    records: list[dict[str, Any]] = []
    with af.open_store(tmp_path / "api.db", durability="normal") as store:
        for i in range(700):  # 2,800 events: more than one batch of the import
            case = store.create_case(FLAGSHIP, f"k{i:04d}", actor="tmf", on=START,
                                     data={**seed_data, "title": f"t{i % 7}"})
            records.append({"case_id": case.id, "trigger": "create", "workflow": FLAGSHIP,
                            "actor": "tmf", "on": START,
                            "data": {**seed_data, "title": f"t{i % 7}"}})
            for trigger, actor in steps:
                case.fire(trigger, actor=actor, on=START, data=said.get(trigger))
                records.append({"case_id": case.id, "trigger": trigger, "actor": actor,
                                "on": START, "data": said.get(trigger)})
    with af.open_store(tmp_path / "imported.db", durability="normal") as store:
        first = store.create_case(FLAGSHIP, "k0000", actor="tmf", on=START,
                                  data={**seed_data, "title": "t0"})
        assert first.version == 1
        assert store.import_events(records[1:]) == len(records) - 1
        assert store.verify().ok
    assert snapshot(tmp_path / "imported.db") == snapshot(tmp_path / "api.db")


def test_due_turns_at_risk_on_the_day_replay_says(store: af.Store,
                                                   seed_data: dict[str, Any]) -> None:
    """A deadline whose step is forecast later as the day asked moves on is "open", then
    "at risk" from the first day replay says so, read from the table. (The flagship with
    an assumed 28 days' duration of LBF's approval, submitted on 2021-11-01: the approvals
    and the move to LBF are forecast on the day asked, the approval 28 days later, and it
    is due by 2022-02-28.)"""
    text = af.load_workflow(FLAGSHIP).source_text
    text = text.replace('deadline = { data = "expires" }',
                        'deadline = { data = "expires" }\nduration_days = 28')
    text = text.replace("version = 2", "version = 28", 1)
    assumed = af.loads_workflow(text, source="flagship-with-an-assumed-lbf-duration.toml")
    case = store.create_case(assumed, "example-plan", actor="tmf", on="2021-11-01",
                             data=seed_data)
    case.fire("submit", actor="tmf", on="2021-11-01")
    statuses = {}
    for day in range(25, 35):
        on = dt.date(2022, 1, day) if day <= 31 else dt.date(2022, 2, day - 31)
        got = [i for i in store.due(on=on, within_days=60) if i.step == "lbf.approve"]
        replayed = [i for i in store.due(on=on, within_days=60, as_of="2100-01-01")
                    if i.step == "lbf.approve"]
        assert got == replayed
        statuses[on.isoformat()] = got[0].status
    assert statuses["2022-01-31"] == "open" and statuses["2022-02-01"] == "at risk"


def test_rolled_back_bulk_leaves_no_projection_rows(store: af.Store, submitted: af.Case) -> None:
    """A bulk block that fails leaves the projection tables as they were."""
    before = snapshot(store.path)
    with pytest.raises(RuntimeError), store.bulk():
        submitted.fire("tmu.approve", actor="tmu", on="2021-11-02",
                       data={"goals_commitment": "the four goals"})
        store.create_case(FLAGSHIP, "other", actor="tmf", on="2021-11-02")
        raise RuntimeError("stop")
    assert snapshot(store.path) == before
    assert [a.case_id for a in store.awaiting("tmu", on="2021-11-05")] == [submitted.id]


def test_awaiting_rechecks_guards_and_dates(store: af.Store, submitted: af.Case) -> None:
    """A guarded step is in the inbox only while its guard holds; nothing is awaited on a
    day before the case's last event."""
    approve_all(submitted, on="2022-01-31")
    # at the join: send_to_lbf has the guard financing_ok, which the seed's budget meets
    assert [a.triggers for a in store.awaiting("tmf", on="2022-02-01")] == [("send_to_lbf",)]
    assert store.awaiting("tmf", on="2022-01-30") == []
    other = store.create_case(FLAGSHIP, "broken", actor="tmf", on="2021-11-01",
                              data={"budget": {"total": 1, "lbf": 5}})
    other.fire("submit", actor="tmf", on="2021-11-01")
    approve_all(other, on="2022-01-31")
    assert other.awaiting(on="2022-02-01").get("tmf") is None
    assert [a.case_id for a in store.awaiting("tmf", on="2022-02-01")] == [submitted.id]


def test_cases_pages_and_counts(store: af.Store) -> None:
    """limit and offset page through the sorted result; total counts every match."""
    for i in range(7):
        case = store.create_case(FREE, f"p{i}", actor="tmf", on="2021-11-01",
                                 data={"n": i % 2})
        if i < 3:
            case.fire("submit", actor="tmf", on="2021-11-02")
    page = store.cases(limit=3, offset=2)
    assert [c.case_id for c in page] == ["p2", "p3", "p4"]
    assert (page.total, page.offset, page.limit) == (7, 2, 3)
    odd = store.cases(data={"n": 1}, limit=1)
    assert [c.case_id for c in odd] == ["p1"] and odd.total == 3
    assert [c.case_id for c in store.cases(since="2021-11-02")] == ["p0", "p1", "p2"]
    assert store.cases(state="draft", limit=2).total == 4
    assert [c.case_id for c in store.cases(state="draft", limit=2, offset=1)] == ["p4", "p5"]
    assert store.cases(final=True).total == 0 and store.cases(final=False).total == 7
    with pytest.raises(af.InvalidInputError, match="limit must be a whole number"):
        store.cases(limit=-1)


@pytest.mark.parametrize(("table", "sql"), [
    ("case_awaiting", "UPDATE case_awaiting SET guarded = 1 "
                      "WHERE case_id = 'example-plan' AND trigger = 'tmu.approve'"),
    ("case_awaiting", "INSERT INTO case_awaiting VALUES ('lbf', 'example-plan', "
                      "'lbf.approve', 0)"),
    ("case_due", "UPDATE case_due SET due = '2030-01-01' WHERE case_id = 'example-plan'"),
    ("case_due", "DELETE FROM case_due WHERE case_id = 'example-plan'"),
    ("case_data", "UPDATE case_data SET data = '{}' WHERE case_id = 'example-plan'"),
    ("case_fields", "UPDATE case_fields SET value = 'X' WHERE case_id = 'example-plan' "
                    "AND path = 'plan'"),
    ("case_fields", "INSERT INTO case_fields VALUES ('plan', 'Y', 'ghost')"),
])
def test_verify_reports_a_tampered_projection_row(store_url: str, submitted: af.Case,
                                                  table: str, sql: str) -> None:
    """An edited, added or removed projection row is a problem naming its case and table;
    rebuild puts it right."""
    store = submitted._store
    assert isinstance(store, af.Store)
    assert store.verify().ok
    with rawdb.raw(store_url) as conn:
        conn.execute(sql)
    report = store.verify()
    assert not report.ok
    named = [p for p in report.problems if f"the {table} table" in p]
    assert named, report.problems
    assert "'example-plan'" in named[0] or "'ghost'" in named[0]
    store.rebuild()
    assert store.verify().ok


def test_the_inbox_of_cases_with_a_timer_due_answers_as_replay(store: af.Store) -> None:
    """Cases whose timed step fell due before the day asked: one the clock could take (it
    blocks every step), one its guard holds back (it blocks nothing), one at a timer that
    is not due yet, and a reminder: the inbox and the cases filter answer as replay does,
    for each actor and day."""
    from approvalflow.guards import unregister_guard
    from tests import timed_workflow as tw

    text = tw.TEXT.replace('at = { data = "expires" }',
                           'at = { data = "expires" }\nguards = ["not_on_hold"]')

    @af.guard("not_on_hold")
    def not_on_hold(ctx: af.GuardContext) -> list[str]:
        return ["the case is on hold"] if ctx.data.get("hold") else []

    try:
        wf = af.loads_workflow(text)
        for case_id, hold in (("held", True), ("free", False)):
            store.create_case(wf, case_id, actor="applicant", on="2024-01-01",
                              data={"expires": "2024-03-01", "hold": hold})
        review = store.create_case(wf, "review", actor="applicant", on="2024-01-01",
                                   data={"expires": "2024-12-01"})
        review.fire("submit", actor="applicant", on="2024-01-02")
        for on in ("2024-01-20", "2024-01-25", "2024-02-15", "2024-03-01", "2024-03-02",
                   "2024-06-01"):
            loaded = [store.case(c.case_id) for c in store.cases()]
            for actor in sorted(wf.actors):
                want = inbox_as_replay(store, loaded, actor, on)
                assert [c.case_id for c in store.cases(awaiting=actor, on=on)] == sorted(want)
        # the held case's timer waits, so the applicant may still submit it; the free one's
        # is due and blocks everything until the clock takes it
        assert [a.case_id for a in store.awaiting("applicant", on="2024-03-02")] == ["held"]
    finally:
        unregister_guard("not_on_hold")


def test_the_inbox_of_a_case_with_a_join_timer_due_answers_as_replay(store: af.Store) -> None:
    """A timed step that joins a parallel state (a rule that reads more of the case than
    the tables hold) fell due before the day asked: the inbox replays that case, and
    answers as replay does."""
    from tests.test_timers import PARALLEL

    wf = af.loads_workflow(PARALLEL)
    signed = store.create_case(wf, "signed", actor="clerk", on="2024-01-01")
    signed.fire("a.sign", actor="a", on="2024-01-05")
    signed.fire("b.sign", actor="b", on="2024-01-20")
    store.create_case(wf, "open", actor="clerk", on="2024-01-01")
    for on in ("2024-01-20", "2024-01-25", "2024-01-26", "2024-03-31"):
        loaded = [store.case(c.case_id) for c in store.cases()]
        for actor in sorted(wf.actors):
            inbox_as_replay(store, loaded, actor, on)
    assert [a.case_id for a in store.awaiting("clerk", on="2024-01-26")] == ["open"]


def test_long_data_values_and_keys_are_stored_and_matched(store: af.Store) -> None:
    """Data with a text value and a key of thousands of characters: stored, matched, verified."""
    import random
    import string

    rng = random.Random(7)
    long_value = "".join(rng.choices(string.ascii_letters + string.digits, k=6000))
    long_key = "".join(rng.choices(string.ascii_letters, k=6000))
    other_value = long_value[::-1]
    case = store.create_case(FREE, "long", actor="tmf", on=START,
                             data={"text": long_value, "group": {long_key: "v"}})
    store.create_case(FREE, "short", actor="tmf", on=START, data={"text": "short"})
    assert [c.case_id for c in store.cases(data={"text": long_value})] == ["long"]
    assert [c.case_id for c in store.cases(data={f"group.{long_key}": "v"})] == ["long"]
    case.fire("submit", actor="tmf", on=START, data={"text": other_value})
    assert store.cases(data={"text": long_value}).total == 0
    assert [c.case_id for c in store.cases(data={"text": other_value})] == ["long"]
    assert store.case("long").data["text"] == other_value
    assert store.rebuild()["case_fields"] == 3
    report = store.verify()
    assert report.ok, report.problems


def test_a_dotted_key_and_the_nested_key_it_spells(store: af.Store) -> None:
    """Data holding both "a.b" and {"a": {"b": ...}} is created, stepped, rebuilt and verified."""
    both = store.create_case(FREE, "both", actor="tmf", on="2021-11-01",
                             data={"a.b": 1, "a": {"b": 1}})
    later = store.create_case(FREE, "later", actor="tmf", on="2021-11-01", data={"a.b": 1})
    later.fire("submit", actor="tmf", on="2021-11-02", data={"a": {"b": 1}})
    assert store.verify().ok, store.verify().problems
    before = snapshot(store.path)
    store.rebuild()
    assert snapshot(store.path) == before
    assert [c.case_id for c in store.cases(data={"a.b": 1})] == [both.id, later.id]


FOUR_EYES = af.loads_workflow("""
[workflow]
name = "four-eyes"
version = 1
initial = "draft"

[actors]
tmf = "T"
boss = "B"

[states.draft]
[states.submitted]
[states.done]
final = true

[[transitions]]
trigger = "submit"
source = "draft"
target = "submitted"
actors = ["tmf"]

[[transitions]]
trigger = "sign"
source = "submitted"
target = "done"
actors = ["boss", "tmf"]
not_by = ["submit"]
""", source="four-eyes.toml")


def test_a_four_eyes_step_is_in_the_inbox(store: af.Store) -> None:
    """A step with not_by is awaited across cases as Case.awaiting says (no person in mind)."""
    case = store.create_case(FOUR_EYES, "signed", actor="tmf", on="2021-11-01")
    case.fire("submit", actor="tmf", on="2021-11-02", by="alice")
    assert case.awaiting(on="2021-11-03") == {"tmf": ["sign"], "boss": ["sign"]}
    for actor in ("boss", "tmf"):
        assert [(a.case_id, a.triggers) for a in store.awaiting(actor, on="2021-11-03")] == [
            ("signed", ("sign",))]
        assert [c.case_id for c in store.cases(awaiting=actor, on="2021-11-03")] == ["signed"]


STATE_DEADLINES = af.loads_workflow("""
[workflow]
name = "state-deadlines"
version = 1
initial = "draft"

[actors]
tmf = "T"

[states.draft]
[states.review]
deadline = { after = { state = "review" }, days = 30 }
[states.signing]
deadline = { data = "sign_by" }
[states.done]
final = true

[[transitions]]
trigger = "submit"
source = "draft"
target = "review"
actors = ["tmf"]

[[transitions]]
trigger = "accept"
source = "review"
target = "signing"
actors = ["tmf"]

[[transitions]]
trigger = "sign"
source = "signing"
target = "done"
actors = ["tmf"]
""", source="state-deadlines.toml")


def test_state_deadlines_are_due_as_replay_says(store: af.Store) -> None:
    """A state's deadline is listed by due and cases(overdue=True) as replaying says."""
    for i, sign_by in enumerate(("2021-12-01", "2022-03-01")):
        case = store.create_case(STATE_DEADLINES, f"s{i}", actor="tmf", on="2021-11-01",
                                 data={"sign_by": sign_by})
        case.fire("submit", actor="tmf", on="2021-11-01")
    store.case("s1").fire("accept", actor="tmf", on="2021-11-02")
    store.case("s0").fire("accept", actor="tmf", on="2021-11-02")
    store.create_case(STATE_DEADLINES, "s2", actor="tmf", on="2021-11-01").fire(
        "submit", actor="tmf", on="2021-11-03")
    for on in ("2021-11-03", "2021-12-02", "2021-12-03", "2022-03-02"):
        replayed = store.due(on=on, within_days=365, as_of="2100-01-01")
        assert store.due(on=on, within_days=365) == replayed, on
        assert {(i.case_id, i.step, i.due.isoformat()) for i in replayed} >= {
            ("s0", "signing", "2021-12-01"), ("s1", "signing", "2022-03-01"),
            ("s2", "review", "2021-12-03")}
        missed = {i.case_id for i in replayed if i.status == "missed"}
        assert {c.case_id for c in store.cases(overdue=True, on=on)} == missed, on
    assert {c.case_id for c in store.cases(overdue=True, on="2021-12-04")} == {"s0", "s2"}


def test_a_state_deadline_is_at_risk_as_replay_says(store: af.Store) -> None:
    """A state's deadline is "at risk" once the step leaving it is expected after it."""
    wf = af.loads_workflow("""
[workflow]
name = "one-state-deadline"
version = 1
initial = "draft"
goal = "done"

[actors]
tmf = "T"

[states.draft]
[states.review]
deadline = { after = { state = "review" }, days = 20 }
[states.done]
final = true

[[transitions]]
trigger = "submit"
source = "draft"
target = "review"
actors = ["tmf"]

[[transitions]]
trigger = "accept"
source = "review"
target = "done"
actors = ["tmf"]
duration_days = 5
""", source="one-state-deadline.toml")
    case = store.create_case(wf, "late", actor="tmf", on="2021-11-01")
    case.fire("submit", actor="tmf", on="2021-11-01")
    case.expect("accept", "2021-12-01", actor="tmf", said_on="2021-11-02")
    for on in ("2021-11-03", "2021-11-21", "2021-11-22"):
        replayed = store.due(on=on, within_days=100, as_of="2100-01-01")
        assert store.due(on=on, within_days=100) == replayed, on
    assert [(i.step, i.status) for i in store.due(on="2021-11-03", within_days=30)
            if i.kind == "deadline"] == [
        ("review", "at risk")]


def test_a_data_filter_on_an_object_is_refused(store: af.Store) -> None:
    """An object as a data filter's value is refused, not silently matched by no case."""
    store.create_case(FREE, "obj", actor="tmf", on="2021-11-01",
                      data={"o": {"x": 1}, "e": {}})
    for value in ({"x": 1}, {}):
        with pytest.raises(af.InvalidInputError, match="name the keys"):
            store.cases(data={"o": value})
    assert [c.case_id for c in store.cases(data={"o.x": 1})] == ["obj"]
