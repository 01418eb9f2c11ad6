"""Pinned bytes: the canonical form of data and the hash of an event, as fixed literals.

A log written today must verify with every later version of approvalflow, so the bytes
that are hashed may never change by accident. These literals were computed once (with
``canonical_json`` and ``store.rows.event_hash``) and written here by hand: a change to
key order, separators, escaping or the hashed fields fails these tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.canonical import canonical_json
from approvalflow.store.rows import event_hash, selected_hash

NESTED = {"b": {"z": [1, {"y": 2, "x": 1}], "a": "æ", "n": None}, "a": 1.5, "c": [True, "x"]}
NESTED_OTHER_ORDER = {"c": [True, "x"], "a": 1.5, "b": {"n": None, "a": "æ",
                                                       "z": [1, {"x": 1, "y": 2}]}}
NESTED_TEXT = '{"a":1.5,"b":{"a":"æ","n":null,"z":[1,{"x":1,"y":2}]},"c":[true,"x"]}'

ROW = {
    "case_id": "mimerskvarteret", "seq": 2, "kind": "fire", "trigger": "submit",
    "actor": "tmf", "on_date": "2021-11-01", "recorded_at": "2021-11-01T09:30:00+00:00",
    "source": '["draft"]', "target": '["3b_pending","aab_pending","tmu_pending","vibo_voting"]',
    "note": "Forelagt udvalget", "data": '{"meeting":{"at":"10:00","room":"B"}}',
    "workflow": "boligsocial-helhedsplan", "workflow_version": 1, "key": "submit-1",
    "prev_hash": "0" * 64,
}
#: The bytes hashed for ROW: its fields in order, as one canonical JSON array.
ROW_BYTES = (
    '["mimerskvarteret",2,"fire","submit","tmf","2021-11-01","2021-11-01T09:30:00+00:00",'
    '"[\\"draft\\"]","[\\"3b_pending\\",\\"aab_pending\\",\\"tmu_pending\\",\\"vibo_voting\\"]",'
    '"Forelagt udvalget","{\\"meeting\\":{\\"at\\":\\"10:00\\",\\"room\\":\\"B\\"}}",'
    '"boligsocial-helhedsplan",1,"submit-1",'
    '"0000000000000000000000000000000000000000000000000000000000000000"]')
ROW_HASH = "611381900859d52b390a61b154400efac21381a3253ebad999a6b4b00f99e0dd"


def test_canonical_json_of_nested_data_is_one_fixed_text() -> None:
    """Nested data in two key orders gives the same, pinned text: keys sorted at every
    level, no spaces, UTF-8 kept, null/true as JSON spells them."""
    assert canonical_json(NESTED) == NESTED_TEXT
    assert canonical_json(NESTED_OTHER_ORDER) == NESTED_TEXT


def test_one_fixed_event_row_has_one_pinned_hash() -> None:
    """The hash of a fixed event row is the pinned SHA-256 of the pinned bytes; the row's
    data field is the canonical text of its data in any key order."""
    assert hashlib.sha256(ROW_BYTES.encode("utf-8")).hexdigest() == ROW_HASH
    assert event_hash(ROW) == ROW_HASH
    # as selected: the hashed fields, the hash, no workflow digest, no person, a position
    assert selected_hash((*ROW.values(), ROW_HASH, None, None, 7)) == ROW_HASH
    reordered = dict(ROW, data=canonical_json({"meeting": {"room": "B", "at": "10:00"}}))
    assert event_hash(reordered) == ROW_HASH
    assert event_hash(dict(ROW, note="Forelagt udvalget.")) != ROW_HASH


def test_a_retry_with_the_data_keys_reordered_returns_the_stored_event(
        tmp_path: Path, seed_data) -> None:
    """A retry with the same idempotency key and the same data in another key order (at
    every level) is the same step: the stored event comes back and nothing is written; the
    key with other data is refused."""
    with af.open_store(tmp_path / "retry.db") as store:
        case = store.create_case(af.loads_workflow(FREE_DATA), "c", actor="tmf",
                                 on="2021-11-01", data=seed_data)
        first = case.fire("submit", actor="tmf", on="2021-11-01", key="submit-1",
                          data=NESTED)
        again = store.case("c").fire("submit", actor="tmf", on="2021-11-01", key="submit-1",
                                     data=NESTED_OTHER_ORDER)
        assert again.to_dict() == first.to_dict()
        assert store.case("c").version == 2
        with pytest.raises(af.InvalidInputError, match="idempotency key 'submit-1'"):
            case.fire("submit", actor="tmf", on="2021-11-01", key="submit-1",
                      data=dict(NESTED, a=2.5))
        assert [e.seq for e in store.events("c")] == [1, 2]
        [stored] = [e for e in store.events("c") if e.seq == 2]
        assert stored.hash == first.hash


#: a workflow whose step may carry any data (the flagship says which keys each step may set)
FREE_DATA = """
[workflow]
name = "free-data"
version = 1
initial = "draft"
[actors]
tmf = "Teknik- og Miljøforvaltningen"
[states.draft]
[states.submitted]
final = true
[[transitions]]
trigger = "submit"
source = "draft"
target = "submitted"
actors = ["tmf"]
"""
