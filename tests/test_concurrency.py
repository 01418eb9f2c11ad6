"""Several processes writing one SQLite file: nothing lost, nothing doubled, one winner per race.

Every writer is a real process (multiprocessing with spawn) with its own connection.
``APPROVALFLOW_WRITERS`` and ``APPROVALFLOW_WRITER_EVENTS`` raise the load for a
longer local run.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import approvalflow as af
from tests import writer_process as wp
from tests.figures import figures  # noqa: F401  (the fixture)

CTX = multiprocessing.get_context("spawn")
WRITERS = int(os.environ.get("APPROVALFLOW_WRITERS", "4"))
EVENTS = int(os.environ.get("APPROVALFLOW_WRITER_EVENTS", "20"))
JOIN = 300  # seconds a test waits for its processes before calling it a hang


def _collect(results: Any, n: int) -> list[dict[str, Any]]:
    return [results.get(timeout=JOIN) for _ in range(n)]


def _join(procs: list[Any]) -> None:
    for p in procs:
        p.join(JOIN)
        if p.is_alive():
            p.kill()
            raise AssertionError(f"writer {p.name} hung")


def _seqs(path: Path) -> dict[str, list[int]]:
    conn = sqlite3.connect(path)
    out: dict[str, list[int]] = {}
    for case_id, seq in conn.execute("SELECT case_id, seq FROM events ORDER BY case_id, seq"):
        out.setdefault(case_id, []).append(seq)
    conn.close()
    return out


def test_many_writers_lose_and_double_nothing(db_path, figures):  # noqa: F811
    """Processes appending to their own cases and to one shared case: every acknowledged
    event is stored once, sequence numbers run 1..n per case, verify() passes."""
    own_cases, shared_events = 3, EVENTS
    with af.open_store(db_path) as store:
        wp.create_or_load(store, "shared")
    start, results = CTX.Barrier(WRITERS), CTX.Queue()
    procs = [CTX.Process(target=wp.append_many, name=f"writer-{i}",
                         args=(str(db_path), i, own_cases, EVENTS, shared_events, start, results))
             for i in range(WRITERS)]
    for p in procs:
        p.start()
    reports = _collect(results, WRITERS)
    _join(procs)
    assert [r["error"] for r in reports] == [None] * WRITERS

    acks = [a for r in reports for a in r["acks"]]
    assert len(acks) == len(set(acks)), "an event was acknowledged twice"
    seqs = _seqs(db_path)
    for case_id, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), case_id
    assert len(seqs["shared"]) == 1 + WRITERS * shared_events
    for i in range(WRITERS):
        for j in range(own_cases):
            assert len(seqs[f"p{i}-c{j}"]) == 1 + EVENTS
    with af.open_store(db_path) as store:
        stored = {(e.case_id, e.seq): e.hash for e in store.events()}
        for case_id, seq, digest in acks:
            assert stored[(case_id, seq)] == digest
        assert len(stored) == len(acks) + 1  # + the shared case's creation
        report = store.verify()
        assert report.ok, report.problems
        assert {s.case_id: s.version for s in store.cases()} == \
            {case_id: len(n) for case_id, n in seqs.items()}
    conflicts = sum(r["conflicts"] for r in reports)
    # Every shared write was a round in which all writers had loaded the case before any
    # of them fired: all but one of them met a conflict, and then retried.
    assert conflicts >= (WRITERS - 1) * shared_events, conflicts
    # ... so the shared case's events interleave the writers: one from each, round by round.
    with af.open_store(db_path) as store:
        writers = [e.note.split()[0] for e in store.events("shared") if e.seq > 1]
    assert len(writers) == WRITERS * shared_events
    for r in range(shared_events):
        assert sorted(writers[r * WRITERS:(r + 1) * WRITERS]) == \
            sorted(f"p{i}" for i in range(WRITERS)), (r, writers)
    figures("concurrency_writers", WRITERS, "processes writing one SQLite file at once")
    figures("concurrency_events", len(stored),
            "events they stored (each checked: once, in sequence, hash as acknowledged)")
    figures("concurrency_conflicts", conflicts,
            "ConcurrencyErrors on the shared case, each followed by a reload and retry")


def _race(db_path: Path, plans: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rounds = len(next(iter(plans.values())))
    barrier, results = CTX.Barrier(len(plans)), CTX.Queue()
    procs = [CTX.Process(target=wp.race, name=name,
                         args=(str(db_path), name, rounds, plan, barrier, results))
             for name, plan in plans.items()]
    for p in procs:
        p.start()
    out = _collect(results, rounds * len(plans))
    _join(procs)
    return out


def _new_cases(db_path: Path, rounds: int) -> None:
    with af.open_store(db_path) as store:
        for r in range(rounds):
            wp.create_or_load(store, f"race-{r}")


RACE_ROUNDS = 8


def test_racing_the_same_step_stores_it_once(db_path, figures):  # noqa: F811
    """Two processes take the same step on the same case at once: one event is stored,
    the other process gets ConcurrencyError and writes nothing."""
    _new_cases(db_path, RACE_ROUNDS)
    step = {"trigger": "propose", "actor": "tmf"}
    outcomes = _race(db_path, {"a": [step] * RACE_ROUNDS, "b": [step] * RACE_ROUNDS})
    for r in range(RACE_ROUNDS):
        mine = [o for o in outcomes if o["round"] == r]
        assert sorted(o["ok"] for o in mine) == [False, True], mine
        loser = next(o for o in mine if not o["ok"])
        assert loser["error"] == "ConcurrencyError"
        assert f"'race-{r}'" in loser["message"]
    seqs = _seqs(db_path)
    assert all(seqs[f"race-{r}"] == [1, 2] for r in range(RACE_ROUNDS))
    with af.open_store(db_path) as store:
        assert store.verify().ok
    figures("race_rounds", RACE_ROUNDS, "rounds of two processes racing the same step")


def test_two_processes_casting_one_voters_ballot_store_it_once(db_path, flagship):
    """Two processes cast the same voter's ballot on the same case at the same moment (both
    have loaded the case before either fires): one ballot is stored, the other process gets
    ConcurrencyError and, after reloading, is refused because the voter has voted."""
    ids = [f"vote-{r}" for r in range(RACE_ROUNDS)]
    with af.open_store(db_path) as store:
        for case_id in ids:
            store.create_case(flagship, case_id, actor="tmf", on=wp.ON).fire(
                "submit", actor="tmf", on=wp.ON)
    go = str(db_path.parent / "go-")
    ready, results = CTX.Queue(), CTX.Queue()
    procs = [CTX.Process(target=wp.cast_at_once, name=name,
                         args=(str(db_path), name, ids, "vibo.approve", "vibo_afd_1", go,
                               ready, results))
             for name in ("a", "b")]
    for p in procs:
        p.start()
    for case_id in ids:  # a file both wait on: it appears once both have loaded the case
        assert sorted(ready.get(timeout=JOIN) for _ in procs) == [("a", case_id),
                                                                   ("b", case_id)]
        Path(go + case_id).touch()
    outcomes = _collect(results, len(ids) * len(procs))
    _join(procs)
    with af.open_store(db_path) as store:
        for case_id in ids:
            mine = [o["attempts"] for o in outcomes if o["case"] == case_id]
            [won] = [a for a in mine if a[0]["ok"]]
            [lost] = [a for a in mine if not a[0]["ok"]]
            assert lost[0]["error"] == "ConcurrencyError", lost
            assert lost[1]["error"] == "TransitionRefusedError", lost
            assert "'vibo_afd_1' has already voted 'yes'" in lost[1]["message"]
            case = store.case(case_id)
            assert [(e.trigger, e.actor) for e in case.history[2:]] == \
                [("vibo.approve", "vibo_afd_1")]
            assert case.history[-1].hash == won[0]["hash"]
            assert case.ballots() == {"vibo": {"vibo_afd_1": "yes"}}
        report = store.verify()
        assert report.ok, report.problems


def test_racing_different_steps_keeps_one(db_path):
    """One process proposes while another withdraws the same draft: exactly one wins."""
    _new_cases(db_path, RACE_ROUNDS)
    outcomes = _race(db_path, {
        "proposer": [{"trigger": "propose", "actor": "tmf"}] * RACE_ROUNDS,
        "withdrawer": [{"trigger": "withdraw", "actor": "tmf"}] * RACE_ROUNDS})
    with af.open_store(db_path) as store:
        for r in range(RACE_ROUNDS):
            winner = next(o for o in outcomes if o["round"] == r and o["ok"])
            loser = next(o for o in outcomes if o["round"] == r and not o["ok"])
            assert loser["error"] == "ConcurrencyError"
            case = store.case(f"race-{r}")
            assert case.version == 2
            assert case.history[-1].hash == winner["hash"]
            expected = "tmu_review" if winner["racer"] == "proposer" else "withdrawn"
            assert case.state == {expected}


def test_same_key_from_two_processes_is_stored_once(db_path):
    """Two processes retrying one step with the same idempotency key both get the one
    stored event."""
    _new_cases(db_path, RACE_ROUNDS)
    plan = [{"trigger": "propose", "actor": "tmf", "key": f"k{r}"} for r in range(RACE_ROUNDS)]
    outcomes = _race(db_path, {"a": plan, "b": plan})
    for r in range(RACE_ROUNDS):
        mine = [o for o in outcomes if o["round"] == r]
        assert all(o["ok"] for o in mine), mine
        assert len({(o["seq"], o["hash"]) for o in mine}) == 1
    assert all(n == [1, 2] for n in _seqs(db_path).values())


def test_same_key_other_content_from_another_process_is_refused(db_path):
    """A second process reusing a key for different content gets InvalidInputError."""
    _new_cases(db_path, RACE_ROUNDS)
    outcomes = _race(db_path, {
        "a": [{"trigger": "propose", "actor": "tmf", "key": "k", "note": "a"}] * RACE_ROUNDS,
        "b": [{"trigger": "propose", "actor": "tmf", "key": "k", "note": "b"}] * RACE_ROUNDS})
    for r in range(RACE_ROUNDS):
        mine = [o for o in outcomes if o["round"] == r]
        assert Counter(o.get("error") for o in mine) == {None: 1, "InvalidInputError": 1}, mine
        assert "idempotency key 'k'" in next(o for o in mine if not o["ok"])["message"]
    assert all(n == [1, 2] for n in _seqs(db_path).values())


def test_writer_waits_for_a_lock_held_by_another_process(db_path):
    """A writer blocked by another process's open write transaction waits and then
    succeeds (the busy timeout), instead of failing."""
    with af.open_store(db_path) as store:
        wp.create_or_load(store, "c")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ready, results = CTX.Queue(), CTX.Queue()
    proc = CTX.Process(target=wp.fire_once, args=(str(db_path), "c", 60.0, ready, results))
    proc.start()
    assert ready.get(timeout=JOIN) == "loaded"
    with pytest.raises(queue.Empty):  # still waiting while we hold the lock
        results.get(timeout=1.0)
    holder.execute("COMMIT")
    holder.close()
    outcome = results.get(timeout=JOIN)
    _join([proc])
    assert outcome["ok"], outcome
    assert outcome["seq"] == 2


def test_writer_gives_up_after_its_busy_timeout_and_writes_nothing(db_path):
    """A lock held past the busy timeout is a clear StoreError; nothing is written."""
    with af.open_store(db_path) as store:
        wp.create_or_load(store, "c")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ready, results = CTX.Queue(), CTX.Queue()
    proc = CTX.Process(target=wp.fire_once, args=(str(db_path), "c", 0.2, ready, results))
    proc.start()
    outcome = results.get(timeout=JOIN)  # we hold the lock until the writer has given up
    holder.execute("ROLLBACK")
    holder.close()
    _join([proc])
    assert outcome["ok"] is False
    assert outcome["error"] == "StoreError"
    assert "busy timeout" in outcome["message"]
    assert _seqs(db_path) == {"c": [1]}


def test_processes_creating_one_new_file_at_once(tmp_path):
    """Several processes opening the same new file at once all get one schema-2 store."""
    paths = [str(tmp_path / f"new-{i}.db") for i in range(10)]
    start, results = CTX.Barrier(WRITERS), CTX.Queue()
    procs = [CTX.Process(target=wp.open_new, args=(paths, start, results))
             for _ in range(WRITERS)]
    for p in procs:
        p.start()
    outcomes = _collect(results, WRITERS * len(paths))
    _join(procs)
    assert [o for o in outcomes if not o["ok"]] == []
    assert {o["schema"] for o in outcomes} == {af.store.SCHEMA_VERSION}
    for path in paths:
        assert len({o["meta"]["created_at"] for o in outcomes if o["path"] == path}) == 1
