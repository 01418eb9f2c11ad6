"""The feed: every event in commit order with gap-free positions, `tail`, and subscriptions."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import approvalflow as af
from tests import rawdb
from tests import writer_process as wp

pytestmark = pytest.mark.backends

CTX = multiprocessing.get_context("spawn")
CONSOLE = Path(sys.executable).with_name("approvalflow")
LOOP = wp.WORKFLOW
JOIN = 300  # seconds before a process counts as hung (a guard, not a timing assertion)


def _loop_case(store: af.Store, case_id: str, steps: int = 0) -> af.Case:
    case = store.create_case(LOOP, case_id, actor="tmf", on=wp.ON, data=wp.DATA)
    for _ in range(steps):
        trigger, actor = wp.next_step(case)
        case.fire(trigger, actor=actor, on=wp.ON)
    return case


def test_feed_is_every_event_in_commit_order(store: af.Store) -> None:
    """Positions run 1..n in the order events were committed, across cases; after and
    limit page through them."""
    a = _loop_case(store, "a")
    _loop_case(store, "b", steps=1)
    a.fire("propose", actor="tmf", on=wp.ON)
    feed = store.feed()
    assert [(e.case_id, e.seq) for e in feed] == [("a", 1), ("b", 1), ("b", 2), ("a", 2)]
    assert [e.position for e in feed] == [1, 2, 3, 4]
    assert [e.position for e in store.feed(after=1, limit=2)] == [2, 3]
    assert store.feed(after=4) == []
    assert a.history[-1].position == 4  # the event fire returned knows its position
    assert store.case("a").history[-1] == feed[-1]


@pytest.mark.parametrize("after, limit", [(-1, 10), (0, 0), ("1", 10), (True, 10),
                                          (0, 100_001), (2**63, 10), (10**30, 10)])
def test_feed_refuses_bad_arguments(store: af.Store, after: Any, limit: Any) -> None:
    """after below 0 or past 2**63 - 1 (no integer SQLite or PostgreSQL can hold), a limit
    outside 1..100000, or a value that is not a whole number."""
    with pytest.raises(af.InvalidInputError):
        store.feed(after=after, limit=limit)


def test_rolled_back_transactions_leave_no_gap(store: af.Store) -> None:
    """A bulk block that fails and a refused step take no position: the next committed
    event takes the next number, and verify finds the feed whole."""
    case = _loop_case(store, "a")
    with pytest.raises(RuntimeError), store.bulk():
        _loop_case(store, "b", steps=2)
        raise RuntimeError("changed my mind")
    with pytest.raises(af.TransitionRefusedError):
        case.fire("tmu.send_back", actor="tmf", on=wp.ON)
    case.fire("propose", actor="tmf", on=wp.ON)
    assert [e.position for e in store.feed()] == [1, 2]
    assert store.verify().ok


def test_verify_names_a_gap_and_a_repeated_position(db_path: Path) -> None:
    """A position moved behind the library's back is a gap and a repeat that verify names."""
    with af.open_store(db_path) as store:
        _loop_case(store, "a", steps=3)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP INDEX events_position")
    conn.execute("UPDATE events SET position = 2 WHERE case_id = 'a' AND seq = 3")
    conn.close()
    with af.open_store(db_path) as store:
        problems = store.verify().problems
    assert ("the feed: position 2 is held by case 'a' event 2 and by case 'a' event 3 too "
            "(positions are unique)") in problems
    assert ("the feed: position 3 is missing, between case 'a' event 3 and case 'a' event 4 "
            "(events were removed, or their positions changed)") in problems
    assert ("case 'a' event 3: feed position 2 is not after event 2's 2 (a case's events "
            "are committed in order)") in problems


def test_migration_numbers_existing_events_in_insert_order(tmp_path: Path) -> None:
    """A schema-1 file's events get positions in the order they were inserted (rowid)."""
    path = tmp_path / "old.db"
    path.write_bytes((Path(__file__).parent / "fixtures" / "schema-1.db").read_bytes())
    conn = sqlite3.connect(path)
    order = [tuple(r) for r in conn.execute("SELECT case_id, seq FROM events ORDER BY rowid")]
    conn.close()
    with af.open_store(path) as store:
        assert [(e.case_id, e.seq) for e in store.feed()] == order
        assert [e.position for e in store.feed()] == list(range(1, len(order) + 1))
        assert store.verify().ok


# -- subscriptions --------------------------------------------------------------------------


def test_subscriber_is_called_after_the_commit(store: af.Store, store_url: str) -> None:
    """The callback runs once per event, after the commit: another connection already sees
    the event, and the Case object has already moved on."""
    seen: list[tuple[int | None, int, str]] = []
    case = _loop_case(store, "a")

    def callback(event: af.Event) -> None:
        with rawdb.raw(store_url) as other:  # a reader outside the writing transaction
            stored = other.execute("SELECT COUNT(*) FROM events WHERE case_id = ? AND seq = ?",
                                   (event.case_id, event.seq)).fetchone()[0]
        seen.append((event.position, stored, str(case.version)))

    store.subscribe(callback)
    case.fire("propose", actor="tmf", on=wp.ON)
    assert seen == [(2, 1, "2")]


def test_subscriber_hears_a_bulk_block_once_it_commits(store: af.Store) -> None:
    """A bulk block's events reach the callback after the block commits, in feed order;
    a block rolled back calls nothing; unsubscribing stops the calls."""
    seen: list[int | None] = []
    stop = store.subscribe(lambda e: seen.append(e.position))
    with store.bulk():
        _loop_case(store, "a", steps=2)
        assert seen == []  # nothing while the transaction is open
    assert seen == [1, 2, 3]
    with pytest.raises(RuntimeError), store.bulk():
        _loop_case(store, "b", steps=1)
        raise RuntimeError("no")
    assert seen == [1, 2, 3]
    stop()
    _loop_case(store, "c")
    assert seen == [1, 2, 3]


def test_a_subscriber_hears_only_what_its_own_store_committed(store_url: str) -> None:
    """Another process committing right after this store's commit is not passed on to it."""
    with af.open_store(store_url) as store:
        mine = _loop_case(store, "mine")
        _loop_case(store, "theirs")
        requests, acks = CTX.Queue(), CTX.Queue()
        proc = CTX.Process(target=wp.fire_on_request, args=(store_url, "theirs", requests,
                                                           acks))
        proc.start()
        theirs: list[Any] = []
        armed = [False]
        number = store._number_feed

        def another_process_commits() -> None:
            number()
            if armed[0]:  # right after this store's commit, before its callbacks run
                armed[0] = False
                requests.put("fire")
                theirs.append(acks.get(timeout=JOIN))

        store._number_feed = another_process_commits  # type: ignore[method-assign]
        heard: list[tuple[str, int]] = []
        store.subscribe(lambda e: heard.append((e.case_id, e.seq)))
        try:
            for _ in range(2):
                armed[0] = True
                trigger, actor = wp.next_step(mine)
                mine.fire(trigger, actor=actor, on=wp.ON)
            armed[0] = True
            with store.bulk():
                for _ in range(2):
                    trigger, actor = wp.next_step(mine)
                    mine.fire(trigger, actor=actor, on=wp.ON)
        finally:
            requests.put(None)
            proc.join(JOIN)
        assert theirs == [("theirs", 2), ("theirs", 3), ("theirs", 4)]
        assert heard == [("mine", 2), ("mine", 3), ("mine", 4), ("mine", 5)]
        assert store.verify().ok


def test_a_rolled_back_block_after_a_rebuild_passes_nothing_on(store: af.Store) -> None:
    """After rebuild() and rebuild_timers(), a bulk block that rolls back calls no callback."""
    case = _loop_case(store, "a")
    heard: list[tuple[str, int]] = []
    store.subscribe(lambda e: heard.append((e.case_id, e.seq)))
    for rebuild in (store.rebuild, store.rebuild_timers):
        rebuild()
        with pytest.raises(RuntimeError), store.bulk():
            trigger, actor = wp.next_step(case)
            case.fire(trigger, actor=actor, on=wp.ON)
            raise RuntimeError("rolled back")
        assert case.version == 1
    assert heard == []
    assert [(e.case_id, e.seq) for e in store.feed()] == [("a", 1)]
    trigger, actor = wp.next_step(case)
    case.fire(trigger, actor=actor, on=wp.ON)
    assert heard == [("a", 2)]


def test_a_callback_that_takes_a_step_leaves_every_subscriber_in_feed_order(
        store: af.Store) -> None:
    """A callback that fires a step: every subscriber still hears each event once, in feed order."""
    reacting = _loop_case(store, "a")
    other = _loop_case(store, "b")
    heard: list[int | None] = []

    def react(event: af.Event) -> None:
        if event.case_id == "a":  # a consumer that answers each step on 'a' with one on 'b'
            trigger, actor = wp.next_step(other)
            other.fire(trigger, actor=actor, on=wp.ON)

    store.subscribe(react)
    store.subscribe(lambda e: heard.append(e.position))
    trigger, actor = wp.next_step(reacting)
    reacting.fire(trigger, actor=actor, on=wp.ON)
    with store.bulk():
        for _ in range(2):
            trigger, actor = wp.next_step(reacting)
            reacting.fire(trigger, actor=actor, on=wp.ON)
    assert heard == [3, 4, 5, 6, 7, 8]
    assert [(e.position, e.case_id) for e in store.feed(after=2)] == [
        (3, "a"), (4, "b"), (5, "a"), (6, "a"), (7, "b"), (8, "b")]


def test_failing_subscriber_neither_undoes_nor_blocks(store: af.Store,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A callback that raises is logged (approvalflow.store, ERROR); the step is stored,
    the caller gets its event, and the next callback still runs."""
    seen: list[int | None] = []

    def broken(event: af.Event) -> None:
        raise ValueError("consumer is down")

    store.subscribe(broken)
    store.subscribe(lambda e: seen.append(e.position))
    with caplog.at_level(logging.ERROR, logger="approvalflow.store"):
        case = _loop_case(store, "a")
        event = case.fire("propose", actor="tmf", on=wp.ON)
    assert event.seq == 2 and store.case("a").version == 2
    assert seen == [1, 2]
    failures = [r for r in caplog.records if r.name == "approvalflow.store"]
    assert len(failures) == 2 and "consumer is down" in str(failures[0].exc_info[1])
    assert "event 2 of case 'a'" in failures[1].getMessage()


def test_subscribe_takes_a_function(store: af.Store) -> None:
    """Something that is not callable is refused when subscribed, not when an event comes."""
    with pytest.raises(af.InvalidInputError, match="subscribe"):
        store.subscribe("print")  # type: ignore[arg-type]


# -- tail, and many writers with a follower -------------------------------------------------


def _tail(db: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE), "--db", str(db), "tail", *args], capture_output=True,
                          text=True, timeout=120)


def test_tail_prints_the_feed(store_url: str) -> None:
    """tail prints one line per event from --after on; --json one object per line."""
    with af.open_store(store_url) as store:
        case = _loop_case(store, "a")
        case.fire("propose", actor="tmf", on=wp.ON, by="k.berg")
    done = _tail(store_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "     1  a #1  2022-01-10  [create] create by tmf: draft",
        "     2  a #2  2022-01-10  propose by tmf (k.berg): tmu_review"]
    as_json = _tail(store_url, "--after", "1", "--json")
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(r["position"], r["seq"], r["by"]) for r in rows] == [(2, 2, "k.berg")]


def _reader(stream: Any, lines: list[str], enough: threading.Event, want: int) -> None:
    for line in stream:
        lines.append(line)
        if len(lines) >= want:
            enough.set()
    enough.set()


def test_follower_sees_every_committed_event_once_in_order(store_url: str) -> None:
    """Writer processes (some of whose transactions roll back) and a `tail --follow`
    process: the follower prints every committed event exactly once, positions 1..n in
    order, and ends cleanly on SIGINT."""
    writers, steps = 3, 12
    with af.open_store(store_url):
        pass  # the file exists before the follower opens it
    follower = subprocess.Popen([str(CONSOLE), "--db", store_url, "tail", "--follow",
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        start, results = CTX.Barrier(writers), CTX.Queue()
        procs = [CTX.Process(target=wp.feed_writer, args=(store_url, i, steps, start,
                                                          results)) for i in range(writers)]
        for p in procs:
            p.start()
        reports = [results.get(timeout=JOIN) for _ in procs]
        for p in procs:
            p.join(JOIN)
        assert [r["error"] for r in reports] == [None] * writers
        acked = {tuple(a) for r in reports for a in r["acks"]}
        lines: list[str] = []
        enough = threading.Event()
        reader = threading.Thread(target=_reader, args=(follower.stdout, lines, enough,
                                                        len(acked)), daemon=True)
        reader.start()
        assert enough.wait(JOIN), f"the follower printed {len(lines)} of {len(acked)}"
        follower.send_signal(signal.SIGINT)
        code = follower.wait(JOIN)
        reader.join(JOIN)
        stderr = follower.stderr.read() if follower.stderr else ""
    finally:
        if follower.poll() is None:
            follower.kill()
    assert code == 0, stderr
    assert "Traceback" not in stderr and stderr == ""
    events = [json.loads(line) for line in lines]
    assert [e["position"] for e in events] == list(range(1, len(events) + 1))
    assert {(e["case_id"], e["seq"]) for e in events} == acked
    assert len(events) == len(acked) == writers * (steps + 1)
    assert not any(e["note"] == "rolled back" for e in events)
    with af.open_store(store_url) as store:
        assert store.verify().ok


def test_tail_follow_ends_cleanly_on_sigint_while_waiting(db_path: Path) -> None:
    """A follower waiting for commits (nothing new) ends with exit 0 and no traceback."""
    with af.open_store(db_path) as store:
        _loop_case(store, "a")
    follower = subprocess.Popen([str(CONSOLE), "--db", str(db_path), "tail", "--follow"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()  # it has started and printed the first event
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=JOIN)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert first.startswith("     1  a #1")
    assert follower.returncode == 0 and err == "" and out == ""
