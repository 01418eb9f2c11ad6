"""Persons and four eyes: ``by`` is stored, hashed and shown; ``not_by`` refuses the person
who took the named step, in fire, after a replay, and in verify."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.canonical import canonical_json
from approvalflow.store.rows import event_hash
from tests import (
    grant_guards,  # noqa: F401  (registers the research grant's guard)
    rawdb,
)

pytestmark = pytest.mark.backends

GRANT = Path(__file__).parent / "fixtures" / "research-grant.toml"
CONSOLE = Path(sys.executable).with_name("approvalflow")


@pytest.fixture
def grant(store: af.Store) -> af.Case:
    """A research grant created and submitted by the applicant's person 'ann'."""
    case = store.create_case(af.load_workflow(GRANT), "g", actor="applicant", on="2024-01-02",
                             data={"budget": 5000}, by="ann")
    case.fire("submit", actor="applicant", on="2024-01-03", by="ann")
    return case


def test_by_is_stored_and_comes_back(store: af.Store, grant: af.Case) -> None:
    """The person of each event is in the Event, after a reload, in the feed and its dict."""
    assert [e.by for e in grant.history] == ["ann", "ann"]
    loaded = store.case("g")
    assert [e.by for e in loaded.history] == ["ann", "ann"]
    assert [e.to_dict()["by"] for e in store.feed()] == ["ann", "ann"]


def test_four_eyes_refuses_the_same_person_naming_both_steps(grant: af.Case) -> None:
    """not_by = ['submit']: the person who submitted can't take finance.ok; the reason names
    the person and both steps; another person can."""
    with pytest.raises(af.TransitionRefusedError) as refused:
        grant.fire("finance.ok", actor="finance", on="2024-01-04", by="ann")
    assert refused.value.reasons == ["'ann' took 'submit', so another person must take "
                                     "'finance.ok' (four eyes: not_by = ['submit'])"]
    assert grant.version == 2
    grant.fire("finance.ok", actor="finance", on="2024-01-04", by="kim")
    assert grant.history[-1].by == "kim"


@pytest.mark.parametrize("same", ["anne\u0301", " ann\u00e9", "ann\u00e9 ", "ann\u200b\u00e9",
                                  "\u202dann\u00e9", "ann\u034f\u00e9", "ann\u00e9\ufe0f",
                                  "ann\u00e9\U000e0041"])
def test_four_eyes_sees_one_person_in_a_spelling_that_looks_the_same(store: af.Store,
                                                                    same: str) -> None:
    """A person written decomposed, with spaces around, or with invisible characters is the
    person who took the named step (each passed as another person)."""
    case = store.create_case(af.load_workflow(GRANT), "g2", actor="applicant", on="2024-01-02",
                             data={"budget": 5000})
    case.fire("submit", actor="applicant", on="2024-01-03", by="ann\u00e9")
    with pytest.raises(af.TransitionRefusedError, match="four eyes"):
        case.fire("finance.ok", actor="finance", on="2024-01-04", by=same)
    assert case.version == 2
    case.fire("finance.ok", actor="finance", on="2024-01-04", by="anna")
    assert store.verify().ok


def test_four_eyes_needs_a_person(grant: af.Case) -> None:
    """A step with not_by and no by is refused: the rule can't be checked without one."""
    reasons = grant.why_not("finance.ok", actor="finance", on="2024-01-04", by=None)
    assert reasons == []  # asked without a person: the four-eyes rule is left out
    with pytest.raises(af.TransitionRefusedError, match="say who takes it"):
        grant.fire("finance.ok", actor="finance", on="2024-01-04")


def test_four_eyes_against_every_named_step(grant: af.Case) -> None:
    """dean.grant has not_by = ['submit', 'finance.ok']: both persons are refused, a third
    may grant once the vote has passed."""
    grant.fire("finance.ok", actor="finance", on="2024-01-04", by="kim")
    for n in range(1, 9):
        grant.fire("ethics.yes", actor=f"e{n}", on="2024-01-05")
    for person, step in (("ann", "submit"), ("kim", "finance.ok")):
        reasons = grant.why_not("dean.grant", actor="dean", on="2024-01-06", by=person)
        assert reasons == [f"{person!r} took {step!r}, so another person must take "
                           f"'dean.grant' (four eyes: not_by = [{step!r}])"]
    grant.fire("dean.grant", actor="dean", on="2024-01-06", by="dora")
    assert grant.state == {"granted"}


def test_four_eyes_still_compares_the_steps_named_after_one_not_taken(store: af.Store) -> None:
    """not_by = ['dean.send_back', 'submit', 'finance.ok'] with nothing sent back: the step
    not taken is passed over, and the submitter and finance's person are still refused."""
    text = GRANT.read_text(encoding="utf-8").replace(
        'not_by = ["submit", "finance.ok"]', 'not_by = ["dean.send_back", "submit", "finance.ok"]')
    case = store.create_case(af.loads_workflow(text, source="research-grant.toml"), "g",
                             actor="applicant", on="2024-01-02", data={"budget": 5000}, by="ann")
    case.fire("submit", actor="applicant", on="2024-01-03", by="ann")
    case.fire("finance.ok", actor="finance", on="2024-01-04", by="kim")
    for n in range(1, 9):
        case.fire("ethics.yes", actor=f"e{n}", on="2024-01-05")
    for person in ("ann", "kim"):
        with pytest.raises(af.TransitionRefusedError, match=f"'{person}' took"):
            case.fire("dean.grant", actor="dean", on="2024-01-06", by=person)
    case.fire("dean.grant", actor="dean", on="2024-01-06", by="dora")
    assert case.state == {"granted"} and store.verify().ok


def test_named_step_taken_without_a_person_refuses(store: af.Store) -> None:
    """When the named step recorded no person, nobody can be shown to be another person:
    the step is refused until the named step is taken again with its person."""
    case = store.create_case(af.load_workflow(GRANT), "g", actor="applicant",
                             on="2024-01-02", data={"budget": 5000})
    case.fire("submit", actor="applicant", on="2024-01-03")
    reasons = case.why_not("finance.ok", actor="finance", on="2024-01-04", by="kim")
    assert reasons == ["'submit' was taken without recording who took it, so it can't be "
                       "shown that 'kim' is another person; 'finance.ok' needs 'submit' "
                       "taken again with its person (by)"]
    case.fire("dean.send_back", actor="dean", on="2024-01-04")
    case.fire("submit", actor="applicant", on="2024-01-05", by="ann")
    case.fire("finance.ok", actor="finance", on="2024-01-06", by="kim")


def test_the_latest_taker_of_the_named_step_counts(store: af.Store, grant: af.Case) -> None:
    """After a send-back and a new submission by another person, the rule compares with
    the latest submitter, also in a case loaded again (replay rebuilds who took what)."""
    grant.fire("dean.send_back", actor="dean", on="2024-01-04", by="dora")
    grant.fire("submit", actor="applicant", on="2024-01-05", by="kim")
    loaded = store.case("g")
    assert loaded.engine_state.persons["submit"] == "kim"
    with pytest.raises(af.TransitionRefusedError, match="'kim' took 'submit'"):
        loaded.fire("finance.ok", actor="finance", on="2024-01-06", by="kim")
    loaded.fire("finance.ok", actor="finance", on="2024-01-06", by="ann")
    assert store.verify().ok


def test_person_is_hashed(store_url: str, store: af.Store, grant: af.Case) -> None:
    """Editing the recorded person breaks the event's hash; an event without a person
    hashes exactly as before schema 4 (15 fields)."""
    row = {"case_id": "x", "seq": 2, "kind": "fire", "trigger": "t", "actor": "a",
           "on_date": "2024-01-01", "recorded_at": "2024-01-01T00:00:00+00:00",
           "source": "[]", "target": "[]", "note": None, "data": "{}", "workflow": "w",
           "workflow_version": 1, "key": None, "prev_hash": "0" * 64}
    old = event_hash(row)
    assert event_hash({**row, "by": None, "workflow_digest": None}) == old
    assert event_hash({**row, "by": "ann"}) != old
    # a person can never pass for a creation's workflow digest, or the other way round
    assert event_hash({**row, "by": "f" * 64}) != event_hash({**row, "workflow_digest": "f" * 64})
    with rawdb.unguarded(store_url) as conn:
        conn.execute("UPDATE events SET by = 'kim' WHERE case_id = 'g' AND seq = 2")
    problems = store.verify().problems
    assert problems == ["case 'g' event 2: its content does not match its hash (it was "
                        "edited)"]


@pytest.mark.sqlite_only
def test_verify_names_a_forged_step_that_breaks_four_eyes(db_path: Path, store: af.Store,
                                                          grant: af.Case) -> None:
    """A finance.ok by the submitter, appended behind the library's back with a correct
    chain and hash: verify re-decides it and names the rule."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    last = dict(conn.execute("SELECT * FROM events WHERE case_id = 'g' ORDER BY seq DESC "
                             "LIMIT 1").fetchone())
    row = {**last, "seq": 3, "trigger": "finance.ok", "actor": "finance", "by": "ann",
           "on_date": "2024-01-04", "source": last["target"],
           "target": canonical_json(["ethics_voting", "finance_ok"]),
           "prev_hash": last["hash"], "workflow_digest": None, "position": 3, "note": None}
    row["hash"] = event_hash(row)
    conn.execute(f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                 tuple(row.values()))
    conn.execute("UPDATE cases SET state = ?, seq = 3, last_on = ?, head_hash = ?, "
                 "updated_at = ? WHERE case_id = 'g'",
                 (row["target"], row["on_date"], row["hash"], row["recorded_at"]))
    # the inbox row the step ends, as a write by the library would remove it
    conn.execute("DELETE FROM case_awaiting WHERE case_id = 'g' AND trigger = 'finance.ok'")
    conn.close()
    problems = store.verify().problems
    assert problems == ["case 'g' event 3: 'finance.ok' by 'finance' on 2024-01-04 breaks the "
                        "rule 'not_by submit': 'ann' took 'submit', so another person must "
                        "take 'finance.ok' (four eyes: not_by = ['submit'])"]


def test_idempotency_key_covers_the_person(grant: af.Case) -> None:
    """A retry with the same key but another person is refused as other content."""
    grant.fire("finance.ok", actor="finance", on="2024-01-04", by="kim", key="f-1")
    assert grant.fire("finance.ok", actor="finance", on="2024-01-04", by="kim",
                      key="f-1").seq == 3
    with pytest.raises(af.InvalidInputError, match="other content"):
        grant.fire("finance.ok", actor="finance", on="2024-01-04", by="bo", key="f-1")


@pytest.mark.parametrize("by", ["", "   ", "a\nb", 7, "x" * 201])
def test_by_must_name_a_person(grant: af.Case, by: object) -> None:
    """Empty, blank, control characters, not text, or too long: refused, nothing stored."""
    with pytest.raises(af.InvalidInputError):
        grant.fire("finance.ok", actor="finance", on="2024-01-04", by=by)  # type: ignore[arg-type]
    assert grant.version == 2


def test_import_records_the_person_and_checks_four_eyes(store: af.Store) -> None:
    """import_events takes 'by' per record, hashes it like fire, and refuses four-eyes
    breaches as fire does."""
    wf = af.load_workflow(GRANT)
    records = [{"case_id": "i", "trigger": "create", "workflow": wf, "actor": "applicant",
                "on": "2024-01-02", "data": {"budget": 1}, "by": "ann"},
               {"case_id": "i", "trigger": "submit", "actor": "applicant", "on": "2024-01-03",
                "by": "ann"}]
    assert store.import_events(records) == 2
    assert [e.by for e in store.case("i").history] == ["ann", "ann"]
    assert store.verify().ok
    with pytest.raises(af.TransitionRefusedError, match="four eyes"):
        store.import_events([{"case_id": "i", "trigger": "finance.ok", "actor": "finance",
                              "on": "2024-01-04", "by": "ann"}])


def test_person_is_shown_in_history_show_and_html(store_url: str, store: af.Store,
                                                  grant: af.Case) -> None:
    """history and show on the command line, and the HTML history, name the person."""
    grant.fire("finance.ok", actor="finance", on="2024-01-04", by="k.berg")
    history = subprocess.run([str(CONSOLE), "--db", store_url, "--guards",
                              "tests.grant_guards", "history", "g"], capture_output=True,
                             text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert "finance.ok by finance (k.berg)" in history.stdout, history.stderr
    show = subprocess.run([str(CONSOLE), "--db", store_url, "--guards", "tests.grant_guards",
                           "show", "g", "--on", "2024-01-05"], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parents[1])
    assert "finance (Finance office, k.berg): finance.ok" in show.stdout, show.stderr
    as_json = subprocess.run([str(CONSOLE), "--db", store_url, "--guards",
                              "tests.grant_guards", "show", "g", "--json"],
                             capture_output=True, text=True, timeout=120,
                             cwd=Path(__file__).parents[1])
    decided = json.loads(as_json.stdout)["decided"]
    assert [d["by"] for d in decided] == ["ann", "k.berg"]
    assert "(k.berg)" in grant.history_table()._repr_html_()


def test_not_by_must_name_steps_of_the_workflow() -> None:
    """not_by naming a step the workflow does not have is a definition error."""
    text = GRANT.read_text(encoding="utf-8").replace('not_by = ["submit"]',
                                                    'not_by = ["sumbit"]')
    with pytest.raises(af.DefinitionError, match=r"not_by \['sumbit'\] are not steps"):
        af.loads_workflow(text)
