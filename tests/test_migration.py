"""Schema versions: an older file is migrated in place, a newer one is refused clearly."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

import approvalflow as af
from approvalflow.store.schema import MIGRATIONS, SCHEMA_VERSION

FIXTURE = Path(__file__).parent / "fixtures" / "schema-1.db"


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    lines = list(conn.iterdump())
    conn.close()
    return lines


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return int(version)


@pytest.fixture
def v1_file(tmp_path: Path) -> Path:
    """A copy of the file the schema-1 code wrote (tests/fixtures/make_schema1_db.py)."""
    path = tmp_path / "schema-1.db"
    shutil.copyfile(FIXTURE, path)
    return path


def test_fixture_is_schema_1():
    """The committed fixture really is a schema-1 file without the table schema 2 adds."""
    assert _user_version(FIXTURE) == 1
    tables = set(sqlite_utils.Database(sqlite3.connect(FIXTURE)).table_names())
    assert {"events", "cases", "workflows"} <= tables
    assert "store_meta" not in tables


def test_new_store_records_its_creation(db_path):
    """A new file is at the current schema and records when and by what it was created."""
    with af.open_store(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        meta = store.meta
    assert meta["created_by"].startswith("approvalflow ")
    assert meta["created_at"][:4].isdigit()
    assert "migrated_from" not in meta
    with af.open_store(db_path) as store:
        assert store.meta == meta  # opening again changes nothing


def test_schema_1_file_is_migrated_and_keeps_its_events(v1_file):
    """Opening a schema-1 file migrates it to the current schema; every event and hash is
    kept."""
    conn = sqlite3.connect(v1_file)
    before = conn.execute("SELECT * FROM events ORDER BY case_id, seq").fetchall()
    cases_before = conn.execute("SELECT * FROM cases ORDER BY case_id").fetchall()
    conn.close()
    with af.open_store(v1_file) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.meta["migrated_from"] == "1"
        assert store.meta["migrated_by"].startswith("approvalflow ")
        report = store.verify()
        assert report.ok, report.problems
        assert (report.cases, report.events) == (2, 5)
        case = store.case("restbeloeb-2022")
        assert case.history[0].note == "Written by schema 1"
        case.fire("oeu.statement", actor="oeu", on="2022-02-20")
        assert store.verify().ok
    conn = sqlite3.connect(v1_file)
    after = conn.execute("SELECT * FROM events ORDER BY case_id, seq").fetchall()
    conn.close()
    # every schema-1 row, byte for byte (the columns added later are null on them, but
    # for the feed position schema 4 gives every event)
    width = len(before[0])
    assert set(before) <= {row[:width] for row in after}
    assert all(row[width:width + 2] == (None, None) for row in after[:len(before)])
    assert sorted(row[-1] for row in after) == list(range(1, len(after) + 1))
    assert len(after) == len(before) + 1
    assert len(cases_before) == 2


def test_migration_runs_once(v1_file):
    """A migrated file opened again is not migrated again: its record stays the same."""
    with af.open_store(v1_file) as store:
        meta = store.meta
    with af.open_store(v1_file) as store:
        assert store.meta == meta
        assert store.schema_version == SCHEMA_VERSION


def test_empty_schema_1_file_built_by_the_v1_migration_is_migrated(db_path):
    """A file made by running only the schema-1 migration opens as a current store."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with af.open_store(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.meta["migrated_from"] == "1"
        assert store.verify().ok


def test_failed_migration_leaves_the_file_as_it_was(v1_file):
    """A migration that can't finish (the file may not grow) changes nothing."""
    conn = sqlite3.connect(v1_file)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    before = _dump(v1_file)
    with pytest.raises(af.StoreError) as err:
        af.open_store(v1_file, max_pages=pages)
    assert "full" in str(err.value)
    assert _user_version(v1_file) == 1
    assert _dump(v1_file) == before
    with af.open_store(v1_file) as store:  # and it migrates once there is room
        assert store.schema_version == SCHEMA_VERSION


def test_newer_schema_is_refused_with_a_clear_message(db_path):
    """A file from a newer approvalflow raises SchemaVersionError naming both versions."""
    af.open_store(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = _dump(db_path)
    with pytest.raises(af.SchemaVersionError) as err:
        af.open_store(db_path)
    message = str(err.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert "Upgrade approvalflow" in message
    assert isinstance(err.value, af.StoreError)
    assert _dump(db_path) == before
    assert _user_version(db_path) == SCHEMA_VERSION + 1


def test_foreign_database_is_refused(db_path):
    """A SQLite file with someone else's tables is refused, not taken over."""
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(af.StoreError, match="not an approvalflow database"):
        af.open_store(db_path)
    assert _user_version(db_path) == 0


@pytest.mark.parametrize("user_version", [0, 1, SCHEMA_VERSION])
def test_foreign_database_is_left_byte_for_byte(db_path, user_version):
    """Another program's SQLite file (with or without a user_version of its own) is refused
    as not an approvalflow database, writable or read-only, and its bytes are unchanged:
    it was switched to WAL first, and a user_version of 1 to 5 was taken for an old
    approvalflow schema and 'migrated'."""
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.commit()
    conn.close()
    before = db_path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(af.StoreError, match="not an approvalflow database"):
            af.open_store(db_path, readonly=readonly)
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]


def test_a_file_that_is_not_a_database_is_refused(db_path):
    """Random bytes where a database should be give StoreError, and the bytes are kept."""
    db_path.write_bytes(b"approvals\x00" * 500)
    with pytest.raises(af.StoreError, match="not an approvalflow database|damaged"):
        af.open_store(db_path)
    assert db_path.read_bytes() == b"approvals\x00" * 500


@pytest.mark.parametrize("bad", [0, -1, 2.5, "100", True])
def test_max_pages_must_be_a_positive_whole_number(db_path, bad):
    """open_store(max_pages=...) refuses values that are not a page count."""
    with pytest.raises(af.InvalidInputError, match="max_pages"):
        af.open_store(db_path, max_pages=bad)
    assert not db_path.exists()
