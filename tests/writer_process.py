"""Writers that run in their own processes, for the concurrency and crash tests.

The functions are started by ``multiprocessing`` (spawn) from test_concurrency.py;
``python tests/writer_process.py crash DB CASE FROM`` and ``... bulk DB CASE STEPS``
are the writers test_crash.py and test_postgres.py kill. DB is a SQLite path or a
PostgreSQL URL. Every writer drives the co-financing workflow round its loop: ``propose``
(draft -> tmu_review) and ``tmu.send_back`` (tmu_review -> draft), so a case can take
any number of steps.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

import approvalflow as af

WORKFLOW = "medfinansiering-restbeloeb"
ON = "2022-01-10"
DATA = {"amount": 600_000}


def step_for(seq: int) -> tuple[str, str]:
    """The trigger and actor of event ``seq`` of a looping case (event 1 is its creation)."""
    return ("propose", "tmf") if seq % 2 == 0 else ("tmu.send_back", "tmu")


def next_step(case: af.Case) -> tuple[str, str]:
    return ("propose", "tmf") if "draft" in case.state else ("tmu.send_back", "tmu")


def create_or_load(store: af.Store, case_id: str) -> af.Case:
    try:
        return store.create_case(af.load_workflow(WORKFLOW), case_id, actor="tmf", on=ON,
                                 data=DATA)
    except af.CaseExistsError:
        return store.case(case_id)


# -- concurrency: many writers, one file ---------------------------------------------------


BARRIER_TIMEOUT = 120.0  # seconds: a writer that died must not hang the others for ever


def append_many(path: str, proc: int, own_cases: int, own_events: int, shared_events: int,
                start: Any, results: Any) -> None:
    """Write ``own_events`` to each of ``own_cases`` cases of our own, interleaved, and
    ``shared_events`` to the case "shared" that every writer appends to. Each shared
    write is a round: every writer loads the shared case, waits for the others at the
    barrier, then fires, so all but one decide on a state another writer has just moved
    on (ConcurrencyError, reload, retry). Report every acknowledged (case, seq, hash)."""
    acks: list[tuple[str, int, str]] = []
    conflicts = 0
    try:
        store = af.open_store(path)
        start.wait(BARRIER_TIMEOUT)
        cases = [create_or_load(store, f"p{proc}-c{j}") for j in range(own_cases)]
        for c in cases:
            acks.append((c.id, 1, c.history[0].hash))
        for i in range(max(own_events, shared_events)):
            if i < own_events:
                for c in cases:
                    trigger, actor = next_step(c)
                    e = c.fire(trigger, actor=actor, on=ON, note=f"p{proc} {i}")
                    acks.append((c.id, e.seq, e.hash))
            if i >= shared_events:
                continue
            shared = store.case("shared")
            start.wait(BARRIER_TIMEOUT)
            while True:
                trigger, actor = next_step(shared)
                try:
                    e = shared.fire(trigger, actor=actor, on=ON, key=f"p{proc}-{i}",
                                    note=f"p{proc} shared {i}")
                except af.ConcurrencyError:
                    conflicts += 1
                    shared = store.case("shared")
                    continue
                acks.append(("shared", e.seq, e.hash))
                break
        store.close()
        results.put({"proc": proc, "acks": acks, "conflicts": conflicts, "error": None})
    except BaseException:
        results.put({"proc": proc, "acks": acks, "conflicts": conflicts,
                     "error": traceback.format_exc()})


def race(path: str, name: str, rounds: int, plan: list[dict[str, Any]], barrier: Any,
         results: Any) -> None:
    """For each round: load the round's case, wait for the other racer, fire ``plan[r]``."""
    store = af.open_store(path)
    for r in range(rounds):
        case = store.case(f"race-{r}")
        barrier.wait()
        step = plan[r]
        try:
            e = case.fire(step["trigger"], actor=step["actor"], on=ON, key=step.get("key"),
                          note=step.get("note"))
            outcome: dict[str, Any] = {"ok": True, "seq": e.seq, "hash": e.hash}
        except af.ApprovalflowError as e:
            outcome = {"ok": False, "error": type(e).__name__, "message": str(e)}
        results.put({"racer": name, "round": r, **outcome})
        barrier.wait()
    store.close()


def cast_at_once(path: str, name: str, case_ids: list[str], trigger: str, actor: str,
                 go_prefix: str, ready: Any, results: Any) -> None:
    """For each case: load it, say so, wait until the file ``go_prefix + case_id`` exists
    (the other racer has loaded it too), then fire; after a ConcurrencyError, load the
    case again and fire once more. Report what each attempt gave."""
    store = af.open_store(path)
    for case_id in case_ids:
        case = store.case(case_id)
        ready.put((name, case_id))
        deadline = time.monotonic() + BARRIER_TIMEOUT
        while not os.path.exists(go_prefix + case_id):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: no go file for {case_id!r}")
            time.sleep(0.0002)
        attempts: list[dict[str, Any]] = []
        for _ in range(2):
            try:
                e = case.fire(trigger, actor=actor, on=ON)
                attempts.append({"ok": True, "seq": e.seq, "hash": e.hash})
                break
            except af.ApprovalflowError as e:
                attempts.append({"ok": False, "error": type(e).__name__, "message": str(e)})
                if not isinstance(e, af.ConcurrencyError):
                    break
                case = store.case(case_id)
        results.put({"racer": name, "case": case_id, "attempts": attempts})
    store.close()


def fire_once(path: str, case_id: str, timeout: float, ready: Any, results: Any) -> None:
    """Load a case, say so, then fire one step with the given busy timeout."""
    try:
        store = af.open_store(path, timeout=timeout)
        case = store.case(case_id)
        trigger, actor = next_step(case)
        ready.put("loaded")
        t0 = time.monotonic()
        e = case.fire(trigger, actor=actor, on=ON)
        results.put({"ok": True, "seq": e.seq, "waited": time.monotonic() - t0})
    except af.ApprovalflowError as e:
        results.put({"ok": False, "error": type(e).__name__, "message": str(e)})


def open_new(paths: list[str], start: Any, results: Any) -> None:
    """Open (and so create) each new store at the same moment as other processes."""
    for path in paths:
        start.wait()
        try:
            with af.open_store(path) as store:
                results.put({"path": path, "ok": True, "schema": store.schema_version,
                             "meta": store.meta})
        except af.ApprovalflowError as e:
            results.put({"path": path, "ok": False, "error": type(e).__name__,
                         "message": str(e)})


# -- crash: the writer that gets killed ----------------------------------------------------


def crash_writer(path: str, case_id: str, first: int) -> None:
    """Fire events ``first``, ``first + 1``, ... of a looping case, each with its own
    idempotency key; print ``ack SEQ HASH RETRIED`` once each is committed.

    ``first`` is one past the last event the previous writer acknowledged: if that
    writer died after committing but before printing, the retry with the same key
    returns the stored event instead of writing it again (RETRIED is 1)."""
    store = af.open_store(path)
    out = sys.stdout
    if first <= 1:
        case = create_or_load(store, case_id)
        out.write(f"ack 1 {case.history[0].hash} 0\n")
        out.flush()
        first = 2
    else:
        case = store.case(case_id)
    loaded = case.version
    seq = first
    while True:
        trigger, actor = step_for(seq)
        e = case.fire(trigger, actor=actor, on=ON, key=f"{case_id}-{seq}",
                      note=f"event {seq}", data={"n": seq})
        if e.seq != seq:
            raise SystemExit(f"expected event {seq}, the store gave {e.seq}")
        out.write(f"ack {seq} {e.hash} {int(seq <= loaded)}\n")
        out.flush()
        seq += 1


def bulk_writer(path: str, case_id: str, steps: int) -> None:
    """Inside one bulk block: create ``case_id`` and take ``steps`` steps on it, then on
    each case already stored; print ``inside N`` (N events written, none committed) and
    wait inside the block until killed."""
    store = af.open_store(path)
    others = [store.case(s.case_id) for s in store.cases()]
    written = 0
    with store.bulk():
        case = create_or_load(store, case_id)
        written += 1
        for c in [case] * steps + others:
            trigger, actor = next_step(c)
            c.fire(trigger, actor=actor, on=ON, note="never committed")
            written += 1
        sys.stdout.write(f"inside {written}\n")
        sys.stdout.flush()
        while True:
            time.sleep(1)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "crash":
        crash_writer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "bulk":
        bulk_writer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit("usage: python tests/writer_process.py crash DB CASE FIRST\n"
                         "       python tests/writer_process.py bulk DB CASE STEPS")


# -- the feed: writers whose transactions sometimes roll back -------------------------------


class RolledBack(Exception):
    """Raised inside a bulk block on purpose, so the block stores nothing."""


def feed_writer(path: str, proc: int, steps: int, start: Any, results: Any) -> None:
    """Create a case and take ``steps`` steps on it; before every third step, take one
    inside a bulk block that then raises (rolled back: it must leave no trace in the
    feed). Report every acknowledged (case, seq)."""
    acks: list[tuple[str, int]] = []
    try:
        store = af.open_store(path)
        start.wait()
        case = create_or_load(store, f"feed-{proc}")
        acks.append((case.id, 1))
        for i in range(steps):
            if i % 3 == 0:
                try:
                    with store.bulk():
                        trigger, actor = next_step(case)
                        case.fire(trigger, actor=actor, on=ON, note="rolled back")
                        raise RolledBack
                except RolledBack:
                    pass
            trigger, actor = next_step(case)
            e = case.fire(trigger, actor=actor, on=ON, note=f"p{proc} {i}")
            acks.append((case.id, e.seq))
        store.close()
        results.put({"proc": proc, "acks": acks, "error": None})
    except BaseException:
        results.put({"proc": proc, "acks": acks, "error": traceback.format_exc()})


# -- timers: several tickers at once ---------------------------------------------------------


def tick_once(path: str, workflow_text: str, on: str, start: Any, results: Any) -> None:
    """Wait for the start signal, run one tick, report how many steps it took."""
    try:
        af.loads_workflow(workflow_text)  # the same definition the cases were made with
        start.wait(60)
        with af.open_store(path, durability="normal") as store:
            report = store.tick(on=on)
        results.put({"taken": len(report.taken), "already": report.already_taken})
    except BaseException:
        results.put({"error": traceback.format_exc()})


# -- subscriptions: another process committing at a chosen moment ---------------------------


def fire_on_request(path: str, case_id: str, requests: Any, acks: Any) -> None:
    """Take one step on ``case_id`` for each request (None ends), acknowledging each."""
    try:
        with af.open_store(path) as store:
            case = store.case(case_id)
            while requests.get(timeout=BARRIER_TIMEOUT) is not None:
                trigger, actor = next_step(case)
                e = case.fire(trigger, actor=actor, on=ON, note="another process")
                acks.put((e.case_id, e.seq))
    except BaseException:
        acks.put(traceback.format_exc())


# -- rebuilding the derived tables while another process takes a step -----------------------


def rebuild_paused(path: str, workflow_text: str, which: str, read: Any, go: Any,
                   results: Any) -> None:
    """Run ``store.<which>()`` (rebuild_timers), pausing once inside its transaction, right
    after it has loaded the first case, until told to go on; report what it returned."""
    try:
        af.loads_workflow(workflow_text)
        with af.open_store(path) as store:
            load, paused = store.case, []

            def load_then_wait(case_id: str, **kw: Any) -> af.Case:
                case = load(case_id, **kw)
                if not paused:
                    paused.append(case_id)
                    read.put(case_id)
                    go.get(timeout=BARRIER_TIMEOUT)
                return case

            store.case = load_then_wait  # type: ignore[method-assign]
            results.put(getattr(store, which)())
    except BaseException:
        results.put(traceback.format_exc())


def fire_step(path: str, case_id: str, trigger: str, actor: str, on: str,
              progress: Any) -> None:
    """Load a case, report the connection's server process id, take one step, report it."""
    try:
        with af.open_store(path) as store:
            case = store.case(case_id)
            progress.put(("pid", store._conn.execute("SELECT pg_backend_pid()").fetchone()[0]))
            e = case.fire(trigger, actor=actor, on=on)
            progress.put(("done", e.seq))
    except BaseException:
        progress.put(("error", traceback.format_exc()))


def take_steps_on_request(path: str, requests: Any, acks: Any) -> None:
    """For each request (case id, trigger, actor; None ends) take that step, acknowledging it."""
    try:
        with af.open_store(path) as store:
            while (request := requests.get(timeout=BARRIER_TIMEOUT)) is not None:
                case_id, trigger, actor = request
                e = store.case(case_id).fire(trigger, actor=actor, on=ON)
                acks.put((e.case_id, e.seq))
    except BaseException:
        acks.put(traceback.format_exc())


def step_in_open_block(path: str, case_id: str, inside: Any, go: Any, results: Any) -> None:
    """Inside a bulk block, take the next step of ``case_id``; say so, wait to be told to go
    on, then leave the block (commit). Report the event."""
    try:
        with af.open_store(path) as store:
            case = store.case(case_id)
            with store.bulk():
                trigger, actor = next_step(case)
                e = case.fire(trigger, actor=actor, on=ON, note="in an open block")
                inside.put(e.seq)
                go.get(timeout=BARRIER_TIMEOUT)
            results.put(("done", e.seq))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def import_records(path: str, records: list[dict[str, Any]], progress: Any) -> None:
    """Report the connection's server process id, import ``records``, report the outcome."""
    try:
        with af.open_store(path) as store:
            progress.put(("pid", store._conn.execute("SELECT pg_backend_pid()").fetchone()[0]))
            progress.put(("done", store.import_events(records)))
    except af.ApprovalflowError as e:
        progress.put(("error", f"{type(e).__name__}: {e}"))
    except BaseException:
        progress.put(("error", traceback.format_exc()))
