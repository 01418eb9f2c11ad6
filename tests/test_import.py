"""Store.import_events: the batched path writes the log create_case + fire would write."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import approvalflow as af
import approvalflow.store as store_module
from approvalflow import guards
from approvalflow.store import importing
from approvalflow.store import rows as store_rows
from tests import grant_guards  # noqa: F401  (registers the research grant's guard)

pytestmark = pytest.mark.backends

DAY = "2021-12-06"
#: The steps of a case after its creation: submit, the approvals, the join to LBF.
STEPS = [("submit", "tmf"), ("tmu.approve", "tmu"), ("aab.approve", "aab"),
         ("3b.approve", "3b"), ("vibo.approve", "vibo_afd_1"), ("vibo.approve", "vibo_afd_2"),
         ("vibo.approve", "vibo_afd_3"), ("vibo.approve", "vibo_afd_4"), ("send_to_lbf", "tmf")]


def _records(wf: af.Workflow, data: dict[str, Any], n_cases: int) -> list[dict[str, Any]]:
    """Case i takes the first (i % 10) steps: batches end in the middle of cases."""
    out: list[dict[str, Any]] = []
    for i in range(n_cases):
        case_id = f"case-{i:04d}"
        out.append({"case_id": case_id, "trigger": "create", "workflow": wf, "actor": "tmf",
                    "on": DAY, "data": data, "note": f"created {i}"})
        for trigger, actor in STEPS[: i % 10]:
            out.append({"case_id": case_id, "trigger": trigger, "actor": actor, "on": DAY})
    return out


def _fire_all(store: af.Store, records: list[dict[str, Any]]) -> None:
    case = None
    for r in records:
        if r["trigger"] == "create":
            case = store.create_case(r["workflow"], r["case_id"], actor=r["actor"], on=r["on"],
                                     data=r["data"], note=r["note"])
        else:
            if case is None or case.id != r["case_id"]:
                case = store.case(r["case_id"])
            case.fire(r["trigger"], actor=r["actor"], on=r["on"])


def _log(store: af.Store) -> list[dict[str, Any]]:
    skip = {"recorded_at", "hash", "prev_hash"}
    return [{k: v for k, v in e.to_dict().items() if k not in skip} for e in store.events()]


def _summaries(store: af.Store) -> list[dict[str, Any]]:
    out = [c.to_dict() for c in store.cases()]
    for c in out:
        c.pop("updated_at")
    return out


def test_import_writes_the_log_that_fire_writes(tmp_path: Path, flagship, seed_data) -> None:
    """Imported records give the same events, states and summaries as create_case + fire."""
    records = _records(flagship, seed_data, 480)  # 2,640 events: batches split mid-case
    # cases that come back: one long written (case 9), one still in the batch (case 469)
    records += [{"case_id": c, "trigger": "lbf.approve", "actor": "lbf", "on": "2022-02-01"}
                for c in ("case-0009", "case-0469")]
    with af.open_store(tmp_path / "imported.db") as imported, \
            af.open_store(tmp_path / "fired.db") as fired:
        assert imported.import_events(iter(records)) == len(records)
        with fired.bulk():
            _fire_all(fired, records)
        assert _log(imported) == _log(fired)
        assert _summaries(imported) == _summaries(fired)
        report = imported.verify()
        assert report.ok, report.problems[:3]
        assert report.events == len(records)
        case = imported.case("case-0009")
        assert sorted(case.state) == ["lbf_approved", "old_running"]
        assert case.history[0].note == "created 9"
        assert sorted(imported.case("case-0469").state) == ["lbf_approved", "old_running"]


def test_import_continues_stored_cases(store: af.Store, flagship, seed_data) -> None:
    """Records may continue stored cases, and a case may come back after another one."""
    store.import_events(_records(flagship, seed_data, 20))
    added = store.import_events([
        {"case_id": "case-0009", "trigger": "lbf.approve", "actor": "lbf", "on": "2022-02-01"},
        {"case_id": "case-0019", "trigger": "lbf.approve", "actor": "lbf", "on": "2022-02-01"},
        # the old plan's expiry is the clock's step, recorded on its own date
        {"case_id": "case-0009", "trigger": "old_plan_expires", "actor": "clock",
         "on": "2022-02-28"},
        {"case_id": "case-0009", "trigger": "start", "actor": "tmf", "on": "2022-03-01"},
    ])
    assert added == 4
    assert sorted(store.case("case-0009").state) == ["started"]
    assert store.case("case-0009").is_final
    assert sorted(store.case("case-0019").state) == ["lbf_approved", "old_running"]
    assert store.verify().ok


def test_a_refused_record_stores_nothing(store: af.Store, flagship, seed_data) -> None:
    """One refused step rolls the whole import back, and the error names the record."""
    records = _records(flagship, seed_data, 3)
    records.append({"case_id": "case-0002", "trigger": "lbf.approve", "actor": "lbf", "on": DAY})
    with pytest.raises(af.TransitionRefusedError,
                       match=rf"record {len(records)}, 'lbf.approve'") as info:
        store.import_events(records)
    assert info.value.reasons
    assert store.cases() == []
    assert list(store.events()) == []


@pytest.mark.parametrize("stray", [{"key": "k-1"}, {"dat": {"x": 1}}, {5: "five"}])
def test_a_field_a_record_does_not_take_is_refused(store: af.Store, flagship, seed_data,
                                                   stray: dict[Any, Any]) -> None:
    """A field the import does not take (an idempotency key, a misspelt 'data') is one
    InvalidInputError naming it and the fields there are, and nothing is stored: it was
    dropped without a word, so a record repeated under one key was stored twice."""
    records = _records(flagship, seed_data, 3)  # case 1 is created and steps once
    records[3] = {**records[3], **stray}
    name = repr(next(iter(stray)))
    with pytest.raises(af.InvalidInputError, match=rf"record 4 has {name}, which a record "
                                                   rf"does not take.*case_id, trigger"):
        store.import_events(records)
    assert store.cases() == []
    assert list(store.events()) == []


def test_a_creation_with_data_the_workflow_does_not_take_is_refused(
        store: af.Store, flagship, seed_data) -> None:
    """Creation data create_case refuses is refused on import too (verify would flag it)."""
    records = _records(flagship, seed_data, 3)
    stray = {"case_id": "stray", "trigger": "create", "workflow": flagship, "actor": "tmf",
             "on": DAY, "data": {**seed_data, "not_a_key": 1}}
    with pytest.raises(af.InvalidInputError) as refused:
        store.create_case(flagship, "stray", actor="tmf", on=DAY, data=stray["data"])
    # the same records again, the stray creation after a case of the same data
    for where in (0, len(records)):
        with pytest.raises(af.InvalidInputError,
                           match=rf"record {where + 1}: can't create case 'stray': .*"
                                 rf"'not_a_key'") as info:
            store.import_events([*records[:where], stray, *records[where:]])
        assert str(refused.value).split(": ", 1)[1] in str(info.value)
        assert store.cases() == []
        assert list(store.events()) == []
    assert store.import_events(records) == len(records)
    assert store.verify().ok


ANY_DATA = """
[workflow]
name = "any-data"
version = 1
initial = "open"
[actors]
clerk = "Clerk"
[states.open]
[states.done]
final = true
[[transitions]]
trigger = "go"
source = "open"
target = "done"
actors = ["clerk"]
"""


def _nested(levels: int) -> dict[str, Any]:
    data: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        data = {"d": data}
    return data


@pytest.mark.parametrize("data", [
    {"x": float("nan")}, {"x": float("-inf")}, {"x": "\ud800"}, {"\ud800": 1}, {1: "a"},
    {"x": 10 ** 5000}, {"x": dt.date(2021, 1, 1)}, {"x": (1, [2, None])}, {"x": True},
    {"x": {"y": [1.5, {"z": None}, "æ\u0000"]}}, _nested(58), _nested(62), _nested(64),
    _nested(65), {"x": [[[]]] * 3},
], ids=["nan", "-inf", "lone surrogate", "surrogate key", "int key", "huge int", "date",
        "tuple", "bool", "nested mix with NUL", "58 deep", "62 deep", "64 deep", "65 deep",
        "shared lists"])
def test_the_import_takes_and_refuses_the_creation_data_create_case_does(
        store: af.Store, data: dict[Any, Any]) -> None:
    """Whatever create_case refuses the import refuses, and what it takes is stored with
    the same text (the import checks plain data its own quicker way)."""
    wf = af.loads_workflow(ANY_DATA)
    try:
        made = store.create_case(wf, "made", actor="clerk", on=DAY, data=data)
    except af.InvalidInputError:
        made = None
    record = {"case_id": "imported", "trigger": "create", "workflow": wf, "actor": "clerk",
              "on": DAY, "data": data}
    if made is None:
        with pytest.raises(af.InvalidInputError, match="record 1: "):
            store.import_events([record])
        assert store.cases() == []
        return
    assert store.import_events([record]) == 1
    stored = {e.case_id: e for e in store.events()}
    assert stored["imported"].data == stored["made"].data
    assert store.case("imported").data == made.data
    assert store.verify().ok


def test_an_existing_case_is_not_created_again(store: af.Store, flagship) -> None:
    """Creating a stored case, or one created earlier in the same import, is refused."""
    store.create_case(flagship, "a", actor="tmf", on=DAY)
    again = {"case_id": "a", "trigger": "create", "workflow": flagship, "actor": "tmf"}
    with pytest.raises(af.CaseExistsError, match="'a' already exists"):
        store.import_events([again])
    twice = dict(again, case_id="b")
    with pytest.raises(af.CaseExistsError, match="'b' already exists"):
        store.import_events([twice, twice])
    assert [c.case_id for c in store.cases()] == ["a"]


def test_a_bad_record_is_named(store: af.Store, flagship) -> None:
    """Invalid input is refused with the record's number, and nothing is stored."""
    create = {"case_id": "a", "trigger": "create", "workflow": flagship, "actor": "tmf"}
    with pytest.raises(af.InvalidInputError, match=r"record 2: actor must be a string"):
        store.import_events([create, {"case_id": "a", "trigger": "submit", "actor": 7}])
    with pytest.raises(af.InvalidInputError, match=r"record 1: a creation needs a 'workflow'"):
        store.import_events([dict(create, workflow=None)])
    with pytest.raises(af.InvalidInputError, match=r"record 1 is a list"):
        store.import_events([["a", "create"]])  # type: ignore[list-item]
    assert store.cases() == []


def _varied_records(wf: af.Workflow, seed: dict[str, Any]) -> list[dict[str, Any]]:
    """Cases whose data, dates, persons, notes and step data differ in small ways, several
    of each: cases the import could wrongly take for one another."""
    datas: list[dict[str, Any]] = [
        seed,
        dict(reversed(list(seed.items()))),  # the same data, its keys in another order
        {**seed, "departments": 6.0},  # the same number, another JSON text
        {**seed, "departments": True},
        {**seed, "expires": "2022-03-31"},  # another timer date
        {**seed, "organisations": ("AAB", "VIBO")},  # a tuple: stored as a list
        {**seed, "budget": {**seed["budget"], "earmarked": 1_100_001}},
        {**seed, "title": "Plan \u00e6\u00f8\u00e5 \U0001f3e0"},
    ]
    records: list[dict[str, Any]] = []
    for i in range(48):
        case_id = f"case-{i:03d}"
        data = datas[i % len(datas)]
        by = "anne" if i % 3 == 1 else None
        records.append({"case_id": case_id, "trigger": "create", "workflow": wf,
                        "actor": "tmf", "on": DAY, "data": copy.deepcopy(data),
                        "note": f"case {i}" if i % 2 else None, "by": by})
        day = DAY
        for n, (trigger, actor) in enumerate(STEPS[: 3 + i % 7]):
            if i % 5 == 2 and n == 2:
                day = "2021-12-07"  # a later day on a workflow with timers
            record: dict[str, Any] = {"case_id": case_id, "trigger": trigger, "actor": actor,
                                      "on": day}
            if i % 4 == 3:
                record["by"] = "bo" if n % 2 else "anne"
            if trigger == "tmu.approve" and i % 6 == 0:
                record["data"] = {"goals_commitment": f"goals {i % 12}"}
            records.append(record)
    return records


def _reusing_one_dict(records: list[dict[str, Any]]) -> Any:
    """``records`` with every creation's data in one dict (and one budget dict), changed in
    place between records, as a generator that fills a template might."""
    shared: dict[str, Any] = {}
    budget: dict[str, Any] = {}
    for r in records:
        if r["trigger"] == "create":
            budget.clear()
            budget.update(r["data"]["budget"])
            shared.clear()
            shared.update({k: budget if k == "budget" else v for k, v in r["data"].items()})
            r = dict(r, data=shared)
        yield r


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in ("events", "cases", "case_awaiting", "case_due", "case_data",
                          "case_fields", "timers")}
    finally:
        conn.close()


@pytest.mark.parametrize("limit", [None, 1, 3])
def test_import_stores_the_rows_and_hashes_of_create_and_fire(
        tmp_path: Path, flagship, seed_data, monkeypatch: pytest.MonkeyPatch,
        limit: int | None) -> None:
    """Cases whose data differ only a little, imported together, get the very rows and
    hashes that create_case + fire give them one by one, at the same clock time (also
    when the import's memos are small and start again often)."""
    if limit is not None:
        for name in ("CREATED_LIMIT", "STEPS_LIMIT", "ENDS_LIMIT"):
            monkeypatch.setattr(importing, name, limit)
    instant = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    micros = (instant - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    monkeypatch.setattr(store_rows, "time_ns", lambda: micros * 1000 + 789)
    monkeypatch.setattr(store_module, "utc_now", lambda: instant)
    records = _varied_records(flagship, seed_data)
    with af.open_store(tmp_path / "imported.db") as imported, \
            af.open_store(tmp_path / "fired.db") as fired:
        assert imported.import_events(_reusing_one_dict(records)) == len(records)
        with fired.bulk():
            case = None
            for r in records:
                if r["trigger"] == "create":
                    case = fired.create_case(r["workflow"], r["case_id"], actor=r["actor"],
                                             on=r["on"], data=r["data"], note=r["note"],
                                             by=r["by"])
                else:
                    assert case is not None
                    case.fire(r["trigger"], actor=r["actor"], on=r["on"],
                              data=r.get("data"), by=r.get("by"))
        report = imported.verify()
        assert report.ok, report.problems[:3]
    got, want = _tables(tmp_path / "imported.db"), _tables(tmp_path / "fired.db")
    assert len({row[1] for row in got["case_data"]}) > 5  # the cases differ
    for table, rows in want.items():
        assert got[table] == rows, table


GRANT = Path(__file__).parent / "fixtures" / "research-grant.toml"


def _grant_case(wf: af.Workflow, case_id: str, submitter: str,
                checker: str) -> list[dict[str, Any]]:
    return [{"case_id": case_id, "trigger": "create", "workflow": wf, "actor": "applicant",
             "on": DAY, "data": {"budget": 500}},
            {"case_id": case_id, "trigger": "submit", "actor": "applicant", "on": DAY,
             "by": submitter},
            {"case_id": case_id, "trigger": "finance.ok", "actor": "finance", "on": DAY,
             "by": checker}]


def test_import_decides_each_case_on_its_own_persons_and_guards(
        store: af.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases alike but for the persons who act, or for what a guard says of their ids, are
    each decided on their own: four eyes and the guard refuse the one they should."""
    wf = af.load_workflow(GRANT)
    alike = _grant_case(wf, "a", "anne", "bo") + _grant_case(wf, "b", "bo", "anne")
    bad = _grant_case(wf, "c", "bo", "bo")  # the same person submits and checks
    with pytest.raises(af.TransitionRefusedError, match=r"record 9, 'finance.ok' on case 'c'"):
        store.import_events(alike + bad)
    assert store.cases() == []
    assert store.import_events(alike) == 6

    def not_for_z(ctx: af.GuardContext) -> list[str]:
        return ["not for z"] if ctx.case_id == "z" else []

    monkeypatch.setitem(guards._REGISTRY, "grant_budget_ok", not_for_z)
    cases = [r for c in "xyz" for r in _grant_case(wf, c, "anne", "bo")]
    with pytest.raises(af.TransitionRefusedError, match=r"record 9, .*not for z"):
        store.import_events(cases)
    assert store.import_events(cases[:6]) == 6
    assert store.verify().ok


def test_an_import_failing_in_the_database_inside_a_bulk_block_fails_the_block(
        store: af.Store, store_url: str, flagship) -> None:
    """An import that fails in the database inside a bulk block (a lock held past the
    timeout), its error caught: the block is stored whole or raises, never lost silently."""
    store.create_case(flagship, "b", actor="tmf", on=DAY)
    holder = af.open_store(store_url)
    holding = holder.bulk()
    holding.__enter__()
    raised: Exception | None = None
    try:
        holder.case("b").fire("submit", actor="tmf", on=DAY)  # 'b' held until the end
        with af.open_store(store_url, timeout=0.3) as other:
            try:
                with other.bulk():
                    other.create_case(flagship, "a", actor="tmf", on=DAY)
                    with contextlib.suppress(af.StoreError):
                        other.import_events([{"case_id": "b", "trigger": "submit",
                                              "actor": "tmf", "on": DAY}])
            except af.StoreError as e:
                raised = e
    finally:
        holding.__exit__(None, None, None)
        holder.close()
    stored = [c.case_id for c in store.cases()]
    assert ("a" in stored) != (raised is not None), (stored, raised)
    assert store.verify().ok


def test_another_text_under_the_same_workflow_version_is_refused(store: af.Store) -> None:
    """Two texts of one workflow name and version in one import: the second is refused
    as create_case refuses it (its creation would commit to a text the store does not
    hold, and verify would fail), and nothing is stored."""
    first = af.loads_workflow(ANY_DATA)
    other = af.loads_workflow(ANY_DATA.replace("[states.done]", '[states.done]\nlabel = "x"'))
    assert (first.name, first.version) == (other.name, other.version)
    records = [{"case_id": "a", "trigger": "create", "workflow": first, "actor": "clerk",
                "on": DAY},
               {"case_id": "b", "trigger": "create", "workflow": other, "actor": "clerk",
                "on": DAY}]
    with pytest.raises(af.DefinitionError, match="has other content"):
        store.import_events(records)
    assert store.cases() == []
    assert store.import_events(records[:1]) == 1
    with pytest.raises(af.DefinitionError, match="has other content"):
        store.create_case(other, "b", actor="clerk", on=DAY)
    assert store.verify().ok


TITLED = ANY_DATA.replace('initial = "open"', 'initial = "open"\ncreation_sets = ["title"]')


def test_creation_data_changed_while_its_record_is_read_is_stored_as_decided(
        store: af.Store) -> None:
    """A record whose data changes while the import reads the record's other fields (here
    a mapping whose ``get`` drops a key the workflow does not take): what is stored is the
    data the case was decided and made from, so the log verifies. (The import checks
    creation data quickly first and copies it later; the text it stored was of the data
    as first read, the state of the copy: a creation verify refuses.)"""
    wf = af.loads_workflow(TITLED)
    data: dict[str, Any] = {"title": "t", "stray": 1}
    with pytest.raises(af.InvalidInputError, match="'stray'"):
        store.create_case(wf, "made", actor="clerk", on=DAY, data=data)

    class Sly(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            if key == "note":
                data.pop("stray", None)
            return super().get(key, default)

    record = Sly(case_id="a", trigger="create", workflow=wf, actor="clerk", on=DAY, data=data)
    with contextlib.suppress(af.InvalidInputError):
        store.import_events([record])
    for case in store.cases():
        assert store.case(case.case_id).data == {"title": "t"}
        assert [e.data for e in store.events(case.case_id)] == [{"title": "t"}]
    report = store.verify()
    assert report.ok, report.problems[:3]


class _EqualToAll(str):
    """Text whose == says it is every other text (and != that it is none)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


def test_a_case_id_that_claims_to_equal_every_id_names_its_own_case(store: af.Store) -> None:
    """A record's case id is the text it holds: a str subclass whose == says it equals the
    case being imported does not put its step into that case's chain (the step was
    stored under the id it holds, chained onto the other case, and verify failed)."""
    wf = af.loads_workflow(ANY_DATA)
    store.create_case(wf, "victim", actor="clerk", on=DAY)
    records = [{"case_id": "a", "trigger": "create", "workflow": wf, "actor": "clerk",
                "on": DAY},
               {"case_id": _EqualToAll("victim"), "trigger": _EqualToAll("go"),
                "actor": _EqualToAll("clerk"), "on": DAY, "by": _EqualToAll("anne")}]
    assert store.import_events(records) == 2
    assert [(e.case_id, e.seq, e.trigger) for e in store.events("victim")] == [
        ("victim", 1, "create"), ("victim", 2, "go")]
    assert [e.trigger for e in store.events("a")] == ["create"]
    assert store.case("victim").is_final
    report = store.verify()
    assert report.ok, report.problems[:3]


class _LyingDate(dt.date):
    """A date whose text says another day (and that is never before any other)."""

    def isoformat(self) -> str:
        return "2020-01-01"

    def __lt__(self, other: object) -> bool:
        return False


def test_a_date_subclass_is_decided_and_stored_as_the_day_it_holds(store: af.Store) -> None:
    """A step dated with a date subclass whose text and order lie is decided and stored as
    the day it holds, by fire and by the import alike (its text was stored while its own
    order decided: a date before the case's last event went into the log)."""
    wf = af.loads_workflow(ANY_DATA)
    later = _LyingDate(2021, 12, 7)
    store.create_case(wf, "fired", actor="clerk", on=DAY).fire("go", actor="clerk", on=later)
    assert store.import_events([
        {"case_id": "imported", "trigger": "create", "workflow": wf, "actor": "clerk",
         "on": DAY},
        {"case_id": "imported", "trigger": "go", "actor": "clerk", "on": later}]) == 2
    for case_id in ("fired", "imported"):
        assert [e.on for e in store.events(case_id)] == [dt.date(2021, 12, 6),
                                                         dt.date(2021, 12, 7)]
    earlier = _LyingDate(2021, 12, 5)
    with pytest.raises(af.TransitionRefusedError, match="dates may not go backwards"):
        store.create_case(wf, "f2", actor="clerk", on=DAY).fire("go", actor="clerk",
                                                                  on=earlier)
    with pytest.raises(af.TransitionRefusedError, match="dates may not go backwards"):
        store.import_events([
            {"case_id": "i2", "trigger": "create", "workflow": wf, "actor": "clerk",
             "on": DAY},
            {"case_id": "i2", "trigger": "go", "actor": "clerk", "on": earlier}])
    report = store.verify()
    assert report.ok, report.problems[:3]


FOUR_EYES = """
[workflow]
name = "four-eyes"
version = 1
initial = "open"
[actors]
clerk = "Clerk"
boss = "Boss"
[states.open]
[states.mid]
[states.done]
final = true
[[transitions]]
trigger = "go"
source = "open"
target = "mid"
actors = ["clerk"]
[[transitions]]
trigger = "note"
source = "mid"
target = "mid"
actors = ["clerk", "boss"]
sets = ["x"]
[[transitions]]
trigger = "finish"
source = "mid"
target = "done"
actors = ["boss"]
not_by = ["go"]
"""


def _walk(rnd: Any, store: af.Store, workflows: list[af.Workflow], seed: dict[str, Any],
          n: int) -> list[dict[str, Any]]:
    """Records of cases taken through ``store`` by create_case and fire, interleaved, each
    a step some actor may take (or a random one, kept only when fire took it): few ids,
    dates, persons and data, so that cases repeat each other."""
    from approvalflow.definition import CLOCK

    records: list[dict[str, Any]] = []
    live: dict[str, af.Case] = {}
    start = dt.date(2021, 12, 1)
    for number in range(n * 3):
        if len(records) >= n:
            break
        if not live or rnd.random() < 0.15:
            wf = rnd.choice(workflows)
            data: Any = {"boligsocial-helhedsplan": copy.deepcopy(seed),
                         "research-grant": {"budget": rnd.choice([500, 2_000_000])},
                         "dean-review": rnd.choice([None, {"expires": "2021-12-05"}])
                         }.get(wf.name)
            record = {"case_id": f"c{number}", "trigger": "create", "workflow": wf,
                      "actor": rnd.choice(sorted(wf.actors)),
                      "on": start.isoformat(),
                      "data": data, "note": rnd.choice([None, "n"]),
                      "by": rnd.choice([None, "anne"])}
            try:
                live[record["case_id"]] = store.create_case(
                    wf, record["case_id"], actor=record["actor"], on=record["on"],
                    data=data, note=record["note"], by=record["by"])
            except af.InvalidInputError:
                continue
            records.append(record)
            continue
        case = live[rnd.choice(sorted(live))]
        if case.is_final:
            del live[case.id]
            continue
        last = case.last_on
        assert last is not None
        on = last + dt.timedelta(days=rnd.choice([0, 0, 0, 1, 7, 30]))
        permitted = case.permitted(on=last)
        if permitted and rnd.random() < 0.8:
            actor = rnd.choice(sorted(permitted))
            trigger = rnd.choice(permitted[actor])
        else:
            trigger = rnd.choice(sorted(case.definition.triggers))
            actor = rnd.choice([*sorted(case.definition.actors), CLOCK])
        timers = case.timers(on=last)
        if timers and rnd.random() < 0.3:
            actor, trigger, on = CLOCK, timers[0].step, max(timers[0].due, last)
        step_data = rnd.choice([None, None, None, {"x": 1}, {"goals_commitment": "g"}])
        record = {"case_id": case.id, "trigger": trigger, "actor": actor,
                  "on": on.isoformat(), "data": step_data, "note": rnd.choice([None, "n"]),
                  "by": rnd.choice(["anne", "bo"])}
        try:
            case.fire(trigger, actor=actor, on=record["on"], data=step_data,
                      note=record["note"], by=record["by"])
        except af.TransitionRefusedError:
            continue
        records.append(record)
    return records


@given(rnd=st.randoms(use_true_random=False))
@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@pytest.mark.sqlite_only
def test_import_stores_what_create_case_and_fire_store_for_random_walks(
        tmp_path_factory: pytest.TempPathFactory, flagship, seed_data,
        monkeypatch: pytest.MonkeyPatch, rnd: Any) -> None:
    """Interleaved cases of four workflows (votes, joins, guards, timers, four eyes), taken
    step by step through create_case and fire, then imported into an empty store: every
    table holds the same rows, hashes included, and both verify."""
    instant = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    micros = (instant - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    monkeypatch.setattr(store_rows, "time_ns", lambda: micros * 1000 + 789)
    monkeypatch.setattr(store_module, "utc_now", lambda: instant)
    from tests.timed_workflow import TEXT

    workflows = [flagship, af.load_workflow(GRANT), af.loads_workflow(TEXT),
                 af.loads_workflow(FOUR_EYES)]
    folder = tmp_path_factory.mktemp("walk")
    with af.open_store(folder / "fired.db") as fired:
        records = _walk(rnd, fired, workflows, seed_data, 80)
        assert fired.verify().ok
    with af.open_store(folder / "imported.db") as imported:
        assert imported.import_events(records) == len(records)
        report = imported.verify()
        assert report.ok, report.problems[:3]
    got, want = _tables(folder / "imported.db"), _tables(folder / "fired.db")
    for table, rows in want.items():
        assert got[table] == rows, table
