"""Writers killed with SIGKILL at random moments, and a full disk: nothing told stored is lost.

Each round starts two writer processes (tests/writer_process.py) on one store and
kills both with SIGKILL: during start-up, while opening, or among their commits (on
PostgreSQL also between a commit and the feed's numbering, which follows it: in a run
of 30 rounds, 6 kills left events unnumbered). A writer
prints ``ack SEQ HASH RETRIED`` after each commit and flushes, so the test knows
exactly what each was told was stored. ``APPROVALFLOW_KILL_ROUNDS`` (default 30) sets
the number of rounds; ``APPROVALFLOW_KILL_SEED`` the random seed. The kill tests run on
SQLite and on PostgreSQL (the figures for docs/reliability.md come from SQLite); a full
disk is SQLite's (``max_pages``). tests/test_postgres.py kills a writer exactly between
its commit and the numbering.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import approvalflow as af
from tests import rawdb
from tests import writer_process as wp
from tests.figures import figures  # noqa: F401  (the fixture)

pytestmark = pytest.mark.backends

ROUNDS = int(os.environ.get("APPROVALFLOW_KILL_ROUNDS", "30"))
SEED = int(os.environ.get("APPROVALFLOW_KILL_SEED", "20211206"))
WRITER = Path(__file__).with_name("writer_process.py")
CASES = ("w0", "w1")


class Writer:
    """One writer process and the acknowledgements read from its stdout."""

    def __init__(self, db: str | Path, case_id: str, first: int) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WRITER), "crash", str(db), case_id,
                                      str(first)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # a line without its newline was cut by the kill
            if line.endswith("\n"):
                self.lines.append(line)

    def kill(self) -> str:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.reader.join()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def acks(self) -> list[tuple[int, str, bool]]:
        out = []
        for line in self.lines:
            word, seq, digest, retried = line.split()
            assert word == "ack"
            out.append((int(seq), digest, retried == "1"))
        return out


def _integrity(db: str | Path) -> str:
    conn = sqlite3.connect(db)
    result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    return str(result)


def _pending(url: str) -> int:
    """PostgreSQL: events committed whose feed position is not given yet."""
    with rawdb.raw(url) as conn:
        exists = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = "
                              "current_schema() AND tablename = 'feed_pending')").fetchone()[0]
        return int(conn.execute("SELECT count(*) FROM feed_pending").fetchone()[0]) \
            if exists else 0


def test_sigkill_loses_no_acknowledged_event(store_url, backend, figures):  # noqa: F811
    """After every kill: the database is whole (SQLite's integrity_check), every
    acknowledged event is there with its hash, no event is doubled (a retry after the
    crash returns the stored one), verify() passes, and the feed's positions run
    1..n (on PostgreSQL, once a reader has numbered what a killed writer left pending)."""
    rng = random.Random(SEED)
    db = store_url
    sqlite = backend == "sqlite"
    acked: dict[str, dict[int, str]] = {c: {} for c in CASES}
    retried = 0
    unacknowledged: set[tuple[str, int]] = set()  # durable, not acknowledged when killed
    for round_no in range(ROUNDS):
        writers = [Writer(db, c, max(acked[c], default=0) + 1) for c in CASES]
        if rng.random() < 0.3:  # anywhere in start-up, opening, creating, first commits
            time.sleep(rng.uniform(0, 1.5))
        else:  # among the commits
            want = rng.randint(1, 12)
            while len(writers[0].lines) < want and writers[0].proc.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.01))
        errors = [w.kill() for w in writers]
        for w in writers:
            assert w.proc.returncode == -signal.SIGKILL, errors

        if sqlite:
            assert _integrity(db) == "ok", f"round {round_no}"
            if not Path(db).exists():
                continue
        with af.open_store(db) as store:
            report = store.verify()  # on PostgreSQL, also with events still pending
            assert report.ok, (round_no, report.problems)
            store.feed(limit=1)  # a reader numbers what a killed writer left pending
            positions = [e.position for e in store.events()]
            assert sorted(positions) == list(range(1, len(positions) + 1)), round_no
            for case_id, w in zip(CASES, writers, strict=True):
                for seq, digest, was_retry in w.acks():
                    assert acked[case_id].get(seq, digest) == digest
                    acked[case_id][seq] = digest
                    retried += was_retry
                try:
                    events = list(store.events(case_id))
                except af.CaseNotFoundError:
                    events = []
                assert [e.seq for e in events] == list(range(1, len(events) + 1))
                stored = {e.seq: e.hash for e in events}
                for seq, digest in acked[case_id].items():
                    assert stored.get(seq) == digest, (round_no, case_id, seq)
                for e in events[1:]:  # each event once, under its own key, in its place
                    assert (e.key, e.data) == (f"{case_id}-{e.seq}", {"n": e.seq})
                extra = {(case_id, seq) for seq in stored if seq not in acked[case_id]}
                assert len(extra) <= 1  # at most the commit the kill cut off from its ack
                unacknowledged |= extra
    total = sum(len(a) for a in acked.values())
    assert total > ROUNDS  # the writers did get work done between kills
    if not sqlite:
        assert _pending(db) == 0  # the reader numbered whatever a kill left pending
        return
    figures("kill_rounds", ROUNDS, "rounds of SIGKILL against two writer processes, each "
            "followed by integrity_check, verify() and a check of every acknowledged event")
    figures("kill_acknowledged_events", total, "events acknowledged to the killed writers, "
            "all found afterwards with the acknowledged hash")
    figures("kill_retries_found_stored", retried, "events committed but not acknowledged "
            "before a kill, retried with their key by the next writer and not stored twice")
    figures("kill_durable_unacknowledged", len(unacknowledged), "events committed whose "
            "writer was killed before it could acknowledge them (stored, so not lost; a "
            "retry with the same key returns them)")


# -- killed inside a bulk block -------------------------------------------------------------


def test_sigkill_inside_a_bulk_block_stores_none_of_it(store_url, backend):
    """A writer killed inside a bulk block, after it has written a new case and steps on
    every case: none of it is stored (nothing half-written, nothing left pending), the
    log verifies, and the next writer takes the same cases on."""
    with af.open_store(store_url) as store:
        for case_id in ("a", "b"):
            case = wp.create_or_load(store, case_id)
            case.fire("propose", actor="tmf", on=wp.ON)
    before = rawdb.dump(store_url)
    proc = subprocess.Popen([sys.executable, str(WRITER), "bulk", store_url, "new", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "inside 7\n", proc.stderr.read() if proc.stderr else line
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    if backend == "sqlite":
        assert _integrity(store_url) == "ok"
    assert rawdb.dump(store_url) == before
    with af.open_store(store_url) as store:
        assert store.verify().ok
        assert [s.case_id for s in store.cases()] == ["a", "b"]
        event = store.case("a").fire("tmu.send_back", actor="tmu", on=wp.ON)
        assert (event.seq, event.position) == (3, 5)
        assert store.verify().ok


# -- disk full ------------------------------------------------------------------------------


def _dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    lines = list(conn.iterdump())
    conn.close()
    return lines


def _full_store(db: Path) -> tuple[af.Store, af.Case]:
    """A store capped a few pages above its size, with one looping case in it."""
    with af.open_store(db) as store:
        store.create_case("medfinansiering-restbeloeb", "c", actor="tmf", on="2022-01-10",
                          data={"amount": 5})
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store = af.open_store(db, max_pages=pages + 3)
    return store, store.case("c")


@pytest.mark.sqlite_only  # max_pages caps a SQLite file; PostgreSQL has no such cap
def test_full_disk_is_a_clear_store_error_and_writes_nothing(db_path):
    """When the file may not grow, fire raises StoreError saying the disk is full, and the
    file, the case and its chain are as before; with room again, the step is taken."""
    store, case = _full_store(db_path)
    with pytest.raises(af.StoreError) as err:
        for _ in range(200):
            before, version = _dump(db_path), case.version
            trigger = "propose" if "draft" in case.state else "tmu.send_back"
            case.fire(trigger, actor="tmf" if trigger == "propose" else "tmu", on="2022-01-11",
                      note="x" * 2000)
    message = str(err.value)
    assert "database or disk is full" in message
    assert "free space" in message
    assert case.version == version
    assert _dump(db_path) == before
    assert store.verify().ok
    store.close()
    assert _integrity(db_path) == "ok"
    with af.open_store(db_path) as roomy:
        again = roomy.case("c")
        assert again.version == version
        again.fire(trigger, actor="tmf" if trigger == "propose" else "tmu", on="2022-01-11",
                   note="x" * 2000)
        assert roomy.verify().ok


@pytest.mark.sqlite_only
def test_full_disk_in_bulk_stores_none_of_the_batch(db_path):
    """A bulk transaction that fills the disk part-way stores none of its cases."""
    store, _ = _full_store(db_path)
    before = _dump(db_path)
    with pytest.raises(af.StoreError, match="full"), store.bulk():
        for i in range(200):
            store.create_case("medfinansiering-restbeloeb", f"bulk-{i}", actor="tmf",
                              on="2022-01-10", data={"amount": 5}, note="y" * 2000)
    assert _dump(db_path) == before
    assert [s.case_id for s in store.cases()] == ["c"]
    assert store.verify().ok
    store.close()


@pytest.mark.sqlite_only
def test_full_disk_on_create_leaves_no_case(db_path):
    """A case whose creation does not fit is not half-created: no row, no event."""
    store, _ = _full_store(db_path)
    with pytest.raises(af.StoreError, match="full"):
        for i in range(200):
            before = _dump(db_path)
            store.create_case("medfinansiering-restbeloeb", f"new-{i}", actor="tmf",
                              on="2022-01-10", data={"amount": 5, "text": "z" * 3000})
    assert _dump(db_path) == before
    summaries = {s.case_id for s in store.cases()}
    assert summaries == {e.case_id for e in store.events()}
    assert store.verify().ok
    store.close()
