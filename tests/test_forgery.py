"""Forbidden steps written into the log, as an attacker would: verify must name each.

Every forged row here is appended with a raw connection (tests/rawdb.py: sqlite3, or
psycopg on PostgreSQL) and hashed and chained exactly as the library does it
(``store.rows.event_hash``), and the ``cases`` row is updated to match, so the chain
alone proves nothing: only re-deciding the step can catch it. Also here: stale Case
objects, which must never write a step decided on another state. The tests run on
SQLite and PostgreSQL, but for rows damaged into SQLite's other storage classes and a
full disk, which only SQLite has.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

import approvalflow as af
from approvalflow.canonical import canonical_json, sha256_hex
from approvalflow.engine import engine_for
from approvalflow.guards import GuardContext, guard, unregister_guard
from approvalflow.store.rows import event_hash
from tests import rawdb
from tests.figures import figures  # noqa: F401  (the fixture)

pytestmark = pytest.mark.backends

WORKFLOW = """
[workflow]
name = "forgery-test"
version = 1
initial = "draft"

[actors]
clerk = "Clerk"
chair = "Chair"
a = "Board member A"
b = "Board member B"
c = "Board member C"
fund = "The fund"

[states.draft]
[states.review]
parallel = true
[states.board]
parent = "review"
initial = "board_voting"
[states.board_voting]
parent = "board"
[states.board_yes]
parent = "board"
final = true
[states.chair]
parent = "review"
initial = "chair_pending"
[states.chair_pending]
parent = "chair"
[states.chair_ok]
parent = "chair"
final = true
[states.funding]
[states.done]
final = true
[states.refused]
final = true

[votes.board]
state = "board_voting"
voters = ["a", "b", "c"]
need = 2

[[transitions]]
trigger = "submit"
source = "draft"
target = "review"
actors = ["clerk"]

[[transitions]]
trigger = "board.yes"
source = "board_voting"
target = "board_yes"
vote = "board"

[[transitions]]
trigger = "board.no"
source = "board_voting"
target = "refused"
vote = "board"
ballot = "no"

[[transitions]]
trigger = "board.withdraw"
source = "board_voting"
target = "board_yes"
vote = "board"
ballot = "withdraw"

[[transitions]]
trigger = "chair.ok"
source = "chair_pending"
target = "chair_ok"
actors = ["chair"]

[[transitions]]
trigger = "send"
source = "review"
target = "funding"
actors = ["clerk"]
guards = ["forgery_budget_ok"]

[[transitions]]
trigger = "fund.grant"
source = "funding"
target = "done"
actors = ["fund"]
guards = ["forgery_start_reached"]

[[transitions]]
trigger = "fund.refuse"
source = "funding"
target = "refused"
actors = ["fund"]
"""


@guard("forgery_budget_ok")
def _budget_ok(ctx: GuardContext) -> list[str]:
    budget = ctx.data.get("budget")
    return [] if isinstance(budget, int) and 0 < budget <= 100 else [f"budget {budget!r} is "
                                                                     f"not 1..100"]


@guard("forgery_start_reached")
def _start_reached(ctx: GuardContext) -> bool:
    return ctx.on >= dt.date.fromisoformat(ctx.data["start"])


@pytest.fixture
def wf() -> af.Workflow:
    return af.loads_workflow(WORKFLOW)


@pytest.fixture
def log(store_url: str, wf: af.Workflow) -> str:
    """A store with case 'x' submitted on 2024-01-10 (budget 50, start 2024-03-01)."""
    with af.open_store(store_url) as store:
        case = store.create_case(wf, "x", actor="clerk", on="2024-01-10",
                                 data={"budget": 50, "start": "2024-03-01"})
        case.fire("submit", actor="clerk", on="2024-01-10")
    return store_url


def _steps(path: str | Path, *steps: tuple[str, str, str]) -> None:
    """Honest steps (trigger, actor, date) on case 'x', through the library."""
    with af.open_store(path) as store:
        case = store.case("x")
        for trigger, actor, on in steps:
            case.fire(trigger, actor=actor, on=on)


def forge(path: str | Path, trigger: str, actor: str, on: str, *,
          data: dict[str, Any] | None = None, target: list[str] | None = None,
          kind: str = "fire", case_id: str = "x", fields: dict[str, Any] | None = None) -> None:
    """Append a step behind the library's back: chained, hashed as the library hashes, the
    statechart's own target computed with the engine, the cases row updated to match.
    ``fields`` sets columns to text the library would never write (hashed all the same)."""
    with rawdb.raw(str(path)) as conn:
        _forge(conn, trigger, actor, on, data=data, target=target, kind=kind, case_id=case_id,
               fields=fields)


def _forge(conn: Any, trigger: str, actor: str, on: str, *, data: dict[str, Any] | None,
           target: list[str] | None, kind: str, case_id: str,
           fields: dict[str, Any] | None = None) -> None:
    [last] = rawdb.dicts(conn, "SELECT * FROM events WHERE case_id = ? ORDER BY seq DESC "
                               "LIMIT 1", (case_id,))
    source = json.loads(last["target"])
    if target is None:
        wf = af.loads_workflow(conn.execute("SELECT source FROM workflows").fetchone()[0])
        target = sorted(engine_for(wf).step(frozenset(source), trigger))
    row = {"case_id": case_id, "seq": last["seq"] + 1, "kind": kind, "trigger": trigger,
           "actor": actor, "on_date": on, "recorded_at": "2024-06-01T00:00:00+00:00",
           "source": canonical_json(sorted(source)), "target": canonical_json(sorted(target)),
           "note": None, "data": canonical_json(data or {}), "workflow": last["workflow"],
           "workflow_version": last["workflow_version"], "key": None,
           "prev_hash": last["hash"], "workflow_digest": None, "by": None,
           "position": conn.execute("SELECT MAX(position) + 1 FROM events").fetchone()[0]}
    row.update(fields or {})
    row["hash"] = event_hash(row)
    rawdb.insert_event(conn, row)
    final = int(target in (["done"], ["refused"]))
    conn.execute("UPDATE cases SET state = ?, seq = ?, last_on = ?, head_hash = ?, is_final = ?, "
                 "updated_at = ? WHERE case_id = ?",
                 (row["target"], row["seq"], on, row["hash"], final, row["recorded_at"],
                  case_id))


def problems(path: str | Path, **kwargs: Any) -> list[str]:
    with af.open_store(path) as store:
        return store.verify(**kwargs).problems


def test_honest_log_verifies(log: str) -> None:
    """The honest log, taken all the way through, has no problem."""
    _steps(log, ("board.yes", "a", "2024-01-11"), ("board.yes", "b", "2024-01-12"),
           ("chair.ok", "chair", "2024-01-12"), ("send", "clerk", "2024-01-13"),
           ("fund.grant", "fund", "2024-03-01"))
    assert problems(log) == []


# -- one forged, correctly chained append per rule ------------------------------------------

FORGERIES = {
    "join": ([("board.yes", "a", "2024-01-11"), ("board.yes", "b", "2024-01-12")],
             ("send", "clerk", "2024-01-13", None), "join"),
    "vote once": ([("board.yes", "a", "2024-01-11")],
                  ("board.yes", "a", "2024-01-12", None), "vote: once"),
    "threshold": ([], ("board.yes", "a", "2024-01-11", ["board_yes", "chair_pending"]),
                  "vote threshold"),
    "withdrawal": ([("board.withdraw", "a", "2024-01-11")],
                   ("board.withdraw", "b", "2024-01-12", None), "vote: withdrawal"),
    "withdrawn voter": ([("board.withdraw", "a", "2024-01-11")],
                        ("board.yes", "a", "2024-01-12", None), "vote: withdrawn"),
    "actor": ([], ("chair.ok", "clerk", "2024-01-11", None), "actor"),
    "unknown actor": ([], ("chair.ok", "mallory", "2024-01-11", None), "actor"),
    "date order": ([("chair.ok", "chair", "2024-01-20")],
                   ("board.yes", "a", "2024-01-11", None), "date order"),
    "source": ([], ("fund.grant", "fund", "2024-03-01", ["done"]), "source"),
    "unknown step": ([], ("fast_track", "clerk", "2024-01-11", ["done"]), "step"),
}


def _forge_one(log: str | Path, name: str) -> tuple[bool, list[str]]:
    """Take FORGERIES[name]'s honest steps, append its forged step; was it named by rule?"""
    honest, (trigger, actor, on, target), rule = FORGERIES[name]
    _steps(log, *honest)
    assert problems(log) == []
    forge(log, trigger, actor, on, target=target)
    seq = 3 + len(honest)
    found = problems(log)
    return any(p.startswith(f"case 'x' event {seq}: {trigger!r} by {actor!r}")
               and f"breaks the rule '{rule}'" in p for p in found), found


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_step_breaking_a_rule_is_named(log: str, name: str) -> None:
    """A forged step that breaks one rule is reported with its case, event and rule."""
    named, found = _forge_one(log, name)
    assert found, f"the forged {name!r} step went unnoticed"
    assert named, found


@pytest.mark.sqlite_only  # the figure for the docs; each forgery runs on both backends above
def test_forgery_figures(tmp_path: Path, wf: af.Workflow, figures) -> None:  # noqa: F811
    """Every kind of forged step, each on a log of its own, is named: the figure for the docs."""
    caught = 0
    for n, name in enumerate(sorted(FORGERIES)):
        path = tmp_path / f"f{n}.db"
        with af.open_store(path) as store:
            case = store.create_case(wf, "x", actor="clerk", on="2024-01-10",
                                     data={"budget": 50, "start": "2024-03-01"})
            case.fire("submit", actor="clerk", on="2024-01-10")
        caught += _forge_one(path, name)[0]
    assert caught == len(FORGERIES)
    figures("forged_rule_kinds", len(FORGERIES), "kinds of forged, correctly chained steps "
            "(join, vote once, threshold, withdrawal, actor, date order, ...) appended to a "
            "log with the library's own hash")
    figures("forged_rule_kinds_named", caught, "of them named by verify with the case, the "
            "event and the rule broken")


def test_forged_step_after_the_end_is_named(log: Path) -> None:
    """A step appended to a case that has ended breaks the rule 'final'."""
    _steps(log, ("board.no", "a", "2024-01-11"), ("board.no", "b", "2024-01-11"))
    forge(log, "chair.ok", "chair", "2024-01-12", target=["refused"])
    assert any("event 5: 'chair.ok' by 'chair'" in p and "breaks the rule 'final'" in p
               for p in problems(log))


def test_forged_grant_before_the_date_rule_is_named(log: Path) -> None:
    """A grant dated before the case's start date breaks its date-rule guard."""
    _steps(log, ("board.yes", "a", "2024-01-11"), ("board.yes", "b", "2024-01-12"),
           ("chair.ok", "chair", "2024-01-12"), ("send", "clerk", "2024-01-13"))
    forge(log, "fund.grant", "fund", "2024-02-01")
    assert [p for p in problems(log) if "breaks the rule 'guard forgery_start_reached'" in p
            and p.startswith("case 'x' event 7: 'fund.grant' by 'fund' on 2024-02-01")]


def test_forged_data_that_breaks_a_guard_is_named(log: Path) -> None:
    """A step whose own data makes its guard fail (re-checked on the data as of that step)."""
    _steps(log, ("board.yes", "a", "2024-01-11"), ("board.yes", "b", "2024-01-12"),
           ("chair.ok", "chair", "2024-01-12"))
    forge(log, "send", "clerk", "2024-01-13", data={"budget": 5000})
    found = problems(log)
    assert any("event 6: 'send' by 'clerk'" in p and "guard forgery_budget_ok" in p
               and "budget 5000" in p for p in found), found


def test_guard_is_rechecked_on_data_changed_by_an_earlier_step(log: Path) -> None:
    """Data set by an earlier (allowed) step counts when a later guard is re-checked."""
    _steps(log, ("board.yes", "a", "2024-01-11"))
    forge(log, "board.yes", "b", "2024-01-12", data={"budget": 0})  # allowed: no guard
    forge(log, "chair.ok", "chair", "2024-01-12")
    forge(log, "send", "clerk", "2024-01-13")
    assert any("event 6: 'send'" in p and "budget 0 is not 1..100" in p
               for p in problems(log))


def test_forged_creation_later_in_the_log_is_named(log: Path) -> None:
    """An event of kind 'create' after the first is not a step and is reported."""
    forge(log, "create", "clerk", "2024-01-11", kind="create", target=["draft"])
    assert any("event 3: of kind 'create'" in p for p in problems(log))


def test_forged_expectation_that_moves_the_case_is_named(log: Path) -> None:
    """An expectation recorded as changing the state is reported."""
    forge(log, "expect", "clerk", "2024-01-11", kind="expect", target=["funding"],
          data={"expect": {"step": "send", "on": "2024-02-01", "given": "2024-02-01"}})
    assert any("event 3: an expectation changes no state" in p for p in problems(log))


def test_flagship_forgery_from_the_report_fails_verify_and_heads(store_url: str,
                                                                seed_data) -> None:
    """The reported attack on the flagship: send_to_lbf while 3B and VIBO are pending, then
    LBF's decision and the start before the planned start; caught with and without heads."""
    path = store_url
    with af.open_store(path) as store:
        case = store.create_case("boligsocial-helhedsplan", "mimerskvarteret", actor="tmf",
                                 on="2021-11-01", data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-01")
        case.fire("tmu.approve", actor="tmu", on="2021-12-06")
        heads = json.loads(json.dumps(store.heads()))
        wf = case.definition
    lbf_steps = [t.trigger for t in wf.transitions if t.source == "lbf_review"
                 and t.trigger.startswith("lbf.") and "refuse" not in t.trigger
                 and "send_back" not in t.trigger]
    forge(path, "send_to_lbf", "tmf", "2021-12-07", case_id="mimerskvarteret",
          target=["lbf_review"])
    for trigger in lbf_steps[:1]:
        forge(path, trigger, "lbf", "2021-12-08", case_id="mimerskvarteret")
    found = problems(path)
    assert any("event 4: 'send_to_lbf' by 'tmf'" in p and "breaks the rule 'join'" in p
               for p in found), found
    assert problems(path, heads=heads) != []


# -- expectations, persons and rows the library never writes ---------------------------------

EXPECT = {"expect": {"step": "send", "on": "2024-02-01", "given": "2024-02-01"}}
REVIEW = ["board_voting", "chair_pending"]


@pytest.mark.parametrize(("actor", "data", "rule"), [
    ("mallory", EXPECT, "actor"),
    ("clerk", {"expect": {"step": "fast_track", "on": "2024-02-01", "given": "2024-02-01"}},
     "step"),
    ("clerk", {"expect": {"step": "send", "on": "2024-02-01", "given": "2024-03"}},
     "expectation"),
    ("clerk", {"expect": {"step": "board.yes", "on": "2024-02-01", "given": "2024-02-01",
                          "voter": "mallory"}}, "voter"),
    ("clerk", {"budget": 5000}, "expectation"),
])
def test_forged_expectation_case_expect_refuses_is_named(log: str, actor: str,
                                                         data: dict[str, Any],
                                                         rule: str) -> None:
    """An expectation by someone not an actor, about no step or voter, or with other data
    (all refused by Case.expect) is named with the rule it breaks."""
    forge(log, "expect", actor, "2024-01-11", kind="expect", target=REVIEW, data=data)
    found = problems(log)
    assert any(p.startswith(f"case 'x' event 3: an expectation by {actor!r} on 2024-01-11 "
                            f"breaks the rule '{rule}'") for p in found), found


def test_forged_expectation_dated_backwards_in_another_date_form_is_named(log: str) -> None:
    """A date written in another form Python reads ('2024-W01-1', 1 January) sorts after
    '2024-01-20' as text: it is named, so an expectation can't go back in time with it."""
    _steps(log, ("chair.ok", "chair", "2024-01-20"))
    forge(log, "expect", "clerk", "2024-01-20", kind="expect",
          target=["board_voting", "chair_ok"], data=EXPECT, fields={"on_date": "2024-W01-1"})
    found = problems(log)
    assert any(p.startswith("case 'x' event 4: its date '2024-W01-1' is 2024-01-01 written in "
                            "another form than YYYY-MM-DD") for p in found), found
    assert "case 'x' event 4: dated 2024-W01-1, before the previous event's 2024-01-20" \
        in found, found


FOUR_EYES = WORKFLOW.replace('target = "funding"\nactors = ["clerk"]\n',
                             'target = "funding"\nactors = ["clerk"]\nnot_by = ["submit"]\n')


@pytest.mark.parametrize("person", ["", " ", "\t", "al\x1bice"])
def test_forged_step_by_no_real_person_passes_no_four_eyes_rule(store_url: str,
                                                                person: str) -> None:
    """A four-eyes step recorded with an empty, blank or unprintable person (which fire
    refuses) is named: it can't stand for 'another person'."""
    wf = af.loads_workflow(FOUR_EYES)
    assert wf.transitions_for("send")[0].not_by == ("submit",)
    with af.open_store(store_url) as store:
        case = store.create_case(wf, "x", actor="clerk", on="2024-01-10",
                                 data={"budget": 50, "start": "2024-03-01"})
        case.fire("submit", actor="clerk", on="2024-01-10", by="alice")
        for actor in ("a", "b"):
            case.fire("board.yes", actor=actor, on="2024-01-11")
        case.fire("chair.ok", actor="chair", on="2024-01-11")
        with pytest.raises(af.InvalidInputError):
            case.fire("send", actor="clerk", on="2024-01-12", by=person)
    assert problems(store_url) == []
    forge(store_url, "send", "clerk", "2024-01-12", fields={"by": person})
    found = problems(store_url)
    assert any(p.startswith("case 'x' event 6: 'send' by 'clerk' on 2024-01-12 breaks the "
                            "rule 'by'") for p in found), found


@pytest.mark.parametrize(("column", "text", "named"), [
    ("data", '{"budget":NaN}', "can't be read: data"),
    ("data", '{"budget":Infinity}', "can't be read: data"),
    ("data", '{"budget":1e999}', "can't be read: data"),
    ("data", '{"budget":5000,"budget":50}', "its data"),
    ("data", '{"budget": 50}', "its data"), ("data", "{ }", "its data"),
    ("target", '["chair_pending","board_voting"]', "its target"),
    ("target", '["board_voting","board_voting","chair_pending"]', "its target"),
    ("source", '[ "board_voting","chair_pending"]', "its source"),
    ("recorded_at", "yesterday", "can't be read: recorded_at"),
])
def test_forged_text_the_library_never_writes_is_named_not_raised(log: str, column: str,
                                                                  text: str,
                                                                  named: str) -> None:
    """Data that is not canonical JSON (NaN, a repeated key read one way here and another
    way elsewhere), state lists out of order, an unreadable time: each is a problem
    naming the event, never an exception out of verify."""
    forge(log, "board.yes", "a", "2024-01-11", target=REVIEW, fields={column: text})
    found = problems(log)
    assert any(p.startswith(f"case 'x' event 3: {named}") for p in found), found


@pytest.mark.parametrize("fields", [{"recorded_at": "soon"}, {"data": "[1]"},
                                    {"source": '"board_voting"'}])
def test_forged_unreadable_row_is_a_clear_error_when_the_case_is_loaded(
        log: str, fields: dict[str, str]) -> None:
    """Loading a case with an unreadable event raises StoreError naming the event, not a
    ValueError or AttributeError from deep inside."""
    forge(log, "board.yes", "a", "2024-01-11", target=REVIEW, fields=fields)
    with af.open_store(log) as store, pytest.raises(
            af.StoreError, match=r"Case 'x' can't be loaded: its event 3 can't be read"):
        store.case("x")


@pytest.mark.parametrize("fields", [{"recorded_at": "soon"}, {"source": "[1"},
                                    {"target": '"board_voting"'}, {"data": "{"},
                                    {"on_date": "someday"}])
def test_forged_unreadable_row_is_a_clear_error_from_events_and_the_feed(
        log: str, fields: dict[str, str]) -> None:
    """store.events() and store.feed() over an unreadable event raise one StoreError naming
    the event and pointing to verify, not a ValueError from deep inside."""
    forge(log, "board.yes", "a", "2024-01-11", target=REVIEW, fields=fields)
    with af.open_store(log) as store:
        for read in (lambda: list(store.events()), lambda: list(store.events("x")),
                     lambda: store.feed()):
            with pytest.raises(af.StoreError, match=r"Event 3 of case 'x' can't be read .*"
                                                    r"'approvalflow verify'"):
                read()


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(levels):
        node = {"a": node}
    return node


@pytest.mark.parametrize(("fields", "says"), [
    ({"on_date": "3000-01-01"}, "date '3000-01-01' is outside the dates approvalflow accepts"),
    ({"note": "n" * 10_001}, "note is 10001 characters long; at most 10000 are allowed"),
    ({"trigger": "create"}, "the trigger 'create': the creation, and only it, is 'create'"),
    ({"data": canonical_json(_deep(70))}, "nested deeper than"),
])
def test_forged_input_fire_refuses_is_named_by_verify(log: str, fields: dict[str, Any],
                                                     says: str) -> None:
    """A step whose own fields are ones fire refuses (a date out of range, a note too long,
    data nested too deep, a step named 'create'), hashed and chained as the
    library would, is reported under the rule 'input'."""
    forge(log, "board.yes", "a", "2024-01-11", target=REVIEW, fields=fields)
    found = problems(log)
    assert any(p.startswith("case 'x' event 3: breaks the rule 'input'") and says in p
               for p in found), found


def test_forged_target_the_workflow_does_not_have_is_a_problem_not_a_crash(log: str) -> None:
    """A step recorded as moving to a state the workflow does not have is named, and
    verify goes on to report, rather than raising KeyError."""
    forge(log, "chair.ok", "chair", "2024-01-11", target=["nowhere"])
    found = problems(log)
    assert any(p.startswith("case 'x' event 3: 'chair.ok' by 'chair'") for p in found), found
    assert any(p.startswith("case 'x': can't be replayed: its events leave it in ['nowhere']")
               for p in found), found


def test_repeated_idempotency_key_is_named(log: str) -> None:
    """Two events of one case under one idempotency key (the unique index dropped) are
    named: a retry could not say which one it stands for."""
    with af.open_store(log) as store:
        store.case("x").fire("chair.ok", actor="chair", on="2024-01-11", key="k1")
    with rawdb.raw(log) as conn:
        conn.execute("DROP INDEX events_key")
    forge(log, "board.yes", "a", "2024-01-12", target=["board_voting", "chair_ok"],
          fields={"key": "k1"})
    with af.open_store(log) as store:
        store.rebuild()  # the forger's projections match the forged log
    found = problems(log)
    assert found == ["case 'x' event 4: its idempotency key 'k1' is event 3's too (a key "
                     "names one event only)"]


# -- the workflow text is in the chain ------------------------------------------------------


def _edit_workflow(path: str, *, rewrite_digest: bool) -> None:
    with rawdb.unguarded(path) as conn:
        source = conn.execute("SELECT source FROM workflows").fetchone()[0]
        edited = source.replace('actors = ["chair"]', 'actors = ["chair", "clerk"]')
        assert edited != source
        conn.execute("UPDATE workflows SET source = ?", (edited,))
        if rewrite_digest:
            conn.execute("UPDATE workflows SET digest = ?", (sha256_hex(edited),))


def test_workflows_table_is_append_only(log: str) -> None:
    """Triggers refuse UPDATE and DELETE on the stored workflow texts, even through a raw
    connection."""
    with rawdb.raw(log) as conn:
        for sql in ("UPDATE workflows SET source = 'x'", "DELETE FROM workflows"):
            with pytest.raises(rawdb.errors(), match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM workflows").fetchone()[0] == 1
    assert problems(log) == []


def test_edited_workflow_text_is_caught_by_its_digest(log: str) -> None:
    """An edited stored workflow text no longer matches its digest column."""
    _edit_workflow(log, rewrite_digest=False)
    found = problems(log)
    assert any(p.startswith("workflow 'forgery-test' version 1: its stored text does not "
                            "match its digest") for p in found), found


def test_edited_workflow_text_with_rewritten_digest_is_caught_by_the_creation(log: str) -> None:
    """With the digest column rewritten too, the creation's hashed commitment catches it,
    and the step the edited text allows is still refused by nothing else."""
    _edit_workflow(log, rewrite_digest=True)
    forge(log, "chair.ok", "clerk", "2024-01-11")
    found = problems(log)
    assert any(p.startswith("case 'x' event 1: it commits to workflow text")
               and "the stored workflow was changed" in p for p in found), found


def test_a_case_on_an_edited_workflow_text_is_neither_loaded_nor_moved_on(log: str) -> None:
    """With the stored text and its digest rewritten, loading the case is refused, so the
    library itself can't record a step under the edited rules (here: the clerk's chair.ok)."""
    _edit_workflow(log, rewrite_digest=True)
    with af.open_store(log) as store:
        with pytest.raises(af.StoreError, match=r"Case 'x' can't be loaded: its event 1 "
                                                r"commits to the text .*\(the stored "
                                                r"workflow was changed\)"):
            store.case("x").fire("chair.ok", actor="clerk", on="2024-01-11")
        assert [e.seq for e in store.events("x")] == [1, 2]


# -- every column of the cases table --------------------------------------------------------

CASES_EDITS = {
    "workflow": "'other'", "workflow_version": "2", "state": "'[\"done\"]'", "seq": "7",
    "last_on": "'2099-01-01'", "head_hash": "'" + "0" * 64 + "'", "is_final": "1",
    "created_at": "'2000-01-01T00:00:00+00:00'", "updated_at": "'2000-01-01T00:00:00+00:00'",
}


@pytest.mark.parametrize("column", sorted(CASES_EDITS))
def test_cases_column_edited_is_named(log: str, column: str) -> None:
    """Each column of the cases table is checked against what the events say."""
    with rawdb.raw(log) as conn:
        conn.execute(f"UPDATE cases SET {column} = {CASES_EDITS[column]} WHERE case_id = 'x'")
    found = problems(log)
    assert found and all(p.startswith("case 'x'") for p in found), found
    name = {"seq": "event 7", "head_hash": "head hash", "state": "state"}.get(column, column)
    assert any(name in p for p in found), found


# -- damaged rows and odd heads are reported, never raised ----------------------------------

DAMAGE = {"source": "'5'", "data": "'[1]'", "on_date": "'2024-13-45'", "target": "'{'",
          "note": "''", "kind": "'fire '"}
#: Values of another storage class than the column's: only SQLite's columns take them.
SQLITE_DAMAGE = {"note": "X'41'", "seq": "'two'", "kind": "X'66697265'"}


def _damage(log: str, column: str, value: str) -> None:
    with rawdb.unguarded(log) as conn:
        conn.execute(f"UPDATE events SET {column} = {value} WHERE case_id = 'x' AND seq = 2")
    found = problems(log)
    assert found and all(p.startswith("case 'x'") for p in found), found


@pytest.mark.parametrize("column", sorted(DAMAGE))
def test_damaged_row_is_a_problem_naming_the_case(log: str, column: str) -> None:
    """A row edited to broken JSON, an impossible date or another text is reported with
    its case."""
    _damage(log, column, DAMAGE[column])


@pytest.mark.sqlite_only
@pytest.mark.parametrize("column", sorted(SQLITE_DAMAGE))
def test_row_damaged_into_another_type_is_a_problem_naming_the_case(log: str,
                                                                      column: str) -> None:
    """A row edited to a blob or to text in a number's column is reported with its case."""
    _damage(log, column, SQLITE_DAMAGE[column])


@pytest.mark.parametrize("head", [{"seq": float("inf"), "hash": "a"}, {"seq": 2**63, "hash": "a"},
                                  {"seq": True, "hash": "a"}, {"seq": 1}, "text", None,
                                  {"seq": "1", "hash": "a"}, {"seq": 0, "hash": "a"}])
def test_odd_exported_heads_are_problems_not_crashes(log: str, head: Any) -> None:
    """An exported head that is not {seq, hash} is one problem naming the case."""
    found = problems(log, heads={"x": head})
    assert len(found) == 1 and found[0].startswith("case 'x': the exported head"), found


# -- guards that can't be re-checked are counted, not passed ---------------------------------


def test_unregistered_guard_is_counted_and_fails_strict(log: str) -> None:
    """Steps whose guard is not registered are 'not re-checked'; strict makes them problems."""
    _steps(log, ("board.yes", "a", "2024-01-11"), ("board.yes", "b", "2024-01-12"),
           ("chair.ok", "chair", "2024-01-12"), ("send", "clerk", "2024-01-13"))
    unregister_guard("forgery_budget_ok")
    try:
        with af.open_store(log) as store:
            report = store.verify()
            strict = store.verify(strict=True)
    finally:
        guard("forgery_budget_ok")(_budget_ok)
    assert report.ok and report.unchecked == {
        "guard 'forgery_budget_ok' (not registered in this process)": 1}
    assert not strict.ok
    assert strict.problems == ["case 'x': 1 check(s) not made: guard 'forgery_budget_ok' (not "
                               "registered in this process) (strict verification requires "
                               "every check)"]


# -- stale Case objects ---------------------------------------------------------------------


def test_stale_case_after_rolled_back_bulk_cannot_move_a_withdrawn_case(store_url: str) -> None:
    """The reported repro: a Case fired inside a bulk block that raised, then the case was
    withdrawn elsewhere; the stale object's next step is refused and nothing is stored."""
    with af.open_store(store_url) as store:
        store.create_case("medfinansiering-restbeloeb", "A", actor="tmf", on="2022-01-10",
                          data={"amount": 600_000})
        c = store.case("A")
        before = (c.state, c.version, c.history, dict(c.data))
        with pytest.raises(RuntimeError), store.bulk():
            c.fire("propose", actor="tmf", on="2022-01-12")
            raise RuntimeError("the application failed inside the block")
        assert (c.state, c.version, c.history, dict(c.data)) == before
        with af.open_store(store_url) as other:
            other.case("A").fire("withdraw", actor="tmf", on="2022-01-13")
        with pytest.raises((af.TransitionRefusedError, af.ConcurrencyError)):
            c.fire("tmu.recommend", actor="tmu", on="2022-02-07")
        with pytest.raises(af.ConcurrencyError):
            c.fire("propose", actor="tmf", on="2022-01-14")
        assert [e.trigger for e in store.case("A").history] == ["create", "withdraw"]
        assert store.verify().ok


@pytest.mark.sqlite_only  # max_pages caps a SQLite file; PostgreSQL has no such cap
def test_stale_case_after_a_bulk_that_hit_a_full_disk(db_path: Path) -> None:
    """A bulk block that fails on a full disk also puts its Case objects back."""
    with af.open_store(db_path) as store:
        store.create_case("medfinansiering-restbeloeb", "A", actor="tmf", on="2022-01-10",
                          data={"amount": 600_000})
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    with af.open_store(db_path, max_pages=pages) as small:
        c = small.case("A")
        before = (c.state, c.version, c.history)
        with pytest.raises(af.StoreError), small.bulk():
            c.fire("propose", actor="tmf", on="2022-01-12", note="x" * 9000)
            for n in range(50):
                small.create_case("medfinansiering-restbeloeb", f"filler-{n}", actor="tmf",
                                  on="2022-01-10", note="y" * 5000)
        assert (c.state, c.version, c.history) == before
    with af.open_store(db_path) as store:
        store.case("A").fire("withdraw", actor="tmf", on="2022-01-13")
        with pytest.raises((af.TransitionRefusedError, af.ConcurrencyError)):
            c.fire("tmu.recommend", actor="tmu", on="2022-02-07")
        assert [e.trigger for e in store.case("A").history] == ["create", "withdraw"]
        assert store.verify().ok


def test_copy_with_the_same_sequence_but_another_history_is_refused(store_url: str) -> None:
    """The append compares the stored head hash, not only the event number: an object
    holding an event 2 that was never stored (here forced back into that state, as a
    stale copy would be) can't write event 3 onto the stored event 2."""
    with af.open_store(store_url) as store:
        store.create_case("medfinansiering-restbeloeb", "A", actor="tmf", on="2022-01-10",
                          data={"amount": 600_000})
    with af.open_store(store_url) as one, af.open_store(store_url) as two:
        stale = one.case("A")
        with pytest.raises(RuntimeError), one.bulk():
            stale.fire("propose", actor="tmf", on="2022-01-12", note="never stored")
            unstored = stale._snapshot()
            raise RuntimeError("rolled back")
        two.case("A").fire("propose", actor="tmf", on="2022-01-12", note="stored")
        stale._restore(unstored)
        assert stale.version == 2 and stale.history[-1].note == "never stored"
        with pytest.raises(af.ConcurrencyError, match="another history"):
            stale.fire("tmu.recommend", actor="tmu", on="2022-02-07")
    with af.open_store(store_url) as store:
        assert [e.note for e in store.case("A").history] == [None, "stored"]
        assert store.verify().ok
