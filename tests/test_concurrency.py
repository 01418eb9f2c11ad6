"""Several processes writing one store: nothing lost, nothing doubled, one winner per race.

Every writer is a real process (multiprocessing with spawn) with its own connection.
The tests of the store's promises run on SQLite (one file) and on PostgreSQL (one
schema on a throwaway server, tests/pgserver.py); the figures for docs/reliability.md
come from the SQLite runs. ``APPROVALFLOW_WRITERS`` and ``APPROVALFLOW_WRITER_EVENTS``
raise the load for a longer local run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import approvalflow as af
from tests import rawdb
from tests import timed_workflow as tw
from tests import writer_process as wp
from tests.figures import figures  # noqa: F401  (the fixture)

pytestmark = pytest.mark.backends

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


def _seqs(url: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    with rawdb.raw(url) as conn:
        for case_id, seq in conn.execute("SELECT case_id, seq FROM events "
                                         "ORDER BY case_id, seq"):
            out.setdefault(case_id, []).append(seq)
    return out


def test_many_writers_lose_and_double_nothing(store_url, backend, figures):  # noqa: F811
    """Processes appending to their own cases and to one shared case: every acknowledged
    event is stored once, sequence numbers run 1..n per case, verify() passes."""
    own_cases, shared_events = 3, EVENTS
    with af.open_store(store_url) as store:
        wp.create_or_load(store, "shared")
    start, results = CTX.Barrier(WRITERS), CTX.Queue()
    procs = [CTX.Process(target=wp.append_many, name=f"writer-{i}",
                         args=(store_url, i, own_cases, EVENTS, shared_events, start, results))
             for i in range(WRITERS)]
    for p in procs:
        p.start()
    reports = _collect(results, WRITERS)
    _join(procs)
    assert [r["error"] for r in reports] == [None] * WRITERS

    acks = [a for r in reports for a in r["acks"]]
    assert len(acks) == len(set(acks)), "an event was acknowledged twice"
    seqs = _seqs(store_url)
    for case_id, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), case_id
    assert len(seqs["shared"]) == 1 + WRITERS * shared_events
    for i in range(WRITERS):
        for j in range(own_cases):
            assert len(seqs[f"p{i}-c{j}"]) == 1 + EVENTS
    with af.open_store(store_url) as store:
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
    with af.open_store(store_url) as store:
        writers = [e.note.split()[0] for e in store.events("shared") if e.seq > 1]
    assert len(writers) == WRITERS * shared_events
    for r in range(shared_events):
        assert sorted(writers[r * WRITERS:(r + 1) * WRITERS]) == \
            sorted(f"p{i}" for i in range(WRITERS)), (r, writers)
    if backend != "sqlite":
        return
    figures("concurrency_writers", WRITERS, "processes writing one SQLite file at once")
    figures("concurrency_events", len(stored),
            "events they stored (each checked: once, in sequence, hash as acknowledged)")
    figures("concurrency_conflicts", conflicts,
            "ConcurrencyErrors on the shared case, each followed by a reload and retry")


def _race(store_url: str, plans: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rounds = len(next(iter(plans.values())))
    barrier, results = CTX.Barrier(len(plans)), CTX.Queue()
    procs = [CTX.Process(target=wp.race, name=name,
                         args=(store_url, name, rounds, plan, barrier, results))
             for name, plan in plans.items()]
    for p in procs:
        p.start()
    out = _collect(results, rounds * len(plans))
    _join(procs)
    return out


def _new_cases(store_url: str, rounds: int) -> None:
    with af.open_store(store_url) as store:
        for r in range(rounds):
            wp.create_or_load(store, f"race-{r}")


RACE_ROUNDS = 8


def test_racing_the_same_step_stores_it_once(store_url, backend, figures):  # noqa: F811
    """Two processes take the same step on the same case at once: one event is stored,
    the other process gets ConcurrencyError and writes nothing."""
    _new_cases(store_url, RACE_ROUNDS)
    step = {"trigger": "propose", "actor": "tmf"}
    outcomes = _race(store_url, {"a": [step] * RACE_ROUNDS, "b": [step] * RACE_ROUNDS})
    for r in range(RACE_ROUNDS):
        mine = [o for o in outcomes if o["round"] == r]
        assert sorted(o["ok"] for o in mine) == [False, True], mine
        loser = next(o for o in mine if not o["ok"])
        assert loser["error"] == "ConcurrencyError", loser
        assert f"'race-{r}'" in loser["message"]
    seqs = _seqs(store_url)
    assert all(seqs[f"race-{r}"] == [1, 2] for r in range(RACE_ROUNDS))
    with af.open_store(store_url) as store:
        assert store.verify().ok
    if backend == "sqlite":
        figures("race_rounds", RACE_ROUNDS, "rounds of two processes racing the same step")


def test_two_processes_casting_one_voters_ballot_store_it_once(store_url, flagship, tmp_path):
    """Two processes cast the same voter's ballot on the same case at the same moment (both
    have loaded the case before either fires): one ballot is stored, the other process gets
    ConcurrencyError and, after reloading, is refused because the voter has voted."""
    ids = [f"vote-{r}" for r in range(RACE_ROUNDS)]
    with af.open_store(store_url) as store:
        for case_id in ids:
            store.create_case(flagship, case_id, actor="tmf", on=wp.ON).fire(
                "submit", actor="tmf", on=wp.ON)
    go = str(tmp_path / "go-")
    ready, results = CTX.Queue(), CTX.Queue()
    procs = [CTX.Process(target=wp.cast_at_once, name=name,
                         args=(store_url, name, ids, "vibo.approve", "vibo_afd_1", go,
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
    with af.open_store(store_url) as store:
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


def test_racing_different_steps_keeps_one(store_url):
    """One process proposes while another withdraws the same draft: exactly one wins."""
    _new_cases(store_url, RACE_ROUNDS)
    outcomes = _race(store_url, {
        "proposer": [{"trigger": "propose", "actor": "tmf"}] * RACE_ROUNDS,
        "withdrawer": [{"trigger": "withdraw", "actor": "tmf"}] * RACE_ROUNDS})
    with af.open_store(store_url) as store:
        for r in range(RACE_ROUNDS):
            winner = next(o for o in outcomes if o["round"] == r and o["ok"])
            loser = next(o for o in outcomes if o["round"] == r and not o["ok"])
            assert loser["error"] == "ConcurrencyError", loser
            case = store.case(f"race-{r}")
            assert case.version == 2
            assert case.history[-1].hash == winner["hash"]
            expected = "tmu_review" if winner["racer"] == "proposer" else "withdrawn"
            assert case.state == {expected}


def test_same_key_from_two_processes_is_stored_once(store_url):
    """Two processes retrying one step with the same idempotency key both get the one
    stored event."""
    _new_cases(store_url, RACE_ROUNDS)
    plan = [{"trigger": "propose", "actor": "tmf", "key": f"k{r}"} for r in range(RACE_ROUNDS)]
    outcomes = _race(store_url, {"a": plan, "b": plan})
    for r in range(RACE_ROUNDS):
        mine = [o for o in outcomes if o["round"] == r]
        assert all(o["ok"] for o in mine), mine
        assert len({(o["seq"], o["hash"]) for o in mine}) == 1
    assert all(n == [1, 2] for n in _seqs(store_url).values())


def test_same_key_other_content_from_another_process_is_refused(store_url):
    """A second process reusing a key for different content gets InvalidInputError."""
    _new_cases(store_url, RACE_ROUNDS)
    outcomes = _race(store_url, {
        "a": [{"trigger": "propose", "actor": "tmf", "key": "k", "note": "a"}] * RACE_ROUNDS,
        "b": [{"trigger": "propose", "actor": "tmf", "key": "k", "note": "b"}] * RACE_ROUNDS})
    for r in range(RACE_ROUNDS):
        mine = [o for o in outcomes if o["round"] == r]
        assert Counter(o.get("error") for o in mine) == {None: 1, "InvalidInputError": 1}, mine
        assert "idempotency key 'k'" in next(o for o in mine if not o["ok"])["message"]
    assert all(n == [1, 2] for n in _seqs(store_url).values())


@contextlib.contextmanager
def _holding_the_case(url: str, case_id: str) -> Iterator[Any]:
    """Another client's open write transaction that holds what a step on ``case_id``
    needs: SQLite's write lock on the file, PostgreSQL's lock on the case's row. Yields
    the raw connection; the transaction ends (COMMIT, or ROLLBACK on an exception) when
    the block does."""
    with rawdb.raw(url) as holder:
        if isinstance(holder, rawdb.PgRaw):
            holder.execute("BEGIN")
            holder.execute("SELECT seq FROM cases WHERE case_id = ? FOR UPDATE", (case_id,))
        else:
            holder.execute("BEGIN IMMEDIATE")
        try:
            yield holder
        except BaseException:
            holder.execute("ROLLBACK")
            raise
        holder.execute("COMMIT")


def test_writer_waits_for_a_lock_held_by_another_process(store_url):
    """A writer blocked by another process's open write transaction waits and then
    succeeds (the busy timeout; PostgreSQL's lock timeout), instead of failing."""
    with af.open_store(store_url) as store:
        wp.create_or_load(store, "c")
    ready, results = CTX.Queue(), CTX.Queue()
    with _holding_the_case(store_url, "c"):
        proc = CTX.Process(target=wp.fire_once, args=(store_url, "c", 60.0, ready, results))
        proc.start()
        assert ready.get(timeout=JOIN) == "loaded"
        with pytest.raises(queue.Empty):  # still waiting while we hold the lock
            results.get(timeout=1.0)
    outcome = results.get(timeout=JOIN)
    _join([proc])
    assert outcome["ok"], outcome
    assert outcome["seq"] == 2


class _GaveUp(Exception):
    """Ends the holding transaction with a rollback."""


def test_writer_gives_up_after_its_busy_timeout_and_writes_nothing(store_url):
    """A lock held past the busy timeout is a clear StoreError; nothing is written."""
    with af.open_store(store_url) as store:
        wp.create_or_load(store, "c")
    ready, results = CTX.Queue(), CTX.Queue()
    with pytest.raises(_GaveUp), _holding_the_case(store_url, "c"):
        proc = CTX.Process(target=wp.fire_once, args=(store_url, "c", 0.2, ready, results))
        proc.start()
        outcome = results.get(timeout=JOIN)  # we hold the lock until the writer gave up
        raise _GaveUp
    _join([proc])
    assert outcome["ok"] is False
    assert outcome["error"] == "StoreError"
    assert "busy timeout" in outcome["message"]
    assert _seqs(store_url) == {"c": [1]}
    with af.open_store(store_url) as store:
        assert store.verify().ok


def test_processes_creating_one_new_store_at_once(tmp_path, backend, request):
    """Several processes opening the same new store at once (a new SQLite file; the
    tables in a new PostgreSQL schema) all get one store at the current schema."""
    if backend == "sqlite":
        paths = [str(tmp_path / f"new-{i}.db") for i in range(10)]
    else:
        server = request.getfixturevalue("pg_server")
        paths = [server.fresh_url() for _ in range(10)]
        for url in paths:
            request.addfinalizer(lambda url=url: server.drop(url))
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


# -- the feed and tick with several processes --------------------------------------------------


def test_a_reader_following_the_feed_during_concurrent_writes_misses_nothing(store_url):
    """Writer processes (a third of whose transactions roll back) and a reader that keeps
    its last position and reads on from there while they write: it reads every committed
    event exactly once, positions 1..n without a gap, each case's events in order."""
    writers, steps = 4, 15
    with af.open_store(store_url) as reader:
        start, results = CTX.Barrier(writers), CTX.Queue()
        procs = [CTX.Process(target=wp.feed_writer, args=(store_url, i, steps, start,
                                                          results)) for i in range(writers)]
        for p in procs:
            p.start()
        read: list[af.Event] = []
        reports: list[dict[str, Any]] = []
        reads_during = 0
        while len(reports) < writers:
            batch = reader.feed(after=read[-1].position if read else 0)
            reads_during += bool(batch)
            read.extend(batch)
            with contextlib.suppress(queue.Empty):
                reports.append(results.get(timeout=0.005))
        _join(procs)
        assert [r["error"] for r in reports] == [None] * writers
        while batch := reader.feed(after=read[-1].position if read else 0):
            read.extend(batch)
        assert reader.verify().ok
    assert reads_during > 1  # the reader did read while the writers wrote
    acked = [tuple(a) for r in reports for a in r["acks"]]
    assert [e.position for e in read] == list(range(1, len(read) + 1))
    assert sorted((e.case_id, e.seq) for e in read) == sorted(acked)
    assert len(acked) == len(set(acked)) == writers * (steps + 1)
    assert not any(e.note == "rolled back" for e in read)
    for i in range(writers):
        mine = [e.seq for e in read if e.case_id == f"feed-{i}"]
        assert mine == list(range(1, steps + 2))


def test_racing_tickers_take_each_timed_step_once(store_url):
    """Four tickers in four processes at once: every timed step is stored exactly once."""
    wf = af.loads_workflow(tw.TEXT)
    n_cases = 30
    with af.open_store(store_url, durability="normal") as store, store.bulk():
        for i in range(n_cases):
            case = store.create_case(wf, f"r{i:03}", actor="applicant", on="2024-01-01",
                                     data={"expires": "2024-03-01"})
            case.fire("submit", actor="applicant", on="2024-01-10")
    start = CTX.Event()
    results = CTX.Queue()
    procs = [CTX.Process(target=wp.tick_once, args=(store_url, tw.TEXT, "2024-06-01", start,
                                                    results)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    outcomes = [results.get(timeout=JOIN) for _ in procs]
    _join(procs)
    errors = [o for o in outcomes if "error" in o]
    assert not errors, errors
    assert sum(o["taken"] for o in outcomes) == 3 * n_cases
    with af.open_store(store_url) as store:
        clock = [(e.case_id, e.trigger) for e in store.events() if e.actor == "clock"]
        assert len(clock) == len(set(clock)) == 3 * n_cases
        assert store.verify().ok
        assert store._conn.execute("SELECT count(*) FROM timers").fetchone()[0] == 0


# -- readers while another process writes ------------------------------------------------------

SNAPSHOT = '''
[workflow]
name = "snapshot"
version = 1
initial = "open"

[actors]
a = "A"
b = "B"

[states.open]
[states.closed]
final = true

[[transitions]]
trigger = "a.ok"
source = "open"
target = "closed"
actors = ["a"]
guards = ["snapshot_hook"]

[[transitions]]
trigger = "b.close"
source = "open"
target = "closed"
actors = ["b"]
'''
_HOOK: list[Any] = []


@af.guard("snapshot_hook")
def _snapshot_hook(ctx: af.GuardContext) -> list[str]:
    """Passes; the first time it is asked, another process closes a case meanwhile."""
    if _HOOK:
        _HOOK.pop()()
    return []


def test_cases_filtered_while_another_process_writes_answer_from_one_snapshot(store_url):
    """cases(awaiting=...) while another process closes a case lists each case as it was awaited."""
    wf = af.loads_workflow(SNAPSHOT)
    with af.open_store(store_url) as store:
        for case_id in ("s1", "s2"):
            store.create_case(wf, case_id, actor="a", on=wp.ON)
        requests, acks = CTX.Queue(), CTX.Queue()
        proc = CTX.Process(target=wp.take_steps_on_request, args=(store_url, requests, acks))
        proc.start()
        closed: list[Any] = []

        def another_process_closes_s2() -> None:
            requests.put(("s2", "b.close", "b"))
            closed.append(acks.get(timeout=JOIN))

        _HOOK.append(another_process_closes_s2)
        try:
            listed = store.cases(awaiting="a", on=wp.ON)
            paged = store.cases(awaiting="a", on=wp.ON, limit=1)
        finally:
            _HOOK.clear()
            requests.put(None)
            _join([proc])
        assert closed == [("s2", 2)]
        assert [(c.case_id, sorted(c.state), c.is_final) for c in listed] == [
            ("s1", ["open"], False), ("s2", ["open"], False)]
        assert [c.case_id for c in paged] == ["s1"] and paged.total == 1
        assert [c.case_id for c in store.cases(awaiting="a", on=wp.ON)] == ["s1"]
        assert store.verify().ok
