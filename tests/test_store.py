"""The SQLite event log: what an event records, atomic appends, replay, as_of, verify."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.store import SCHEMA_VERSION
from tests import rawdb
from tests.conftest import approve_all
from tests.test_definition import MINI

pytestmark = pytest.mark.backends


def file_bytes(path: Path) -> dict[str, bytes]:
    """The database file and its WAL, byte for byte."""
    out = {}
    for suffix in ("", "-wal"):
        p = Path(f"{path}{suffix}")
        out[suffix] = p.read_bytes() if p.exists() else b""
    return out


def test_event_records_every_field(submitted) -> None:
    """An event has case, seq, trigger, actor, dates, states, note, data, workflow and version."""
    event = submitted.fire("tmu.approve", actor="tmu", on="2021-12-06", note="Minutes §1",
                           data={"goals_commitment": {"meeting": "2021-12-06"}})
    assert event.case_id == "example-plan" and event.seq == 3
    assert event.trigger == "tmu.approve" and event.actor == "tmu"
    assert event.on == dt.date(2021, 12, 6)
    assert event.recorded_at.tzinfo is not None
    assert event.recorded_at.utcoffset() == dt.timedelta(0)
    assert "tmu_pending" in event.source and "tmu_approved" in event.target
    assert isinstance(event.source, frozenset)
    assert event.note == "Minutes §1"
    assert event.data == {"goals_commitment": {"meeting": "2021-12-06"}}
    assert event.workflow == "boligsocial-helhedsplan" and event.workflow_version == 3
    assert len(event.hash) == 64 and event.prev_hash == submitted.history[1].hash


def test_reload_gives_the_same_case(store, submitted) -> None:
    """Loading a case replays its events into the same state, data and history."""
    submitted.fire("aab.approve", actor="aab", on="2021-11-15")
    loaded = store.case("example-plan")
    assert loaded.state == submitted.state
    assert loaded.version == submitted.version == 3
    assert loaded.history == submitted.history
    assert dict(loaded.data) == dict(submitted.data)


def test_reopening_the_file_gives_the_same_case(db_path, flagship, seed_data) -> None:
    """A case survives closing and reopening the file."""
    with af.open_store(db_path) as store:
        case = store.create_case(flagship, "c1", actor="tmf", on="2021-11-01", data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-01")
        approve_all(case)
        state = case.state
    with af.open_store(db_path) as store:
        again = store.case("c1")
        assert again.state == state and again.version == 9


def test_history_starts_with_creation(submitted) -> None:
    """The creation is event 1, by its actor, with the creation data."""
    first = submitted.history[0]
    assert (first.seq, first.kind, first.trigger, first.actor) == (1, "create", "create", "tmf")
    assert first.target == frozenset({"draft", "old_running"}) and first.source == frozenset()
    assert first.data["budget"]["total"] == 4_000_000


def test_refused_fire_leaves_the_file_unchanged(db_path, submitted) -> None:
    """A refused step raises and leaves the database byte-for-byte as it was."""
    before = file_bytes(db_path)
    with pytest.raises(af.TransitionRefusedError):
        submitted.fire("lbf.approve", actor="lbf", on="2021-11-02")
    with pytest.raises(af.TransitionRefusedError):
        submitted.fire("tmu.approve", actor="aab", on="2021-11-02")
    with pytest.raises(af.InvalidInputError):
        submitted.fire("tmu.approve", actor="tmu", on="2021-11-31")
    assert file_bytes(db_path) == before


def test_stale_case_gets_concurrency_error(store, submitted) -> None:
    """A copy that another copy moved on can't append: ConcurrencyError, nothing written."""
    other = store.case("example-plan")
    other.fire("tmu.approve", actor="tmu", on="2021-12-06")
    with pytest.raises(af.ConcurrencyError, match="changed since it was read"):
        submitted.fire("aab.approve", actor="aab", on="2021-12-06")
    assert store.case("example-plan").version == 3


def test_case_exists_and_not_found(store, flagship, submitted) -> None:
    """Creating an existing id, or loading an unknown one, is a clear error."""
    with pytest.raises(af.CaseExistsError, match="already exists"):
        store.create_case(flagship, "example-plan", actor="tmf", on="2021-11-01")
    with pytest.raises(af.CaseNotFoundError, match="'example-plan'") as info:
        store.case("mimers")
    assert isinstance(info.value, LookupError)


def test_as_of_replays_events_up_to_a_date(store, submitted) -> None:
    """as_of gives the case after every event dated on or before that day."""
    submitted.fire("aab.approve", actor="aab", on="2021-11-10")
    submitted.fire("tmu.approve", actor="tmu", on="2021-12-06")
    view = store.case("example-plan", as_of="2021-12-05")
    assert "aab_approved" in view.state and "tmu_pending" in view.state
    assert view.version == 3 and view.as_of == dt.date(2021, 12, 5)
    assert store.case("example-plan", as_of=dt.date(2021, 12, 6)).version == 4


def test_as_of_view_is_read_only(store, submitted) -> None:
    """A historical view refuses to take steps but tells who was awaited then."""
    submitted.fire("tmu.approve", actor="tmu", on="2021-12-06")
    view = store.case("example-plan", as_of="2021-11-01")
    assert view.allowed() == []
    assert "tmu" in view.awaiting()  # who was awaited then: TMU had not decided yet
    assert "tmu" not in store.case("example-plan").awaiting(on="2021-12-07")
    with pytest.raises(af.TransitionRefusedError, match="as of 2021-11-01"):
        view.fire("tmu.approve", actor="tmu", on="2021-11-02")


def test_as_of_before_creation(store, submitted) -> None:
    """Asking for a case before it existed says when it was created."""
    with pytest.raises(af.CaseNotFoundError, match="did not exist yet on 2021-01-01"):
        store.case("example-plan", as_of="2021-01-01")


@pytest.mark.parametrize("bad", ["2021-13-01", "2022-02-30", "yesterday", "2021-1-1", ""])
def test_impossible_dates_are_refused(submitted, bad: str) -> None:
    """Dates that are not real YYYY-MM-DD days are refused, naming the value."""
    with pytest.raises(af.InvalidInputError, match="is not a real date"):
        submitted.fire("tmu.approve", actor="tmu", on=bad)


def test_cases_lists_summaries(store, flagship, seed_data, submitted) -> None:
    """cases() lists every case with its state, filtered by workflow or any active state."""
    store.create_case(af.load_workflow("medfinansiering-restbeloeb"), "rest", actor="tmf",
                      on="2022-01-10", data={"amount": 600_000})
    summaries = store.cases()
    assert [s.case_id for s in summaries] == ["example-plan", "rest"]
    assert summaries[0].state == submitted.state and summaries[0].version == 2
    assert [s.case_id for s in store.cases(workflow="medfinansiering-restbeloeb")] == ["rest"]
    assert [s.case_id for s in store.cases(state="approval")] == ["example-plan"]
    assert [s.case_id for s in store.cases(state="draft")] == ["rest"]


@pytest.mark.sqlite_only
def test_store_settings(db_path, store) -> None:
    """The store uses WAL, synchronous=FULL by default, and records its schema version."""
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with af.open_store(db_path, durability="normal") as fast:
        assert fast._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_events_are_append_only(store_url, submitted) -> None:
    """The database itself refuses to update or delete a recorded event or workflow."""
    with rawdb.raw(store_url) as conn:
        for sql in ("UPDATE events SET actor = 'tmu' WHERE seq = 1", "DELETE FROM events",
                    "UPDATE workflows SET source = ''", "DELETE FROM workflows"):
            with pytest.raises(Exception, match="append-only"):
                conn.execute(sql)
    assert submitted._store.verify().ok


def test_verify_passes_then_catches_an_edit(store_url, store, submitted) -> None:
    """verify() is ok on an honest log and names the case and seq of an edited event."""
    submitted.fire("tmu.approve", actor="tmu", on="2021-12-06")
    report = store.verify()
    assert report.ok and report.events == 3 and report.cases == 1
    with rawdb.unguarded(store_url) as conn:
        conn.execute("UPDATE events SET actor = 'aab' WHERE seq = 3")
    report = store.verify()
    assert not report.ok
    assert any("case 'example-plan' event 3" in p and "hash" in p for p in report.problems)


def test_idempotency_key_stores_once(store, submitted) -> None:
    """A retry with the same key returns the stored event; other content under it is refused."""
    first = submitted.fire("tmu.approve", actor="tmu", on="2021-12-06", key="tmu-2021-12-06")
    stale = store.case("example-plan", as_of=None)
    again = stale.fire("tmu.approve", actor="tmu", on="2021-12-06", key="tmu-2021-12-06")
    assert again == first
    assert len(list(store.events("example-plan"))) == 3
    with pytest.raises(af.InvalidInputError, match="other content"):
        submitted.fire("aab.approve", actor="aab", on="2021-12-06", key="tmu-2021-12-06")


def test_a_retry_without_a_date_after_midnight_returns_the_stored_step(
        store, flagship, seed_data, monkeypatch) -> None:
    """A step fired with a key and no date meant "today": retried the next day (or in the
    same transaction's race), it returns the stored event instead of refusing it as other
    content; a retry that names another date is still refused."""
    import approvalflow.case as case_module

    tomorrow = dt.date.today() + dt.timedelta(days=1)
    real = case_module.date_or_today

    case = store.create_case(flagship, "late-night", actor="tmf", on="2021-11-01",
                             data={**seed_data, "expires": "2999-01-01",
                                   "planned_start": "2999-06-01"})
    case.fire("submit", actor="tmf", on="2021-11-01")
    first = case.fire("tmu.approve", actor="tmu", key="k1")
    said = case.expect("aab.approve", "2999-01", actor="aab", key="k2")
    stale = store.case("late-night")
    monkeypatch.setattr(case_module, "date_or_today",
                        lambda on, what="on": tomorrow if on is None else real(on, what))
    assert stale.fire("tmu.approve", actor="tmu", key="k1") == first
    assert stale.expect("aab.approve", "2999-01", actor="aab", key="k2") == said
    with pytest.raises(af.InvalidInputError, match="other content"):
        stale.fire("tmu.approve", actor="tmu", on=tomorrow, key="k1")
    assert len(list(store.events("late-night"))) == 4


def test_bulk_is_all_or_nothing(store, flagship, seed_data) -> None:
    """Inside bulk(), a failure rolls back every create and fire before it."""
    with pytest.raises(af.TransitionRefusedError), store.bulk():
        case = store.create_case(flagship, "b1", actor="tmf", on="2021-11-01",
                                 data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-01")
        case.fire("lbf.approve", actor="lbf", on="2021-11-01")
    assert store.cases() == []
    with store.bulk():
        for n in range(3):
            store.create_case(flagship, f"ok{n}", actor="tmf", on="2021-11-01", data=seed_data)
    assert len(store.cases()) == 3
    assert store.verify().ok


def test_workflow_text_is_kept_with_the_cases(tmp_path: Path) -> None:
    """A case replays on the workflow it was created with, even after the file changes."""
    path = tmp_path / "mini.toml"
    path.write_text(MINI, encoding="utf-8")
    db = tmp_path / "c.db"
    with af.open_store(db) as store:
        store.create_case(af.load_workflow(path), "c", actor="x", on="2024-01-01")
    changed = MINI.replace('label = "B"', 'label = "Bee"')
    path.write_text(changed, encoding="utf-8")
    with af.open_store(db) as store:
        assert store.case("c").definition.label_of("b") == "B"
        with pytest.raises(af.DefinitionError, match="needs a new \\[workflow\\].version"):
            store.create_case(af.load_workflow(path), "d", actor="x", on="2024-01-01")
        bumped = af.loads_workflow(changed.replace("version = 1", "version = 2"))
        store.create_case(bumped, "e", actor="x", on="2024-01-01")
        assert store.case("e").definition.label_of("b") == "Bee"
        assert store.case("c").workflow_version == 1


def test_newer_schema_is_refused(db_path, store) -> None:
    """A database written by a newer schema is refused with a clear message."""
    store.close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(af.SchemaVersionError, match="newer approvalflow"):
        af.open_store(db_path)


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    """A SQLite file with other tables, or not a database at all, is refused."""
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.close()
    with pytest.raises(af.StoreError, match="not an approvalflow database"):
        af.open_store(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(af.StoreError):
        af.open_store(junk)


def test_create_false_refuses_a_missing_file(tmp_path: Path) -> None:
    """open_store(create=False) does not create a database."""
    with pytest.raises(af.StoreError, match="no database"):
        af.open_store(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_data_is_stored_canonically(store, flagship) -> None:
    """Case data round-trips exactly; NaN and non-JSON values are refused."""
    # (nested under 'plan': the flagship says which keys a case starts with)
    data = {"plan": {"z": 1, "a": {"ø": "æble", "list": [1, 2.5, None, True]},
                     "quote": "'; DROP TABLE--"}}
    store.create_case(flagship, "d", actor="tmf", on="2021-11-01", data=data)
    assert dict(store.case("d").data) == data
    with pytest.raises(af.InvalidInputError, match="NaN"):
        store.create_case(flagship, "n", actor="tmf", on="2021-11-01",
                          data={"plan": float("nan")})
    with pytest.raises(af.InvalidInputError, match="only JSON values"):
        store.create_case(flagship, "s", actor="tmf", on="2021-11-01", data={"plan": {1, 2}})
    assert [c.case_id for c in store.cases()] == ["d"]


def test_bulk_keeps_going_after_a_caught_refusal(store, flagship) -> None:
    """A step refused and caught inside bulk() leaves nothing behind; the rest is stored."""
    with store.bulk():
        case = store.create_case(flagship, "c1", actor="tmf", on="2021-11-01")
        with pytest.raises(af.TransitionRefusedError):
            case.fire("lbf.approve", actor="lbf", on="2021-11-01")
        case.fire("submit", actor="tmf", on="2021-11-01")
    assert store.case("c1").version == 2
    assert store.verify().ok


def test_bulk_after_a_database_failure_stores_nothing(tmp_path: Path, flagship) -> None:
    """When the database fails inside bulk() (a full disk), later steps are refused and the
    block raises: none of it is stored, not even what came after the error."""
    with af.open_store(tmp_path / "full.db", max_pages=40) as store:
        with pytest.raises(af.StoreError, match="nothing of the block is stored"), store.bulk():
            for n in range(10_000):
                try:
                    store.create_case(flagship, f"x{n}", actor="tmf", on="2021-11-01",
                                      note="x" * 2000)
                except af.StoreError:
                    break
            store.create_case(flagship, "after", actor="tmf", on="2021-11-01")
        assert store.cases() == []
        assert store.verify().ok


def test_events_are_hashable_values(submitted) -> None:
    """Events can be put in sets and compared; equal events from two loads are equal."""
    assert len({*submitted.history, *submitted.history}) == 2


def test_cases_with_an_unknown_state_is_an_error(store, submitted) -> None:
    """Filtering by a state no workflow of the store's cases has names the known states."""
    with pytest.raises(af.InvalidInputError,
                       match=r"^No workflow of these cases has a state 'nowhere'; states: 3b, "
                             r"3b_approved, .*, approval, .*, vibo_withdrawn\.$"):
        store.cases(state="nowhere")


def test_a_store_belongs_to_its_thread(store, submitted) -> None:
    """Using a store from another thread is a clear StoreError, not a corrupted transaction."""
    import threading

    errors: list[Exception] = []

    def other() -> None:
        try:
            store.case("example-plan")
        except Exception as e:  # collected and checked below
            errors.append(e)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], af.StoreError)
    assert "thread" in str(errors[0])


@pytest.mark.parametrize("timeout", [0, 0.0004])
def test_a_timeout_of_nothing_does_not_wait_for_a_writer_holding_the_case(
        store: af.Store, store_url: str, flagship, timeout: float) -> None:
    """timeout=0 (or under a millisecond) refuses at once when another writer holds the case."""
    import threading

    store.create_case(flagship, "c", actor="tmf", on="2021-11-01")
    outcome: list[object] = []

    def fire_from_another_store() -> None:
        with af.open_store(store_url, timeout=timeout) as other:
            try:
                other.case("c").fire("submit", actor="tmf", on="2021-11-01")
                outcome.append("fired")
            except Exception as e:  # noqa: BLE001 (the outcome is what is checked)
                outcome.append(e)

    with store.bulk():
        store.case("c").fire("submit", actor="tmf", on="2021-11-01")  # held until the end
        other = threading.Thread(target=fire_from_another_store)
        other.start()
        other.join(10)
        waited = other.is_alive()
    other.join(30)
    assert not waited, "the writer with no timeout waited for the other one"
    assert len(outcome) == 1 and isinstance(outcome[0], af.StoreError), outcome
    assert [e.trigger for e in store.events("c")] == ["create", "submit"]


def test_meta_says_the_same_on_both_backends(store: af.Store) -> None:
    """A new store's meta is when and by which version it was created, and nothing else."""
    meta = store.meta
    assert sorted(meta) == ["created_at", "created_by"], meta
    assert meta["created_by"].startswith("approvalflow ")
    assert store.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("case_id", ["a\x00", "a\ud800", "\udfff"])
def test_an_exported_head_no_case_can_have_is_named_not_a_crash(store: af.Store, flagship,
                                                               case_id: str) -> None:
    """An exported head whose case id holds a NUL or a lone surrogate is a problem verify
    names (no such case is in the log), on both backends, not a database error."""
    store.create_case(flagship, "a", actor="tmf", on="2021-11-01")
    heads = {**store.heads(), case_id: {"seq": 1, "hash": "0" * 64}}
    report = store.verify(heads=heads)
    assert report.problems == [f"case {case_id!r} event 1: exported earlier, no longer in "
                               f"the log"]


def test_a_workflow_registered_in_a_rolled_back_block_is_not_in_the_store(tmp_path) -> None:
    """A workflow first stored by a block that rolls back is not in the store afterwards:
    the store's cache still answered for it, as if its text were in the file."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    with af.open_store(tmp_path / "s.db") as store:
        with pytest.raises(RuntimeError), store.bulk():
            store.create_case(wf, "c", actor="tmf", on="2022-01-10", data={"amount": 5})
            raise RuntimeError("the block fails")
        with pytest.raises(af.StoreError, match="is not in"):
            store.workflow(wf.name, wf.version)
        store.create_case(wf, "c", actor="tmf", on="2022-01-10", data={"amount": 5})
        assert store.workflow(wf.name, wf.version).digest == wf.digest
        assert store.verify().ok
