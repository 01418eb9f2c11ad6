"""Tampering with the database behind the library's back: verify() names the case and event.

To change recorded events an attacker with write access first lifts the append-only
triggers (plain sqlite3 on the file; on PostgreSQL, as the tables' owner); the tests
do the same through tests/rawdb.py, then edit, delete, insert, reorder and truncate,
and rebuild whole chains. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import approvalflow as af
from approvalflow.store.rows import event_hash
from tests import rawdb
from tests.conftest import approve_all

pytestmark = pytest.mark.backends

LOOP = "medfinansiering-restbeloeb"
CONSOLE = Path(sys.executable).with_name("approvalflow")


@pytest.fixture
def log(store_url: str, flagship, seed_data) -> Iterator[str]:
    """A store with the flagship case approved by everyone, and two small cases beside it."""
    with af.open_store(store_url) as store:
        case = store.create_case(flagship, "mimerskvarteret", actor="tmf", on="2021-11-01",
                                 data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-01")
        approve_all(case)
        loop = store.create_case(LOOP, "restbeloeb", actor="tmf", on="2022-01-10",
                                 data={"amount": 600_000})
        for day in (12, 14, 16):
            loop.fire("propose", actor="tmf", on=f"2022-01-{day}", note="Forslag")
            loop.fire("tmu.send_back", actor="tmu", on=f"2022-01-{day + 1}")
        store.create_case(LOOP, "untouched", actor="tmf", on="2022-02-01", data={"amount": 1})
        assert store.verify().ok
    yield store_url


def _problems(url: str, heads: dict[str, Any] | None = None) -> list[str]:
    with af.open_store(url) as store:
        return store.verify(heads=heads).problems


def _heads(url: str) -> dict[str, Any]:
    with af.open_store(url) as store:
        return json.loads(json.dumps(store.heads()))  # as it would come back from a file


def _only(problems: list[str], case_id: str) -> list[str]:
    """Every problem names the tampered case and no other (a problem with the feed's
    positions names it beside its neighbour in the feed)."""
    assert problems, "the tampering went unnoticed"
    assert all(p.startswith(f"case {case_id!r}")
               or (p.startswith("the feed: ") and f"case {case_id!r}" in p)
               for p in problems), problems
    return problems


def _next_position(conn: Any) -> int:
    """The feed position a forger who knows the format gives an event slipped in."""
    return int(conn.execute("SELECT MAX(position) + 1 FROM events").fetchone()[0])


def _rehash_from(conn: Any, case_id: str, seq: int) -> None:
    """Recompute the chain of ``case_id`` from event ``seq`` on, and its head in cases:
    what someone with write access who knows the format can do."""
    rows = rawdb.dicts(conn, "SELECT * FROM events WHERE case_id = ? ORDER BY seq", (case_id,))
    prev = rows[seq - 2]["hash"] if seq > 1 else "0" * 64
    for row in rows[seq - 1:]:
        row["prev_hash"] = prev
        row["hash"] = prev = event_hash(row)
        conn.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE case_id = ? AND seq = ?",
                     (row["prev_hash"], row["hash"], case_id, row["seq"]))
    last = rows[-1]
    conn.execute("UPDATE cases SET head_hash = ?, seq = ?, state = ?, last_on = ?, "
                 "updated_at = ? WHERE case_id = ?",
                 (last["hash"], last["seq"], last["target"], last["on_date"],
                  last["recorded_at"], case_id))


def _all_events(conn: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute("SELECT * FROM events ORDER BY case_id, seq")]


# -- the triggers ---------------------------------------------------------------------------


@pytest.mark.parametrize("sql", ["UPDATE events SET note = 'changed' WHERE seq = 2",
                                 "UPDATE events SET actor = 'someone' WHERE seq = 1",
                                 "DELETE FROM events WHERE seq = 2",
                                 "DELETE FROM events"])
def test_triggers_refuse_update_and_delete_through_a_raw_connection(log, sql):
    """A plain connection can't change or delete a recorded event while the triggers stand."""
    with rawdb.raw(log) as conn:
        before = _all_events(conn)
        with pytest.raises(rawdb.errors(), match="append-only"):
            conn.execute(sql)
        assert _all_events(conn) == before
    assert _problems(log) == []


# -- what verify() detects ------------------------------------------------------------------


@pytest.mark.parametrize("column, value", [("note", "Godkendt uden forbehold"),
                                           ("actor", "tmu"), ("on_date", "2021-12-24"),
                                           ("data", '{"amount":1}'), ("trigger", "withdraw")])
def test_edited_event_is_named(log, column, value):
    """An edited field of an event makes verify() name the case and that event."""
    with rawdb.unguarded(log) as conn:
        conn.execute(f"UPDATE events SET {column} = ? WHERE case_id = 'restbeloeb' AND seq = 4",
                     (value,))
    problems = _only(_problems(log), "restbeloeb")
    assert any(p.startswith("case 'restbeloeb' event 4: its content does not match its hash")
               for p in problems), problems


def test_deleted_event_is_named(log):
    """A deleted event in the middle is named by the sequence number that is missing."""
    with rawdb.unguarded(log) as conn:
        conn.execute("DELETE FROM events WHERE case_id = 'restbeloeb' AND seq = 3")
    problems = _only(_problems(log), "restbeloeb")
    assert problems[0].startswith("case 'restbeloeb' event 4: expected sequence number 3")


def test_inserted_event_is_named(log):
    """A forged event slipped in between two others is named."""
    with rawdb.unguarded(log) as conn:
        for seq in range(7, 2, -1):  # make room at 3
            rawdb.renumber(conn, "restbeloeb", seq, seq + 1)
        [forged] = rawdb.dicts(conn, "SELECT * FROM events WHERE case_id = 'restbeloeb' "
                                     "AND seq = 2")
        forged.update(seq=3, note="forged", prev_hash=forged["hash"],
                      position=_next_position(conn))
        forged["hash"] = event_hash(forged)
        rawdb.insert_event(conn, forged)
    problems = _only(_problems(log), "restbeloeb")
    assert any("event 4: its previous-hash does not match" in p for p in problems), problems
    assert any("event 3: recorded as leaving" in p for p in problems), problems


def test_event_appended_behind_the_stores_back_is_named(log):
    """An event added at the end with a well-formed chain link disagrees with the cases
    table, which names where the log really ends."""
    with rawdb.unguarded(log) as conn:
        [last] = rawdb.dicts(conn, "SELECT * FROM events WHERE case_id = 'restbeloeb' "
                                   "ORDER BY seq DESC LIMIT 1")
        last.update(seq=last["seq"] + 1, trigger="propose", actor="tmf",
                    source=last["target"], target='["tmu_review"]', prev_hash=last["hash"],
                    note="slipped in", position=_next_position(conn))
        last["hash"] = event_hash(last)
        rawdb.insert_event(conn, last)
    problems = _only(_problems(log), "restbeloeb")
    assert any("the cases table says event 7 is the last, the log ends at event 8" in p
               for p in problems), problems


def test_event_appended_without_a_position_is_named(log):
    """On PostgreSQL an event inserted behind the store's back is numbered in the feed
    like any committed event (on SQLite it has no position): either way the cases table
    names where the log really ends, and the feed stays gap-free."""
    with rawdb.unguarded(log) as conn:
        [last] = rawdb.dicts(conn, "SELECT * FROM events WHERE case_id = 'untouched'")
        last.update(seq=2, trigger="propose", actor="tmf", source=last["target"],
                    target='["tmu_review"]', prev_hash=last["hash"], note="slipped in",
                    position=None)
        last["hash"] = event_hash(last)
        rawdb.insert_event(conn, last)
    problems = _only(_problems(log), "untouched")
    assert any("the cases table says event 1 is the last, the log ends at event 2" in p
               for p in problems), problems
    assert not any(p.startswith("the feed: ") for p in problems), problems


def test_reordered_events_are_named(log):
    """Two events swapped in order are named."""
    with rawdb.unguarded(log) as conn:
        rawdb.renumber(conn, "restbeloeb", 2, -1)
        rawdb.renumber(conn, "restbeloeb", 3, 2)
        rawdb.renumber(conn, "restbeloeb", -1, 3)
    problems = _only(_problems(log), "restbeloeb")
    assert any(p.startswith("case 'restbeloeb' event 2") for p in problems), problems
    assert any(p.startswith("case 'restbeloeb' event 3") for p in problems), problems


def test_truncated_tail_is_named(log):
    """Events cut off the end disagree with the head the cases table keeps."""
    with rawdb.unguarded(log) as conn:
        conn.execute("DELETE FROM events WHERE case_id = 'mimerskvarteret' AND seq > 5")
    problems = _only(_problems(log), "mimerskvarteret")
    assert any("the log ends at event 5" in p for p in problems), problems
    assert any("head hash does not match the hash of event 5" in p for p in problems)


def test_cases_table_that_disagrees_with_the_replay_is_named(log):
    """A current-state row edited to another state is named against the replay."""
    with rawdb.raw(log) as conn:
        conn.execute("UPDATE cases SET state = '[\"approved\"]' WHERE case_id = 'restbeloeb'")
    problems = _only(_problems(log), "restbeloeb")
    assert problems == ["case 'restbeloeb': the cases table says state ['approved'], the "
                        "replay of its events gives ['draft']"]


def test_case_row_without_events_and_events_without_row_are_named(log):
    """A cases row with no events, and events with no cases row, are both reported."""
    with rawdb.unguarded(log) as conn:
        conn.execute("DELETE FROM events WHERE case_id = 'untouched'")
        conn.execute("DELETE FROM cases WHERE case_id = 'restbeloeb'")
    problems = _problems(log)
    assert "case 'untouched': in the cases table but has no events" in problems
    assert "case 'restbeloeb': has events but no row in the cases table" in problems


def test_step_the_workflow_does_not_allow_is_named_even_with_a_valid_chain(log):
    """A rewritten step that the workflow would not allow is found by the replay."""
    with rawdb.unguarded(log) as conn:
        conn.execute("UPDATE events SET actor = 'tmf' WHERE case_id = 'restbeloeb' AND seq = 3")
        _rehash_from(conn, "restbeloeb", 3)
    problems = _only(_problems(log), "restbeloeb")
    assert problems == ["case 'restbeloeb' event 3: 'tmu.send_back' by 'tmf' on 2022-01-13 "
                        "breaks the rule 'actor': 'tmf' may not take 'tmu.send_back'; only "
                        "'tmu' may"]


@pytest.mark.parametrize(("column", "value", "says"), [
    ("source", '["draft"]', "a creation leaves no state, this one says ['draft']"),
    ("target", '["approved"]', "created in ['approved'], the workflow starts in ['draft']"),
    ("actor", "mayor", "created by 'mayor', who is not an actor"),
    ("by", " ", "the creation breaks the rule 'by'"),
])
def test_creation_the_library_would_not_write_is_named_with_a_valid_chain(log, column, value,
                                                                         says):
    """A rewritten creation (leaving a state, starting elsewhere, by someone who is not an
    actor, by no real person) is named, chain or no chain."""
    with rawdb.unguarded(log) as conn:
        conn.execute(f"UPDATE events SET {column} = ? WHERE case_id = 'untouched' AND seq = 1",
                     (value,))
        _rehash_from(conn, "untouched", 1)
    problems = _only(_problems(log), "untouched")
    assert any(p.startswith("case 'untouched' event 1: ") and says in p for p in problems), \
        problems


def test_creation_data_the_workflow_does_not_take_is_named_with_a_valid_chain(log):
    """A creation rewritten to start with data its workflow does not let a case start
    with (a key outside creation_sets) is named, though the chain is made whole again."""
    with rawdb.unguarded(log) as conn:
        data = conn.execute("SELECT data FROM events WHERE case_id = 'mimerskvarteret' "
                            "AND seq = 1").fetchone()[0]
        smuggled = json.dumps({**json.loads(data), "smuggled": 1}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False)
        conn.execute("UPDATE events SET data = ? WHERE case_id = 'mimerskvarteret' AND "
                     "seq = 1", (smuggled,))
        _rehash_from(conn, "mimerskvarteret", 1)
    problems = _only(_problems(log), "mimerskvarteret")
    assert any(p.startswith("case 'mimerskvarteret' event 1: ") and "'smuggled'" in p
               and "may not start with the data" in p for p in problems), problems


# -- the feed's positions -------------------------------------------------------------------


def test_an_edited_feed_position_is_named(log):
    """An event moved to a position past the end leaves a gap, and its case's events out
    of order; both are named."""
    with rawdb.unguarded(log) as conn:
        rawdb.set_position(conn, "restbeloeb", 2, 99)
    problems = _only(_problems(log), "restbeloeb")
    assert any(p.startswith("the feed: position 11 is missing") for p in problems), problems
    assert any(p.startswith("case 'restbeloeb' event 3: feed position 12 is not after "
                            "event 2's 99") for p in problems), problems


def test_a_repeated_feed_position_is_named(log):
    """Two events at one position are named, as is the position left empty."""
    with rawdb.unguarded(log) as conn:
        rawdb.set_position(conn, "restbeloeb", 3, 11)
    problems = _only(_problems(log), "restbeloeb")
    assert any(p.startswith("the feed: position 11 is held by case 'restbeloeb' event 2 "
                            "and by case 'restbeloeb' event 3") for p in problems), problems


def test_the_database_refuses_a_repeated_feed_position_while_its_key_stands(log):
    """The unique key on positions refuses a second event at a position outright (even
    with the append-only triggers lifted)."""
    table = "feed" if log.startswith("postgresql:") else "events"
    with rawdb.unguarded(log) as conn, pytest.raises(rawdb.errors(), match="(?i)unique"):
        conn.execute(f"UPDATE {table} SET position = 11 WHERE case_id = 'restbeloeb' "
                     f"AND seq = 3")
    assert _problems(log) == []


# -- a whole chain rebuilt, and the exported heads that catch it ----------------------------


def test_rebuilt_chain_passes_verify_but_not_against_exported_heads(log):
    """Someone who rewrites an event and recomputes every later hash fools verify(), but
    not verify(heads=...) with heads exported before."""
    heads = _heads(log)
    assert _problems(log, heads) == []
    with rawdb.unguarded(log) as conn:
        conn.execute("UPDATE events SET note = 'Forslaget blev aldrig fremlagt' "
                     "WHERE case_id = 'restbeloeb' AND seq = 2")
        _rehash_from(conn, "restbeloeb", 2)
    assert _problems(log) == []  # what the chain alone can't tell
    assert _problems(log, heads) == ["case 'restbeloeb' event 7: its hash differs from the "
                                     "exported head (the chain was rewritten)"]


def test_truncation_with_the_cases_table_fixed_is_caught_by_exported_heads(log):
    """Cutting a case's last events and fixing the cases table to match leaves a gap in
    the feed (events of other cases came after them), and the exported head is no
    longer in the log."""
    heads = _heads(log)
    with rawdb.unguarded(log) as conn:
        conn.execute("DELETE FROM events WHERE case_id = 'restbeloeb' AND seq > 5")
        _rehash_from(conn, "restbeloeb", 5)
    gap = ["the feed: positions 15..16 are missing, between case 'restbeloeb' event 5 and "
           "case 'untouched' event 1 (events were removed, or their positions changed)"]
    assert _problems(log) == gap
    assert _problems(log, heads) == ["case 'restbeloeb' event 7: exported earlier, no longer "
                                     "in the log", *gap]


def test_deleted_case_is_caught_by_exported_heads(log):
    """A whole case removed (events and row) is missing from the exported heads; it was the
    last in the feed, so no gap in the feed's positions shows it."""
    heads = _heads(log)
    with rawdb.unguarded(log) as conn:
        conn.execute("DELETE FROM events WHERE case_id = 'untouched'")
        conn.execute("DELETE FROM cases WHERE case_id = 'untouched'")
        # a thorough attacker removes its derived rows too (left behind, verify names them)
        for table in ("case_awaiting", "case_due", "case_data", "case_fields"):
            conn.execute(f"DELETE FROM {table} WHERE case_id = 'untouched'")
    assert _problems(log) == []
    assert _problems(log, heads) == ["case 'untouched' event 1: exported earlier, no longer "
                                     "in the log"]


def test_heads_exported_before_later_events_still_match(log):
    """Heads exported earlier stay valid while the log grows honestly."""
    heads = _heads(log)
    with af.open_store(log) as store:
        store.case("restbeloeb").fire("propose", actor="tmf", on="2022-02-01")
        assert store.verify(heads=heads).ok


def test_console_script_verify_and_heads_catch_a_rebuilt_chain(log, tmp_path):
    """`approvalflow heads` then `verify --heads` (real processes) catch a rebuilt chain
    that plain `verify` passes."""
    assert CONSOLE.exists(), CONSOLE
    exported = tmp_path / "heads.json"
    out = subprocess.run([str(CONSOLE), "--db", log, "heads"], capture_output=True,
                         text=True, check=True)
    exported.write_text(out.stdout)
    with rawdb.unguarded(log) as conn:
        conn.execute("UPDATE events SET note = 'Godkendt med forbehold' "
                     "WHERE case_id = 'mimerskvarteret' AND seq = 3")
        _rehash_from(conn, "mimerskvarteret", 3)
    plain = subprocess.run([str(CONSOLE), "--db", log, "verify"], capture_output=True,
                           text=True)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    checked = subprocess.run([str(CONSOLE), "--db", log, "verify", "--heads",
                              str(exported)], capture_output=True, text=True)
    assert checked.returncode == 1
    assert "case 'mimerskvarteret' event 9: its hash differs" in checked.stdout
    assert "Traceback" not in checked.stderr
