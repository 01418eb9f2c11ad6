"""Re-deciding on conflict: ``fire(..., retries=N)`` reloads the case and decides anew.

Threads each open their own store (one store per thread, as docs/integration.md says).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import approvalflow as af
from tests import grant_guards  # noqa: F401  (registers the research grant's guard)

pytestmark = pytest.mark.backends

GRANT = Path(__file__).parent / "fixtures" / "research-grant.toml"
VOTERS = [f"e{n}" for n in range(1, 9)]
JOIN = 300  # seconds before a thread counts as hung (a guard, not a timing assertion)


@pytest.fixture
def grant(db_path: Path) -> str:
    """A submitted research grant: the ethics vote of eight and the finance check are open."""
    with af.open_store(db_path) as store:
        case = store.create_case(af.load_workflow(GRANT), "g", actor="applicant",
                                 on="2024-01-02", data={"budget": 5000}, by="ann")
        case.fire("submit", actor="applicant", on="2024-01-03", by="ann")
    return "g"


def _at_once(db_path: Path, jobs: list[tuple[str, str, str | None]],
             retries: int) -> list[dict[str, Any]]:
    """Each job (trigger, actor, person) in its own thread with its own store; every thread
    loads the case, waits for the others, then fires with ``retries``."""
    barrier = threading.Barrier(len(jobs))
    results: list[dict[str, Any]] = [{} for _ in jobs]

    def work(i: int, trigger: str, actor: str, by: str | None) -> None:
        try:
            with af.open_store(db_path) as store:
                case = store.case("g")
                barrier.wait()
                event = case.fire(trigger, actor=actor, on="2024-01-10", by=by,
                                  retries=retries)
                results[i] = {"ok": True, "seq": event.seq, "version": case.version}
        except Exception as e:  # reported to the test, which asserts on it
            results[i] = {"ok": False, "error": f"{type(e).__name__}: {e}"}

    threads = [threading.Thread(target=work, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
        assert not t.is_alive(), "a writer thread hung"
    return results


def test_eight_threads_cast_every_ballot_at_once(db_path: Path, grant: str) -> None:
    """Eight voters in eight threads, each with its own store, plus the finance check in a
    ninth: with retries every ballot and the check are stored, each exactly once, and the
    vote passes."""
    jobs: list[tuple[str, str, str | None]] = [("ethics.yes", v, None) for v in VOTERS]
    jobs.append(("finance.ok", "finance", "kim"))
    results = _at_once(db_path, jobs, retries=len(jobs))
    assert [r.get("error") for r in results] == [None] * len(jobs)
    assert sorted(r["seq"] for r in results) == list(range(3, 3 + len(jobs)))
    with af.open_store(db_path) as store:
        case = store.case("g")
        ballots = [(e.trigger, e.actor) for e in case.history if e.trigger == "ethics.yes"]
        assert sorted(a for _, a in ballots) == VOTERS  # each voter once
        assert {"ethics_ok", "finance_ok"} <= case.state
        assert store.verify().ok


def test_without_retries_concurrent_ballots_conflict(db_path: Path, grant: str) -> None:
    """The same race without retries: the first to commit wins, the others get
    ConcurrencyError and store nothing."""
    results = _at_once(db_path, [("ethics.yes", v, None) for v in VOTERS[:4]], retries=0)
    won = [r for r in results if r["ok"]]
    lost = [r for r in results if not r["ok"]]
    assert len(won) >= 1 and all(r["error"].startswith("ConcurrencyError") for r in lost)
    with af.open_store(db_path) as store:
        assert store.case("g").version == 2 + len(won)


def test_redecision_on_the_new_state_refuses(db_path: Path, grant: str) -> None:
    """A 'no' closes the vote while another copy was about to vote 'yes': on the retry the
    ballot is decided anew on the stored state and refused; nothing is written for it,
    and the caller's Case object is left at the new state."""
    with af.open_store(db_path) as first, af.open_store(db_path) as second:
        late = second.case("g")
        first.case("g").fire("ethics.no", actor="e1", on="2024-01-10")
        with pytest.raises(af.TransitionRefusedError) as refused:
            late.fire("ethics.yes", actor="e2", on="2024-01-10", retries=3)
        assert "can't be taken while the case is in" in str(refused.value)
        assert late.version == 3 and "ethics_refused" in late.state
        assert first.case("g").version == 3


def test_retry_takes_the_new_state_and_succeeds(db_path: Path, grant: str) -> None:
    """A copy read before another voter's ballot still casts its own with retries=1, on
    top of the other one (never onto the old state)."""
    with af.open_store(db_path) as first, af.open_store(db_path) as second:
        stale = second.case("g")
        first.case("g").fire("ethics.yes", actor="e1", on="2024-01-10")
        event = stale.fire("ethics.yes", actor="e2", on="2024-01-10", retries=1)
        assert event.seq == 4 and event.prev_hash == first.case("g").history[2].hash
        assert stale.ballots()["ethics"] == {"e1": "yes", "e2": "yes"}


def test_retries_exhausted_raises_concurrency_error(db_path: Path, grant: str) -> None:
    """retries=0 (the default) raises at once; the stale copy writes nothing."""
    with af.open_store(db_path) as first, af.open_store(db_path) as second:
        stale = second.case("g")
        first.case("g").fire("ethics.yes", actor="e1", on="2024-01-10")
        with pytest.raises(af.ConcurrencyError):
            stale.fire("ethics.yes", actor="e2", on="2024-01-10")
        assert first.case("g").version == 3


def test_a_retry_inside_a_rolled_back_bulk_block_leaves_the_copy_as_it_was(
        store_url: str) -> None:
    """A copy that reloaded on a retry inside a bulk block that rolls back is put back as it was."""
    with af.open_store(store_url) as store:
        case = store.create_case(af.load_workflow(GRANT), "g", actor="applicant",
                                 on="2024-01-02", data={"budget": 5000}, by="ann")
        case.fire("submit", actor="applicant", on="2024-01-03", by="ann")
        voted, stale, refused = store.case("g"), store.case("g"), store.case("g")
        before = [(c.version, c.head_hash, c.ballots()) for c in (voted, stale, refused)]
        with pytest.raises(RuntimeError), store.bulk():
            voted.fire("ethics.yes", actor="e1", on="2024-01-10")
            stale.fire("ethics.yes", actor="e2", on="2024-01-10", retries=1)
            with pytest.raises(af.TransitionRefusedError):  # e1 has voted, decided anew
                refused.fire("ethics.yes", actor="e1", on="2024-01-10", retries=1)
            assert refused.version == stale.version == 4
            raise RuntimeError("rolled back")
        assert [(c.version, c.head_hash, c.ballots()) for c in (voted, stale, refused)] == before
        assert store.case("g").version == 2
        event = stale.fire("ethics.yes", actor="e2", on="2024-01-10")
        assert (event.seq, event.prev_hash) == (3, before[1][1])
        assert store.verify().ok


@pytest.mark.parametrize("retries", [-1, 1001, True, 1.5, "2"])
def test_retries_must_be_a_small_whole_number(store: af.Store, retries: Any) -> None:
    """retries outside 0..1000, or not a whole number, is refused before anything."""
    case = store.create_case(af.load_workflow(GRANT), "g", actor="applicant",
                             on="2024-01-02")
    with pytest.raises(af.InvalidInputError, match="retries"):
        case.fire("submit", actor="applicant", on="2024-01-03", retries=retries)
    assert case.version == 1


def test_one_store_shared_by_threads_says_what_to_do(store: af.Store) -> None:
    """A Store used from another thread than the one that opened it: the error says to
    open one store per thread or per request."""
    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.cases()
        except Exception as e:  # reported to the test
            errors.append(e)

    t = threading.Thread(target=use)
    t.start()
    t.join(JOIN)
    assert len(errors) == 1 and isinstance(errors[0], af.StoreError)
    assert "open one store per thread or per request" in str(errors[0]).lower()


def test_writer_threads_of_one_process_take_turns(db_path: Path, grant: str) -> None:
    """A thread that wants to write while another thread's bulk block holds the file waits
    its turn and then writes; with a timeout shorter than the block, it fails with a
    StoreError that names the timeout and writes nothing."""
    outcomes: list[str] = []
    started = threading.Event()

    def write(timeout: float) -> None:
        try:
            with af.open_store(db_path, timeout=timeout) as store:
                case = store.case("g")
                started.set()
                case.fire("ethics.yes", actor="e2", on="2024-01-10", retries=2)
                outcomes.append("stored")
        except af.StoreError as e:
            outcomes.append(str(e))

    with af.open_store(db_path) as store, store.bulk():
        store.case("g").fire("ethics.yes", actor="e1", on="2024-01-10")
        impatient = threading.Thread(target=write, args=(0.05,))
        impatient.start()
        impatient.join(JOIN)  # it gives up while the block is still open
        started.clear()
        patient = threading.Thread(target=write, args=(60.0,))
        patient.start()
        assert started.wait(JOIN)
    patient.join(JOIN)
    assert "another writer of this process held" in outcomes[0]
    assert "timeout of 0.05 s" in outcomes[0]
    assert outcomes[1:] == ["stored"]
    with af.open_store(db_path) as store:
        assert [e.actor for e in store.case("g").history[2:]] == ["e1", "e2"]
