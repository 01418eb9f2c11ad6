"""records.maker: a frozen record made field by field is the one its class makes."""

from __future__ import annotations

import datetime as dt
import pickle

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from approvalflow.case import Event
from approvalflow.engine import CaseState
from approvalflow.records import maker

_VALUE = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.dates(),
                   st.frozensets(st.text(max_size=3), max_size=3),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@pytest.mark.parametrize("cls", [Event, CaseState])
@given(data=st.data())
def test_a_made_record_is_the_one_its_class_makes(cls: type, data: st.DataObject) -> None:
    """For any values, maker(cls)(*values) is an instance of cls itself, equal to
    cls(*values) field by field, with the same hash, repr and pickle, and as frozen."""
    values = [data.draw(_VALUE) for _ in attrs.fields(cls)]
    made, built = maker(cls)(*values), cls(*values)
    assert type(made) is cls
    for field in attrs.fields(cls):
        assert getattr(made, field.name) is getattr(built, field.name), field.name
    assert made == built and repr(made) == repr(built)
    try:
        assert hash(made) == hash(built)
    except TypeError:  # an unhashable value (a dict) where the hash covers it: both refuse
        with pytest.raises(TypeError):
            hash(made)
    assert pickle.loads(pickle.dumps(made)) == built
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.__setattr__(attrs.fields(cls)[0].name, "changed")
    assert attrs.evolve(made) == built


def test_a_made_event_is_what_a_step_returns() -> None:
    """An Event made field by field counts as the same event as one the class makes."""
    values = ("c", 2, "submit", "tmf", dt.date(2021, 11, 1),
              dt.datetime(2021, 11, 1, 9, tzinfo=dt.UTC), frozenset({"a"}), frozenset({"b"}),
              None, {}, "wf", 1, "fire", None, "0" * 64, "f" * 64, None, "Ann", 7)
    made = maker(Event)(*values)
    assert made == Event(*values) and {made} == {Event(*values)}
    assert made.by == "Ann" and made.position == 7


def test_a_class_that_checks_its_fields_or_keeps_weak_references_is_refused() -> None:
    """maker refuses what the twin would not make the same way: a validator, a
    converter, a weak-reference slot, no slots at all."""

    @attrs.frozen(weakref_slot=False)
    class Checked:
        n: int = attrs.field(validator=attrs.validators.instance_of(int))

    @attrs.frozen(weakref_slot=False)
    class Converted:
        n: int = attrs.field(converter=int)

    @attrs.frozen
    class Weak:
        n: int

    @attrs.frozen(slots=False)
    class Plain:
        n: int

    for cls in (Checked, Converted, Weak, Plain):
        with pytest.raises(TypeError, match="can't be made field by field"):
            maker(cls)
