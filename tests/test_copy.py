"""One log, two backends: copying between SQLite and PostgreSQL keeps every byte that is
hashed, and the command line takes a postgresql:// URL wherever it takes a database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.demo import SEED_DATA
from tests import rawdb
from tests.conftest import FLAGSHIP

CONSOLE = Path(sys.executable).parent / "approvalflow"
ROOT = Path(__file__).parents[1]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE), *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def fill(store: af.Store) -> None:
    """Three flagship cases with notes, persons, keys, data and an expectation."""
    for n in range(3):
        case = store.create_case(FLAGSHIP, f"plan-{n}", actor="tmf", on="2021-11-01",
                                 data=SEED_DATA, note="Nørrebro ✓ \"quoted\" 'x' % ?")
        case.fire("submit", actor="tmf", on="2021-11-01", by="a.jensen")
        case.fire("tmu.approve", actor="tmu", on="2021-12-06", key=f"tmu-{n}",
                  data={"goals_commitment": "the four goals"})
        case.expect("aab.approve", on="2022-01-15", actor="aab", said_on="2021-12-07")


def fingerprint(store: af.Store) -> list[tuple[object, ...]]:
    """Every event's hashed content, hash and feed position, in feed order."""
    return sorted(((e.position, e.case_id, e.seq, e.hash, e.prev_hash, e.note, e.by,
                    json.dumps(e.data, sort_keys=True)) for e in store.events()),
                  key=lambda t: (t[0] is None, t[0]))


def test_sqlite_to_postgres_and_back_keeps_every_hash(tmp_path: Path, pg_server) -> None:
    """SQLite -> PostgreSQL -> SQLite: the same events, hashes and feed order; the heads
    exported before the copy verify on both copies; the projections answer the same."""
    with af.open_store(tmp_path / "a.db") as source:
        fill(source)
        heads = source.heads()
        before = fingerprint(source)
        inbox = source.awaiting("aab", on="2022-01-10")
        due = source.due(on="2022-01-20")
    url = pg_server.fresh_url()
    with af.open_store(tmp_path / "a.db") as source:
        report = source.copy_to(url)
    assert report.verified.ok and (report.cases, report.events) == (3, 12)
    with af.open_store(url) as pg:
        assert fingerprint(pg) == before
        assert pg.verify(heads=heads).ok
        assert pg.awaiting("aab", on="2022-01-10") == inbox
        assert pg.due(on="2022-01-20") == due
        back = pg.copy_to(tmp_path / "b.db")
    assert back.verified.ok
    with af.open_store(tmp_path / "b.db") as copy:
        assert fingerprint(copy) == before
        assert copy.verify(heads=heads).ok
    pg_server.drop(url)


def test_copy_refuses_a_store_that_holds_cases(tmp_path: Path, pg_server) -> None:
    """A destination with cases is refused, and nothing is written into it."""
    url = pg_server.fresh_url()
    with af.open_store(url) as pg:
        pg.create_case(FLAGSHIP, "there-first", actor="tmf", on="2021-11-01")
    with af.open_store(tmp_path / "a.db") as source:
        fill(source)
        with pytest.raises(af.StoreError, match="already holds cases"):
            source.copy_to(url)
    with af.open_store(url) as pg:
        assert [c.case_id for c in pg.cases()] == ["there-first"]
        assert len(list(pg.events())) == 1
    pg_server.drop(url)


def test_copy_refuses_a_log_that_does_not_verify(tmp_path: Path) -> None:
    """An edited log is not copied: the error names the first problem; no copy is made."""
    with af.open_store(tmp_path / "a.db") as source:
        fill(source)
    with rawdb.unguarded(str(tmp_path / "a.db")) as conn:
        conn.execute("UPDATE events SET actor = 'aab' WHERE case_id = 'plan-1' AND seq = 3")
    with af.open_store(tmp_path / "a.db") as source, \
            pytest.raises(af.StoreError, match="does not verify.*plan-1"):
        source.copy_to(tmp_path / "b.db")
    with af.open_store(tmp_path / "b.db") as empty:
        assert empty.cases() == [] and list(empty.events()) == []


def test_copy_onto_itself_is_refused(tmp_path: Path) -> None:
    """Copying a store onto itself is one clear error."""
    with af.open_store(tmp_path / "a.db") as source:
        fill(source)
        with pytest.raises(af.StoreError, match="onto itself"):
            source.copy_to(source)


def test_cli_copy_and_verify_heads_across_backends(tmp_path: Path, pg_server) -> None:
    """approvalflow copy SQLite -> PostgreSQL, then verify --heads on the URL (given with
    --db and with $APPROVALFLOW_DB), then show and inbox read it."""
    db = tmp_path / "a.db"
    with af.open_store(db) as source:
        fill(source)
        (tmp_path / "heads.json").write_text(json.dumps(source.heads()))
    url = pg_server.fresh_url()
    copied = run("copy", str(db), url)
    assert copied.returncode == 0, copied.stderr
    assert "3 cases, 12 events, verified ok" in copied.stdout
    verified = run("--db", url, "verify", "--heads", str(tmp_path / "heads.json"))
    assert verified.returncode == 0, verified.stderr
    assert "matching 3 exported heads" in verified.stdout
    shown = run("show", "plan-2", "--json", env={"APPROVALFLOW_DB": url})
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["case_id"] == "plan-2"
    again = run("copy", str(db), url, "--json")
    assert again.returncode == 1 and "already holds cases" in again.stderr
    assert "Traceback" not in again.stderr
    pg_server.drop(url)


def test_cli_fire_on_postgres(tmp_path: Path, pg_server) -> None:
    """new and fire through --db URL; a refused step is one error line and changes nothing."""
    url = pg_server.fresh_url()
    made = run("--db", url, "new", FLAGSHIP, "p", "--actor", "tmf", "--on", "2021-11-01")
    assert made.returncode == 0, made.stderr
    fired = run("--db", url, "fire", "p", "submit", "--actor", "tmf", "--on", "2021-11-01")
    assert fired.returncode == 0, fired.stderr
    refused = run("--db", url, "fire", "p", "lbf.approve", "--actor", "lbf", "--on",
                  "2021-11-02")
    assert refused.returncode == 1 and refused.stderr.startswith("Error: ")
    assert "Traceback" not in refused.stderr
    with af.open_store(url) as pg:
        assert pg.case("p").version == 2 and pg.verify().ok
    pg_server.drop(url)


@pytest.mark.parametrize("url, message", [
    ("postgresql:///postgres?host=/nonexistent-socket-folder&connect_timeout=2",
     "Could not connect"),
    ("postgresql://[bad", "Could not connect.*IPv6"),
])
def test_unreachable_or_malformed_url_is_one_clear_error(url: str, message: str) -> None:
    """A server that can't be reached, or a URL that is not one, is one error, no traceback."""
    with pytest.raises(af.ApprovalflowError, match=message):
        af.open_store(url)
    listed = run("--db", url, "cases")
    assert listed.returncode == 1 and listed.stderr.startswith("Error: ")
    assert "Traceback" not in listed.stderr


def test_password_is_not_shown(pg_server) -> None:
    """A URL's password never appears in what the store says about itself."""
    url = pg_server.fresh_url().replace("postgresql:///", "postgresql://postgres:s3cret@/")
    with af.open_store(url) as pg:
        assert "s3cret" not in repr(pg) and "s3cret" not in pg.where
        with pytest.raises(af.CaseNotFoundError) as raised:
            pg.case("nobody")
        assert "s3cret" not in str(raised.value)
    pg_server.drop(url)


def test_postgres_only_options_are_refused(pg_server) -> None:
    """max_pages and backup belong to SQLite: on PostgreSQL each is one clear error."""
    url = pg_server.fresh_url()
    with pytest.raises(af.InvalidInputError, match="max_pages"):
        af.open_store(url, max_pages=10)
    with af.open_store(url) as pg, pytest.raises(af.StoreError, match="pg_dump"):
        pg.backup("/tmp/never-written.db")
    assert not Path("/tmp/never-written.db").exists()
    pg_server.drop(url)


@pytest.mark.backends
def test_a_step_committed_during_the_copy_leaves_the_copy_whole(
        store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step another client commits while the copy reads: the copy holds one moment's log."""
    from approvalflow.store import copying

    with af.open_store(store_url) as source:
        fill(source)
    monkeypatch.setattr(copying, "BATCH", 1)  # a progress call after every event read
    stepped: list[int] = []

    def step_meanwhile(done: int, total: int) -> None:
        if not stepped:
            with af.open_store(store_url) as other:
                other.case("plan-0").fire("aab.approve", actor="aab", on="2022-01-15")
            stepped.append(done)

    with af.open_store(store_url) as source:
        report = source.copy_to(tmp_path / "copy.db", progress=step_meanwhile)
    assert stepped
    assert report.verified.ok, report.verified.problems
    with af.open_store(tmp_path / "copy.db") as copy:
        heads = copy.heads()
        assert report.events == sum(h["seq"] for h in heads.values())
        assert [e.seq for e in copy.events("plan-0")][-1] == heads["plan-0"]["seq"]


def test_a_url_with_a_nul_is_refused_as_a_path_with_one_is(pg_server) -> None:
    """A PostgreSQL URL holding a NUL is refused, not cut short at it and connected."""
    url = pg_server.fresh_url()
    with pytest.raises(af.InvalidInputError, match="NUL"):
        af.open_store(url + "\x00&user=somebody_else")
    with pytest.raises(af.InvalidInputError, match="NUL"):
        af.open_store(url.replace("user=postgres", "user=postgres\x00x"))
    pg_server.drop(url)
