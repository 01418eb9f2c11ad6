"""The write path's shortcuts: memoised decisions, the case row's date, feed positions,
the hashed text."""

from __future__ import annotations

import datetime as dt
import sqlite3

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import approvalflow as af
from approvalflow.engine import engine_for
from approvalflow.guards import unregister_guard
from approvalflow.store import rows
from approvalflow.store.rows import date_text, encode, encode_fields, fields_text, utc_text

GUARDED = """
[workflow]
name = "memo-guard"
version = 1
initial = "draft"

[actors]
clerk = "Clerk"
boss = "Boss"

[states.draft]
[states.done]
final = true

[[transitions]]
trigger = "finish"
source = "draft"
target = "done"
actors = ["clerk"]
guards = ["has_amount"]
"""


def test_a_memoised_decision_still_runs_its_guards() -> None:
    """Two cases in the same configuration on the same day, one whose data passes the
    guard and one whose data fails it: each is decided by its own data, in any order."""

    @af.guard("has_amount")
    def has_amount(ctx: af.GuardContext) -> bool | list[str]:
        return True if ctx.data.get("amount", 0) > 0 else ["no amount"]

    try:
        wf = af.loads_workflow(GUARDED, source="memo-guard.toml")
        with af.open_store(":memory:") as store:
            good = store.create_case(wf, "good", actor="clerk", on="2024-01-01",
                                     data={"amount": 5})
            bad = store.create_case(wf, "bad", actor="clerk", on="2024-01-01",
                                    data={"amount": 0})
            for _ in range(2):  # the second round reads the memo
                assert good.why_not("finish", actor="clerk", on="2024-01-01") == []
                assert bad.why_not("finish", actor="clerk", on="2024-01-01") == ["no amount"]
                # another refusal and the guard's: both reasons, in the unmemoised order
                assert bad.why_not("finish", actor="boss", on="2024-01-01") == [
                    "'boss' may not take 'finish'; only 'clerk' may", "no amount"]
            with pytest.raises(af.TransitionRefusedError):
                bad.fire("finish", actor="clerk", on="2024-01-01")
            assert good.fire("finish", actor="clerk", on="2024-01-01").seq == 2
            assert store.verify().ok
    finally:
        unregister_guard("has_amount")


def test_memoised_decisions_equal_fresh_ones(store, flagship, seed_data) -> None:
    """Every trigger by every actor, asked twice on the flagship at each of its first
    steps: the memoised answer equals the one decided from scratch."""
    engine = engine_for(flagship)
    case = store.create_case(flagship, "p", actor="tmf", on="2021-11-01", data=seed_data)
    steps = [("submit", "tmf"), ("tmu.approve", "tmu"), ("vibo.approve", "vibo_afd_1")]
    for trigger, actor in [*steps, (None, None)]:
        state = case.engine_state
        for t in sorted(flagship.triggers):
            for a in sorted(flagship.actors):
                fresh = engine._evaluate(state, t, actor=a, on=state.last_on, data=None,
                                         case_id="p", unchecked=None, by=None,
                                         check_persons=False, _overdue=True)
                for _ in range(2):
                    got = engine.evaluate(state, t, actor=a, on=state.last_on, case_id="p",
                                          check_persons=False)
                    assert got == fresh, (t, a)
        if trigger is not None:
            case.fire(trigger, actor=actor, on="2021-11-01")


def test_the_case_row_keeps_the_last_events_date(store, flagship, seed_data,
                                                   db_path) -> None:
    """Steps on the day of the last event (the row's date is left as it is) and on a later
    day: the current-state row always holds the last event's date, and verify agrees."""
    case = store.create_case(flagship, "p", actor="tmf", on="2021-11-01", data=seed_data)
    case.fire("submit", actor="tmf", on="2021-11-01")
    case.fire("tmu.approve", actor="tmu", on="2021-11-08")
    case.fire("aab.approve", actor="aab", on="2021-11-08")
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT last_on, seq FROM cases WHERE case_id = 'p'").fetchone()
    assert row == ("2021-11-08", 4)
    assert store.cases()[0].last_on.isoformat() == "2021-11-08"
    assert store.verify().ok


def test_feed_positions_run_on_across_import_rollback_and_steps(store, flagship,
                                                               seed_data) -> None:
    """An import, a bulk block that rolls back, a step and a creation: the positions the
    events come back with are the feed's, 1..n without gaps, in the order written."""
    records = [{"case_id": "i", "trigger": "create", "workflow": flagship, "actor": "tmf",
                "on": "2021-11-01", "data": seed_data},
               {"case_id": "i", "trigger": "submit", "actor": "tmf", "on": "2021-11-01"}]
    assert store.import_events(records) == 2
    case = store.case("i")

    class Undo(Exception):
        pass

    with pytest.raises(Undo), store.bulk():
        case.fire("tmu.approve", actor="tmu", on="2021-11-02")
        raise Undo
    event = case.fire("tmu.approve", actor="tmu", on="2021-11-02")
    other = store.create_case(flagship, "j", actor="tmf", on="2021-11-03", data=seed_data)
    assert event.position == 3 and other.history[0].position == 4
    feed = store.feed()
    assert [e.position for e in feed] == [1, 2, 3, 4]
    assert [(e.case_id, e.seq) for e in feed] == [("i", 1), ("i", 2), ("i", 3), ("j", 1)]
    assert store.verify().ok


_FIELD = st.one_of(
    st.text(), st.text(alphabet=st.characters(exclude_categories=())), st.none(), st.integers(),
    st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
    st.dictionaries(st.text(max_size=3), st.text(max_size=5), max_size=2))


@given(st.lists(_FIELD, max_size=20).map(tuple))
def test_the_hashed_text_is_the_json_encoders(fields: tuple[object, ...]) -> None:
    """encode_fields gives encode's text for any tuple: quotes, escapes, control and
    non-ASCII characters, lone surrogates, big and negative numbers, and the values it
    leaves to encode (booleans, floats, objects)."""
    assert encode_fields(fields) == encode(fields)


def test_the_hashed_text_of_awkward_text() -> None:
    """Text that JSON escapes, and an int subclass (left to encode), as encode writes them."""
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    fields = ('"\\\b\f\n\r\t\x00\x1f\x7f\u2028\ud800', "æøå ✓ 𝄞", -2**70, Level.HIGH, None)
    assert encode_fields(fields) == encode(fields)


_TEXT = st.one_of(st.text(), st.sampled_from(['"', "\\", "\x00", "\u2028", "æ", "\ud800"]))
#: Fields shaped as the store writes them: text, whole numbers for the sequence and the
#: version, and null where a step has no note or key.
_STORED = st.tuples(_TEXT, st.integers(min_value=0), _TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT,
                    _TEXT, st.none() | _TEXT, _TEXT, _TEXT, st.integers(), st.none() | _TEXT,
                    _TEXT)


def _encoded(fields: tuple[object, ...], digest: object, by: object) -> str:
    values = list(fields)
    if digest is not None:
        values.append(digest)
    if by is not None:
        values.append({"by": by})
    return encode(values)


@given(_STORED | st.lists(_FIELD, min_size=15, max_size=15).map(tuple),
       st.none() | _TEXT, st.none() | _TEXT)
def test_the_hashed_text_written_out_is_the_json_encoders(fields: tuple[object, ...],
                                                          digest: str | None,
                                                          by: str | None) -> None:
    """fields_text gives encode's text of the fields, digest and person for fields as the
    store writes them, and for any other values (a bool or a float for a number, an
    object or null for a text: a row changed behind the library's back)."""
    assert fields_text(fields, digest, by) == _encoded(fields, digest, by)


@pytest.mark.parametrize("at", [1, 12])
@pytest.mark.parametrize("number", [True, False, 2.0, -0.0])
def test_a_number_that_is_no_whole_number_is_hashed_as_encode_writes_it(at: int,
                                                                       number: object) -> None:
    """A bool or a float where the sequence or the version stands (a row changed behind
    the library's back) is written as encode writes it ("true", "2.0"), not as Python."""
    fields = ["c", 1, "fire", "t", "a", "2021-01-01", "x", "[]", "[]", None, "{}", "w", 1,
              None, "0" * 64]
    fields[at] = number
    assert fields_text(tuple(fields), None, "Ann") == _encoded(tuple(fields), None, "Ann")


def test_a_huge_number_in_a_hashed_row_fails_as_encode_fails() -> None:
    """A whole number too long to write as text is refused by fields_text as encode
    refuses it, not written differently."""
    fields = ("c", 10 ** 5000, "fire", "t", "a", "2021-01-01", "x", "[]", "[]", None, "{}",
              "w", 1, None, "0" * 64)
    with pytest.raises(ValueError):
        encode(list(fields))
    with pytest.raises(ValueError):
        fields_text(fields, None, None)


@given(st.dates())
def test_a_dates_text_is_isoformats(day: dt.date) -> None:
    """date_text gives isoformat's text of any date, again when asked twice."""
    assert date_text(day) == day.isoformat() == date_text(day)


def test_a_date_text_once_accepted_is_the_same_date_and_a_bad_one_is_still_refused() -> None:
    """to_date remembers the texts it accepted (the same date comes back), and still
    refuses a text that is not a date, or out of range, every time it is given."""
    from approvalflow.canonical import to_date

    assert to_date("2021-11-02") == dt.date(2021, 11, 2) == to_date("2021-11-02")
    for bad in ("2021-02-30", "0001-01-01", "2021-11-2", " 2021-11-02"):
        for _ in range(2):
            with pytest.raises(af.InvalidInputError):
                to_date(bad)


def test_the_event_a_step_returns_is_the_one_read_back(store, flagship, seed_data) -> None:
    """The Event a step returns, made from the values the step was written from, equals
    the one read back from the log, field by field: the recorded time, the states, the
    data, the note, the person, the hash and the feed position."""
    case = store.create_case(flagship, "e", actor="tmf", on="2021-11-01", data=seed_data)
    made = [case.fire("submit", actor="tmf", on="2021-11-01", note="sendt ✓", by="Ann"),
            case.fire("tmu.approve", actor="tmu", on="2021-11-02", key="k-1"),
            case.fire("aab.approve", actor="aab", on="2021-11-02")]
    read = store.case("e").history[1:]
    for mine, stored in zip(made, read, strict=True):
        for field in attrs.fields(af.Event):
            assert getattr(mine, field.name) == getattr(stored, field.name), field.name
        assert mine.recorded_at.tzinfo is not None and mine.recorded_at == stored.recorded_at
        assert mine.data == {} and mine.data is not stored.data


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31,
                                                                              23, 59, 59)))
def test_the_recorded_time_is_written_as_isoformat_writes_it(moment: dt.datetime) -> None:
    """utc_text gives isoformat's text for any moment in UTC: whole seconds (no
    fraction), single microseconds, midnight, the first and the last years."""
    aware = moment.replace(tzinfo=dt.UTC)
    assert utc_text(aware) == aware.isoformat()
    assert utc_text(aware.replace(microsecond=0)) == aware.replace(microsecond=0).isoformat()


@pytest.mark.parametrize("micros", [0, 1, 999_999, 1_715_000_000_000_000,
                                    1_715_000_000_123_456, 32_503_680_000_000_000])
def test_the_import_clock_writes_the_text_utc_now_writes(micros: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The import's recorded_at is utc_now().isoformat() of the same clock reading."""
    clock = rows.UtcClock()
    for extra in (0, 999, 1000):
        monkeypatch.setattr(rows, "time_ns", lambda e=extra: micros * 1000 + e)
        expected = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
                    + dt.timedelta(microseconds=micros + extra // 1000)).isoformat()
        assert clock() == expected
