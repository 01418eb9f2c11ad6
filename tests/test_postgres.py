"""What only the PostgreSQL backend has: the least-privilege role of docs/deployment.md,
and the feed positions a writer leaves pending when it dies between its commit and the
numbering (store/postgres.py).

The writers here are real processes (tests/writer_process.py) killed with SIGKILL. To
stop a writer exactly between its commit and its numbering, the test holds the feed's
numbering lock (an advisory lock, as a second numbering writer would): the writer's
commit goes through, its numbering waits, and the kill lands there.
"""

from __future__ import annotations

import multiprocessing
import re
import signal
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import approvalflow as af
from approvalflow.store import postgres
from tests import timed_workflow as tw
from tests import writer_process as wp
from tests.test_crash import Writer

DOC = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"
LOOP = wp.WORKFLOW
HANG = 120.0  # seconds before a wait counts as a hang (a guard, not a timing assertion)
CTX = multiprocessing.get_context("spawn")


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    url: str = pg_server.fresh_url()
    yield url
    pg_server.drop(url)


def _connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _schema(url: str) -> str:
    options = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["options"][0]
    return options.removeprefix("-csearch_path=")


def _as_user(url: str, user: str) -> str:
    """The same server and schema, as another role (the test server trusts local users)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.pop("password", None)
    query["user"] = user
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}?{urllib.parse.urlencode(query)}"


def _loop_steps(store: af.Store, case_id: str, steps: int) -> af.Case:
    case = wp.create_or_load(store, case_id)
    for _ in range(steps):
        trigger, actor = wp.next_step(case)
        case.fire(trigger, actor=actor, on=wp.ON)
    return case


# -- the least-privilege role ----------------------------------------------------------------


def role_statements(schema: str, role: str) -> list[str]:
    """The SQL block of docs/deployment.md that creates the application's role, for the
    schema and role name given (the doc says ``cases`` and ``approvalflow_app``)."""
    found = re.search(r"^[ \t]*```sql\n(.*?)^[ \t]*```", DOC.read_text(), re.S | re.M)
    assert found, f"{DOC} has no sql block"
    sql = textwrap.dedent(found.group(1))
    assert "approvalflow_app" in sql and "SCHEMA cases" in sql, sql
    sql = sql.replace("SCHEMA cases", f'SCHEMA "{schema}"').replace("approvalflow_app", role)
    return [s.strip() for s in sql.split(";") if s.strip()]


@pytest.fixture
def app_role(pg_url: str) -> Iterator[str]:
    """The documented role (named per test run: roles belong to the whole server), made
    after the store's tables exist, by their owner."""
    with af.open_store(pg_url) as owner:
        _loop_steps(owner, "owned", 2)
    role = f"approvalflow_app_{_schema(pg_url)}"
    with _connect(pg_url) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        for statement in role_statements(_schema(pg_url), role):
            conn.execute(statement)
    yield role
    with _connect(pg_url) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_the_documented_role_creates_fires_and_reads(pg_url: str, app_role: str) -> None:
    """Connected as the role of docs/deployment.md, the application creates a case, takes
    steps (also on a case the owner made), reads the feed, ticks and verifies."""
    with af.open_store(_as_user(pg_url, app_role)) as app:
        assert app._conn.execute("SELECT current_user").fetchone()[0] == app_role
        case = app.create_case(LOOP, "by-app", actor="tmf", on=wp.ON, data=wp.DATA)
        event = case.fire("propose", actor="tmf", on=wp.ON, key="k1")
        again = app.case("by-app").fire("propose", actor="tmf", on=wp.ON, key="k1")
        assert again.hash == event.hash  # the idempotency key's lookup works for it too
        app.case("owned").fire("propose", actor="tmf", on=wp.ON)
        timed = app.create_case(af.loads_workflow(tw.TEXT), "timed", actor="applicant",
                                on="2024-01-01", data={"expires": "2024-03-01"})
        timed.fire("submit", actor="applicant", on="2024-01-10")
        assert len(app.tick(on="2024-06-01").taken) == 3  # the timers table's rows go too
        feed = app.feed()
        assert [(e.case_id, e.seq) for e in feed] == [
            ("owned", 1), ("owned", 2), ("owned", 3), ("by-app", 1), ("by-app", 2),
            ("owned", 4), ("timed", 1), ("timed", 2), ("timed", 3), ("timed", 4),
            ("timed", 5)]
        assert [e.position for e in feed] == list(range(1, 12))
        report = app.verify()
        assert report.ok, report.problems
        assert report.events == 11


@pytest.mark.parametrize("sql", [
    "UPDATE event_log SET note = 'changed'", "DELETE FROM event_log", "TRUNCATE event_log",
    "UPDATE workflows SET source = 'x'", "DELETE FROM workflows", "TRUNCATE workflows",
    "DROP TRIGGER events_no_change ON event_log",
    "DROP TRIGGER workflows_no_change ON workflows",
    "ALTER TABLE event_log DISABLE TRIGGER events_no_change",
    "UPDATE feed SET position = position + 1", "DELETE FROM feed", "DROP TABLE event_log"])
def test_the_documented_role_can_not_change_the_log(pg_url: str, app_role: str,
                                                      sql: str) -> None:
    """The role is refused UPDATE, DELETE and TRUNCATE on the events and the workflows,
    changes of feed positions, and dropping or disabling the append-only triggers; the
    log is as it was."""
    import psycopg

    with af.open_store(pg_url) as owner:
        before = [(e.case_id, e.seq, e.hash, e.position) for e in owner.events()]
    with _connect(_as_user(pg_url, app_role)) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql)
    with af.open_store(pg_url) as owner:
        assert [(e.case_id, e.seq, e.hash, e.position) for e in owner.events()] == before
        assert owner.verify().ok


def test_the_owner_is_refused_too_while_the_triggers_stand(pg_url: str) -> None:
    """The tables' owner is refused UPDATE, DELETE and TRUNCATE by the triggers."""
    import psycopg

    with af.open_store(pg_url) as store:
        _loop_steps(store, "c", 1)
    with _connect(pg_url) as conn:
        for sql in ("UPDATE event_log SET note = 'x'", "DELETE FROM event_log",
                    "TRUNCATE event_log", "UPDATE workflows SET source = 'x'",
                    "DELETE FROM workflows", "TRUNCATE workflows"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM event_log").fetchone()[0] == 2


# -- a writer killed between its commit and the numbering ------------------------------------


def _count(url: str, table: str) -> int:
    with _connect(url) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _feed_rows(url: str) -> list[tuple[int, str, int]]:
    with _connect(url) as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            "SELECT position, case_id, seq FROM feed ORDER BY position")]


def _wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + HANG
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {HANG} s"
        time.sleep(0.01)


def _kill_after_commit(url: str, case_id: str, first: int = 1) -> Writer:
    """Start a writer while holding the numbering lock, let it commit, kill it while its
    numbering waits; the lock is released afterwards."""
    holder = _connect(url)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (postgres._FEED_LOCK,))
        pending = _count(url, "feed_pending")
        writer = Writer(url, case_id, first)  # type: ignore[arg-type]
        _wait_for(lambda: _count(url, "feed_pending") > pending or writer.proc.poll() is not None,
                  "commit")
        stderr = writer.kill()
        assert writer.proc.returncode == -signal.SIGKILL, stderr
    finally:
        holder.close()
    return writer


def test_a_writer_killed_before_numbering_is_numbered_by_the_next_writer(pg_url: str) -> None:
    """A writer killed after committing its case's creation, before numbering it, leaves
    it pending (no position, no gap); the next writer's commit numbers it, in insert
    order, and the log verifies."""
    with af.open_store(pg_url) as store:
        _loop_steps(store, "other", 1)
    _kill_after_commit(pg_url, "w")
    assert _count(pg_url, "feed_pending") == 1
    assert _feed_rows(pg_url) == [(1, "other", 1), (2, "other", 2)]
    with af.open_store(pg_url) as store:
        assert [e.position for e in store.events("w")] == [None]  # read as it is
        report = store.verify()  # committed, not numbered yet: not a problem
        assert report.ok, report.problems
        trigger, actor = wp.next_step(store.case("other"))
        event = store.case("other").fire(trigger, actor=actor, on=wp.ON)
        assert event.position == 4
    assert _count(pg_url, "feed_pending") == 0
    assert _feed_rows(pg_url) == [(1, "other", 1), (2, "other", 2), (3, "w", 1),
                                  (4, "other", 3)]
    with af.open_store(pg_url) as store:
        assert store.verify().ok


def test_events_left_pending_verify_read_only_and_are_numbered_by_the_next_reader(
        pg_url: str) -> None:
    """After writers killed between commit and numbering, a store opened read-only (as
    `approvalflow verify` and `tail` open it) verifies without a problem and reads the
    feed without a gap (numbering nothing: the pending events are not in it yet); the
    next writable reader numbers them, in insert order."""
    with af.open_store(pg_url) as store:
        _loop_steps(store, "other", 1)
    first = _kill_after_commit(pg_url, "w")
    assert first.acks() == []  # it was told nothing: its creation waits to be numbered
    # a step after numbered ones: event 3 of 'other', with key other-3
    second = _kill_after_commit(pg_url, "other", 3)
    assert second.acks() == []
    assert _count(pg_url, "feed_pending") == 2
    with af.open_store(pg_url, readonly=True) as reader:
        report = reader.verify()
        assert report.ok, report.problems
        assert report.events == 4
        assert [(e.position, e.case_id, e.seq) for e in reader.feed()] == [
            (1, "other", 1), (2, "other", 2)]
    assert _count(pg_url, "feed_pending") == 2
    with af.open_store(pg_url) as reader:
        feed = reader.feed()
    assert [(e.position, e.case_id, e.seq) for e in feed] == [
        (1, "other", 1), (2, "other", 2), (3, "w", 1), (4, "other", 3)]
    with af.open_store(pg_url) as store:  # the retry of the unacknowledged step: stored once
        again = store.case("other").fire("tmu.send_back", actor="tmu", on=wp.ON,
                                         key="other-3", note="event 3", data={"n": 3})
        assert (again.seq, again.position) == (3, 4)
        assert store.verify().ok


def test_a_pending_event_is_named_once_its_pending_row_is_gone(pg_url: str) -> None:
    """An event with neither a position nor a pending row (its feed row deleted behind
    the store's back) is named by verify."""
    with af.open_store(pg_url) as store:
        _loop_steps(store, "c", 2)
    with _connect(pg_url) as conn:
        conn.execute("DELETE FROM feed WHERE case_id = 'c' AND seq = 3")
    with af.open_store(pg_url) as store:
        assert store.verify().problems == [
            "case 'c' event 3: has no feed position (column 'position' holds null, not a "
            "whole number)"]


def test_a_numbering_lock_held_past_the_timeout_does_not_fail_a_committed_write(
        pg_url: str) -> None:
    """When the numbering can't take its lock within the store's timeout, the step is
    still reported stored (it is committed), its position is filled in by the next reader."""
    with af.open_store(pg_url) as store:
        _loop_steps(store, "c", 0)
    holder = _connect(pg_url)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (postgres._FEED_LOCK,))
        with af.open_store(pg_url, timeout=0.2) as store:
            case = store.case("c")
            event = case.fire("propose", actor="tmf", on=wp.ON)
            assert (event.seq, event.position) == (2, None)
            assert case.version == 2
    finally:
        holder.close()
    assert _count(pg_url, "feed_pending") == 1
    with af.open_store(pg_url) as store:
        assert [(e.seq, e.position) for e in store.feed()] == [(1, 1), (2, 2)]
        assert store.case("c").history[-1].hash == event.hash
        assert store.verify().ok


def test_a_connection_lost_after_the_commit_does_not_fail_the_committed_write(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection dropping between a step's commit and its numbering: the step is
    reported stored (it is), and its event is numbered by the next writer."""
    with af.open_store(pg_url) as store:
        _loop_steps(store, "c", 0)
    numbering = postgres.number_pending

    def connection_lost(conn: Any) -> None:
        if conn.in_transaction:  # not after a commit
            return numbering(conn)
        with _connect(pg_url) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (conn._raw.info.backend_pid,))
        return numbering(conn)

    store = af.open_store(pg_url)
    try:
        case = store.case("c")
        monkeypatch.setattr(postgres, "number_pending", connection_lost)
        event = case.fire("propose", actor="tmf", on=wp.ON)
        monkeypatch.setattr(postgres, "number_pending", numbering)
        assert (event.seq, event.position, case.version) == (2, None, 2)
    finally:
        store.close()
    with af.open_store(pg_url) as store:
        assert [(e.seq, e.position) for e in store.feed()] == [(1, 1), (2, 2)]
        assert store.case("c").history[-1].hash == event.hash
        assert store.verify().ok


# -- connection errors -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgres://app:s3cret-pw@[::1/cases",
                                 "postgresql://app:s3cret-pw@127.0.0.1:1/cases"])
def test_a_connection_error_is_one_line_without_the_password(url: str) -> None:
    """A URL libpq can't parse, or a server that refuses: the error names the URL with its
    password hidden (libpq quoted the whole URL, password and all) on one line (libpq's
    message spans two, which the CLI printed as two Error lines)."""
    pytest.importorskip("psycopg")
    with pytest.raises((af.StoreError, af.InvalidInputError)) as info:
        af.open_store(url, timeout=1)
    message = str(info.value)
    assert "s3cret" not in message and "\n" not in message and "\t" not in message, message
    assert "app:***@" in message or "//***@" in message


def test_a_url_scheme_in_capitals_names_the_same_server(pg_url: str) -> None:
    """A URL's scheme is case-insensitive: ``PostgreSQL://`` opens the server (it was
    read as a file path, and libpq reads only a lower-case scheme), in the library and
    in the CLI."""
    from click.testing import CliRunner

    from approvalflow.cli import cli
    from approvalflow.demo import SEED_DATA

    scheme, _, rest = pg_url.partition("://")
    loud = f"{scheme.upper()}://{rest}"
    assert loud != pg_url and postgres.is_database_url(loud)
    with af.open_store(loud) as store:
        assert store.path.startswith(scheme.lower() + "://")
        store.create_case(af.load_workflow("boligsocial-helhedsplan"), "loud", actor="tmf",
                          on="2021-12-06", data=SEED_DATA)
    with af.open_store(pg_url) as store:
        assert store.case("loud").version == 1
    result = CliRunner().invoke(cli, ["--db", loud, "show", "loud", "--json"])
    assert result.exit_code == 0, result.output
    assert '"loud"' in result.output
    assert not Path(loud.split("://")[0] + ":").exists()


# -- rebuilding while another process writes --------------------------------------------------


def _start_behind_a_lock(pg_url: str, proc: Any, progress: Any, go: Any, what: str) -> None:
    """Start ``proc`` (which reports its backend pid on ``progress``), wait until it waits
    on a lock the other process holds (or is done), then let that process commit."""
    proc.start()
    kind, pid = progress.get(timeout=HANG)
    assert kind == "pid", pid
    _wait_for(lambda: not proc.is_alive() or _waits_for_a_lock(pg_url, pid), what)
    go.put(True)


def _waits_for_a_lock(url: str, pid: int) -> bool:
    with _connect(url) as conn:
        row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def test_a_step_taken_during_a_timers_rebuild_leaves_the_table_as_the_log_says(
        pg_url: str) -> None:
    """A step taken while another process rebuilds the timers table leaves it as the log says."""
    wf = af.loads_workflow(tw.TEXT)
    with af.open_store(pg_url) as store:
        case = store.create_case(wf, "t", actor="applicant", on="2024-01-01",
                                 data={"expires": "2024-03-01"})
        case.fire("submit", actor="applicant", on="2024-01-10")
    read, go, results, progress = CTX.Queue(), CTX.Queue(), CTX.Queue(), CTX.Queue()
    rebuilder = CTX.Process(target=wp.rebuild_paused,
                            args=(pg_url, tw.TEXT, "rebuild_timers", read, go, results))
    rebuilder.start()
    writer = None
    try:
        assert read.get(timeout=HANG) == "t"  # the rebuild has read the case, not committed
        writer = CTX.Process(target=wp.fire_step,
                             args=(pg_url, "t", "approve", "dean", "2024-01-11", progress))
        _start_behind_a_lock(pg_url, writer, progress, go, "step waiting or done")
        rebuilt = results.get(timeout=HANG)
        stepped = progress.get(timeout=HANG)
    finally:
        go.put(True)
        for proc in (rebuilder, writer):
            if proc is not None:
                proc.join(HANG)
    assert rebuilt == 2, rebuilt  # remind and escalate, armed before the step
    assert stepped == ("done", 3), stepped
    with af.open_store(pg_url) as store:
        assert store.case("t").state == {"approved"}
        assert _count(pg_url, "timers") == 0
        report = store.verify()
        assert report.ok, report.problems


def test_an_import_meeting_a_step_in_progress_on_its_case_waits_and_decides_after_it(
        pg_url: str) -> None:
    """An import onto a case another process is stepping waits, then decides after that step."""
    with af.open_store(pg_url) as store:
        _loop_steps(store, "c", 0)
    inside, go, results, progress = CTX.Queue(), CTX.Queue(), CTX.Queue(), CTX.Queue()
    stepper = CTX.Process(target=wp.step_in_open_block, args=(pg_url, "c", inside, go, results))
    stepper.start()
    importer = None
    try:
        assert inside.get(timeout=HANG) == 2  # 'propose' written, not committed
        records = [{"case_id": "c", "trigger": "tmu.send_back", "actor": "tmu", "on": wp.ON},
                   {"case_id": "new", "trigger": "create", "workflow": LOOP, "actor": "tmf",
                    "on": wp.ON, "data": wp.DATA}]
        importer = CTX.Process(target=wp.import_records, args=(pg_url, records, progress))
        _start_behind_a_lock(pg_url, importer, progress, go, "import waiting or done")
        stepped = results.get(timeout=HANG)
        imported = progress.get(timeout=HANG)
    finally:
        go.put(True)
        for proc in (stepper, importer):
            if proc is not None:
                proc.join(HANG)
    assert stepped == ("done", 2), stepped
    assert imported == ("done", 2), imported
    with af.open_store(pg_url) as store:
        assert [e.trigger for e in store.events("c")] == ["create", "propose", "tmu.send_back"]
        report = store.verify()
        assert report.ok, report.problems


def test_a_subscriber_hears_an_event_whose_numbering_timed_out_after_the_next_commit(
        pg_url: str) -> None:
    """An event numbered late (its lock timed out) reaches the subscribers after the next commit."""
    with af.open_store(pg_url) as store:
        _loop_steps(store, "c", 0)
    holder = _connect(pg_url)
    heard: list[tuple[str, int, int | None]] = []
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (postgres._FEED_LOCK,))
        with af.open_store(pg_url, timeout=0.2) as store:
            store.subscribe(lambda e: heard.append((e.case_id, e.seq, e.position)))
            case = store.case("c")
            assert case.fire("propose", actor="tmf", on=wp.ON).position is None
            assert heard == []  # committed, not numbered: not in the feed yet
            holder.close()
            case.fire("tmu.send_back", actor="tmu", on=wp.ON)
    finally:
        holder.close()
    assert heard == [("c", 2, 2), ("c", 3, 3)]
