"""Writers killed with SIGKILL at random moments, and a full disk: nothing told stored is lost.

Each round starts two writer processes (tests/writer_process.py) on one SQLite file
and kills both with SIGKILL: during start-up, while opening, or among their commits.
A writer prints ``ack SEQ HASH RETRIED`` after each commit and flushes, so the test
knows exactly what each was told was stored. ``APPROVALFLOW_KILL_ROUNDS`` (default
30) sets the number of rounds; ``APPROVALFLOW_KILL_SEED`` the random seed.
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
from tests.figures import figures  # noqa: F401  (the fixture)

ROUNDS = int(os.environ.get("APPROVALFLOW_KILL_ROUNDS", "30"))
SEED = int(os.environ.get("APPROVALFLOW_KILL_SEED", "20211206"))
WRITER = Path(__file__).with_name("writer_process.py")
CASES = ("w0", "w1")


class Writer:
    """One writer process and the acknowledgements read from its stdout."""

    def __init__(self, db: Path, case_id: str, first: int) -> None:
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


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    return str(result)


def test_sigkill_loses_no_acknowledged_event(tmp_path, figures):  # noqa: F811
    """After every kill: integrity_check ok, every acknowledged event is there with its
    hash, no event is doubled (a retry after the crash returns the stored one), and
    verify() passes."""
    rng = random.Random(SEED)
    db = tmp_path / "crash.db"
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

        assert _integrity(db) == "ok", f"round {round_no}"
        if not db.exists():
            continue
        with af.open_store(db) as store:
            report = store.verify()
            assert report.ok, (round_no, report.problems)
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
    figures("kill_rounds", ROUNDS, "rounds of SIGKILL against two writer processes, each "
            "followed by integrity_check, verify() and a check of every acknowledged event")
    figures("kill_acknowledged_events", total, "events acknowledged to the killed writers, "
            "all found afterwards with the acknowledged hash")
    figures("kill_retries_found_stored", retried, "events committed but not acknowledged "
            "before a kill, retried with their key by the next writer and not stored twice")
    figures("kill_durable_unacknowledged", len(unacknowledged), "events committed whose "
            "writer was killed before it could acknowledge them (stored, so not lost; a "
            "retry with the same key returns them)")


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
