"""Store.import_events: the batched path writes the log create_case + fire would write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import approvalflow as af

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
