"""The commands that ask across cases: ``inbox``, the filters of ``cases``, ``rebuild``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import approvalflow as af
from approvalflow.cli import cli

from .conftest import approve_all

FLAGSHIP = "boligsocial-helhedsplan"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"APPROVALFLOW_DB": None})


@pytest.fixture
def many_db(tmp_path: Path, seed_data: dict[str, Any]) -> Path:
    """Four flagship cases at different stages: a draft, two submitted (one approved by
    TMU on 2021-12-06), and one approved by everyone and sent on to LBF."""
    path = tmp_path / "cases.db"
    with af.open_store(path) as store:
        store.create_case(FLAGSHIP, "a-draft", actor="tmf", on="2021-11-01",
                          data={**seed_data, "plan": "Other"})
        for name in ("b-submitted", "c-tmu"):
            case = store.create_case(FLAGSHIP, name, actor="tmf", on="2021-11-01",
                                     data=seed_data)
            case.fire("submit", actor="tmf", on="2021-11-02")
        store.case("c-tmu").fire("tmu.approve", actor="tmu", on="2021-12-06")
        late = store.create_case(FLAGSHIP, "d-lbf", actor="tmf", on="2021-11-01",
                                 data=seed_data)
        late.fire("submit", actor="tmf", on="2021-11-01")
        approve_all(late, on="2022-01-31")
        late.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    return path


def run(runner: CliRunner, db: Path, *args: str) -> Result:
    return runner.invoke(cli, ["--db", str(db), *args], catch_exceptions=False)


def ids(result: Result) -> list[str]:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    value = json.loads(result.stdout)
    rows = value["cases"] if isinstance(value, dict) else value
    return [r["case_id"] for r in rows]


def test_inbox_lists_the_cases_and_steps(runner: CliRunner, many_db: Path) -> None:
    """inbox ACTOR prints each case the actor may act on, with the steps; --json too."""
    result = run(runner, many_db, "inbox", "tmu", "--on", "2022-01-10")
    assert result.exit_code == 0, result.stderr
    assert "b-submitted" in result.stdout and "tmu.approve" in result.stdout
    assert "c-tmu" not in result.stdout
    assert "1 case awaits tmu on 2022-01-10." in result.stdout
    result = run(runner, many_db, "inbox", "tmu", "--on", "2022-01-10", "--json")
    doc = json.loads(result.stdout)
    assert [d["case_id"] for d in doc] == ["b-submitted"]
    assert doc[0]["triggers"] == ["tmu.approve", "tmu.reject", "tmu.send_back"]
    assert doc[0]["last_on"] == "2021-11-02"
    result = run(runner, many_db, "inbox", "lbf", "--on", "2022-02-10", "--json")
    assert [d["case_id"] for d in json.loads(result.stdout)] == ["d-lbf"]


def test_inbox_before_the_last_event_and_for_an_unknown_actor(runner: CliRunner,
                                                              many_db: Path) -> None:
    """Nothing awaits anyone before a case's last event; an unknown actor is one Error line."""
    result = run(runner, many_db, "inbox", "tmu", "--on", "2021-10-01")
    assert result.exit_code == 0
    assert result.stdout.strip() == "Nothing awaits tmu on 2021-10-01."
    result = run(runner, many_db, "inbox", "nobody")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'nobody' is not an actor" in errors[0]


def test_cases_filters(runner: CliRunner, many_db: Path) -> None:
    """--awaiting, --open/--final, --data, --since/--until and --overdue keep the cases
    that match, as JSON lists."""
    assert ids(run(runner, many_db, "cases", "--awaiting", "tmu", "--on", "2022-01-10",
                   "--json")) == ["b-submitted"]
    assert ids(run(runner, many_db, "cases", "--awaiting", "tmf", "--on", "2022-01-10",
                   "--json")) == ["a-draft"]
    assert ids(run(runner, many_db, "cases", "--open", "--json")) == [
        "a-draft", "b-submitted", "c-tmu", "d-lbf"]
    assert ids(run(runner, many_db, "cases", "--final", "--json")) == []
    assert ids(run(runner, many_db, "cases", "--data", "plan=Other", "--json")) == ["a-draft"]
    assert ids(run(runner, many_db, "cases", "--data", "budget.total=4000000", "--data",
                   "plan=Nørrebrobyggerne", "--json")) == ["b-submitted", "c-tmu", "d-lbf"]
    assert ids(run(runner, many_db, "cases", "--since", "2021-11-02", "--until",
                   "2021-12-31", "--json")) == ["b-submitted", "c-tmu"]
    # the LBF grant is due by data:expires (2022-02-28) in every open case
    assert ids(run(runner, many_db, "cases", "--overdue", "--on", "2022-03-01",
                   "--json")) == ["a-draft", "b-submitted", "c-tmu", "d-lbf"]
    assert ids(run(runner, many_db, "cases", "--overdue", "--data", "plan=Other", "--on",
                   "2022-03-01", "--json")) == ["a-draft"]
    assert ids(run(runner, many_db, "cases", "--overdue", "--on", "2022-02-10",
                   "--json")) == []


def test_cases_pages_with_a_total(runner: CliRunner, many_db: Path) -> None:
    """--limit and --offset give a page and the total, in text and as a JSON object."""
    result = run(runner, many_db, "cases", "--limit", "2", "--offset", "1", "--json")
    doc = json.loads(result.stdout)
    assert (doc["total"], doc["offset"], doc["limit"]) == (4, 1, 2)
    assert [c["case_id"] for c in doc["cases"]] == ["b-submitted", "c-tmu"]
    result = run(runner, many_db, "cases", "--open", "--limit", "1")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "Cases 1-1 of 4."
    result = run(runner, many_db, "cases", "--offset", "9")
    assert result.stdout.strip() == "No cases here; 4 in all."
    result = run(runner, many_db, "cases", "--data", "plan")
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr


def test_rebuild_restores_a_tampered_table(runner: CliRunner, many_db: Path) -> None:
    """verify fails on an edited projection row, naming case and table; rebuild (--json)
    recomputes the tables and verify passes again."""
    conn = sqlite3.connect(many_db)
    conn.execute("DELETE FROM case_awaiting WHERE case_id = 'b-submitted' AND actor = 'tmu'")
    conn.commit()
    conn.close()
    assert ids(run(runner, many_db, "cases", "--awaiting", "tmu", "--on", "2022-01-10",
                   "--json")) == []
    result = run(runner, many_db, "verify")
    assert result.exit_code == 1
    assert "case 'b-submitted': the case_awaiting table differs" in result.stdout
    result = run(runner, many_db, "rebuild", "--json")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["cases"] == 4 and counts["case_data"] == 4 and counts["case_awaiting"] > 0
    assert run(runner, many_db, "verify").exit_code == 0
    assert ids(run(runner, many_db, "cases", "--awaiting", "tmu", "--on", "2022-01-10",
                   "--json")) == ["b-submitted"]
    result = run(runner, many_db, "rebuild")
    assert result.stdout.startswith("Rebuilt the projections of 4 cases (rows: case_awaiting ")


def test_cases_data_given_twice_is_not_dropped(runner: CliRunner, many_db: Path) -> None:
    """--data with one key twice and two values is refused, not narrowed to the last value."""
    result = run(runner, many_db, "cases", "--data", "plan=Other", "--data",
                 "plan=Nørrebrobyggerne", "--json")
    assert result.exit_code == 2 and "given twice" in result.stderr, result.stdout
    assert ids(run(runner, many_db, "cases", "--data", "plan=Other", "--data", "plan=Other",
                   "--json")) == ["a-draft"]
