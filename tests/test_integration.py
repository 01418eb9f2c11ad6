"""Living inside other applications: stored workflows by name, steps nobody is awaited
for, every problem of a file at once, and command-line messages without Python advice."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.cli import cli
from approvalflow.views.html import _standing_html
from tests import grant_guards  # noqa: F401  (registers the research grant's guard)

ROOT = Path(__file__).resolve().parents[1]
GRANT = ROOT / "tests" / "fixtures" / "research-grant.toml"
CONSOLE = Path(sys.executable).with_name("approvalflow")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


# -- create_case by the name of a stored workflow -------------------------------------------


def test_create_case_by_stored_name_takes_the_latest_version(store: af.Store) -> None:
    """A workflow stored in the store is found by name (its latest version), or by name and
    version=; bundled names and paths still work."""
    v1 = af.load_workflow(GRANT)
    v2 = af.loads_workflow(GRANT.read_text(encoding="utf-8").replace("version = 1",
                                                                     "version = 2", 1))
    store.create_case(v1, "a", actor="applicant", on="2024-01-02")
    store.create_case(v2, "b", actor="applicant", on="2024-01-02")
    latest = store.create_case("research-grant", "c", actor="applicant", on="2024-01-02")
    assert (latest.workflow, latest.workflow_version) == ("research-grant", 2)
    older = store.create_case("research-grant", "d", actor="applicant", on="2024-01-02",
                              version=1)
    assert older.workflow_version == 1 and older.definition.digest == v1.digest
    assert store.create_case("medfinansiering-restbeloeb", "e", actor="tmf",
                             on="2024-01-02").workflow == "medfinansiering-restbeloeb"
    assert store.workflow_names() == ["medfinansiering-restbeloeb", "research-grant"]


def test_unknown_workflow_name_says_where_it_looked(store: af.Store) -> None:
    """A name that is not bundled, not a file and not stored: the error lists what is
    stored; a version the store does not have is named."""
    store.create_case(af.load_workflow(GRANT), "a", actor="applicant", on="2024-01-02")
    with pytest.raises(af.DefinitionError, match=r"There is no workflow 'reserch-grant'.*"
                                                 r"stored: research-grant"):
        store.create_case("reserch-grant", "b", actor="applicant")
    with pytest.raises(af.StoreError, match="'research-grant' version 9 is not in"):
        store.create_case("research-grant", "b", actor="applicant", version=9)


def test_cli_new_by_stored_workflow_name(tmp_path: Path) -> None:
    """approvalflow new takes the name of a workflow stored in the database."""
    db = str(tmp_path / "g.db")
    guards = ("--guards", "tests.grant_guards")
    assert run(*guards, "--db", db, "new", str(GRANT), "a", "--actor",
               "applicant").returncode == 0
    done = run(*guards, "--db", db, "new", "research-grant", "b", "--actor", "applicant")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Created case 'b' on research-grant v1")
    missing = run(*guards, "--db", str(tmp_path / "none.db"), "new", "research-grant", "c",
                  "--actor", "applicant")
    assert missing.returncode == 1 and "no bundled workflow 'research-grant'" in missing.stderr
    assert not (tmp_path / "none.db").exists()


# -- awaited = false ------------------------------------------------------------------------


def test_a_step_not_awaited_is_allowed_but_nobody_awaits_it(store: af.Store) -> None:
    """withdraw (awaited = false) may be taken, but the applicant is not awaited for it: not
    in awaiting(), regions(), the forecast's holding-up list, or show; permitted() has it."""
    case = store.create_case(af.load_workflow(GRANT), "g", actor="applicant",
                             on="2024-01-02", data={"budget": 5})
    case.fire("submit", actor="applicant", on="2024-01-03", by="ann")
    assert "applicant" not in case.awaiting()
    assert case.permitted()["applicant"] == ["withdraw"]
    assert case.allowed(actor="applicant") == ["withdraw"]
    assert all("applicant" not in r.awaiting for r in case.regions())
    standing = _standing_html(case)  # the regions table of the case's HTML
    assert "awaiting" in standing and "finance" in standing and "applicant" not in standing
    case.fire("withdraw", actor="applicant", on="2024-01-04")
    assert case.state == {"withdrawn"}


SHORTCUT = """
[workflow]
name = "shortcut"
version = 1
initial = "draft"
goal = "done"

[actors]
author = "Author"
reviewer = "Reviewer"
director = "Director"

[states.draft]
[states.review]
[states.done]
final = true

[[transitions]]
trigger = "submit"
source = "draft"
target = "review"
actors = ["author"]

[[transitions]]
trigger = "approve"
source = "review"
target = "done"
actors = ["reviewer"]

[[transitions]]
trigger = "overrule"
source = "draft"
target = "done"
actors = ["director"]
awaited = AWAITED
"""


@pytest.mark.parametrize("awaited", [True, False])
def test_forecast_plans_no_route_through_a_step_not_awaited(store: af.Store,
                                                            awaited: bool) -> None:
    """A shortcut to the goal that nobody waits for (awaited = false) is not the forecast's
    route: the author is holding the case up, not the director; marked awaited, the
    one-step shortcut is the route."""
    wf = af.loads_workflow(SHORTCUT.replace("AWAITED", str(awaited).lower()))
    case = store.create_case(wf, f"s-{awaited}", actor="author", on="2024-01-02")
    forecast = case.forecast(on="2024-01-02")
    holding = sorted(p.actor for p in forecast.holding_up)
    assert holding == (["director"] if awaited else ["author"])
    assert [s.step for s in forecast.steps] == (["overrule"] if awaited else
                                                ["submit", "approve"])
    assert ("director" in case.awaiting()) is awaited
    assert case.permitted()["director"] == ["overrule"]


def test_show_lists_a_step_not_awaited_as_allowed_only(tmp_path: Path) -> None:
    """show: the applicant is not under 'Awaited', but withdraw is under 'Allowed'."""
    db = str(tmp_path / "g.db")
    run("--guards", "tests.grant_guards", "--db", db, "new", str(GRANT), "g", "--actor",
        "applicant", "--on", "2024-01-02", "--data", '{"budget": 5}')
    run("--db", db, "fire", "g", "submit", "--actor", "applicant", "--on", "2024-01-03",
        "--by", "ann")
    shown = run("--guards", "tests.grant_guards", "--db", db, "show", "g", "--on",
                "2024-01-04")
    assert shown.returncode == 0, shown.stderr
    awaited = shown.stdout.split("Awaited on")[1].split("\n\n")[0]
    allowed = shown.stdout.split("Allowed on")[1].split("\n\n")[0]
    assert "applicant" not in awaited and "finance" in awaited
    assert "withdraw by applicant" in allowed


def test_awaited_must_be_a_boolean() -> None:
    """awaited = "no" is refused as a value of the wrong type."""
    text = GRANT.read_text(encoding="utf-8").replace("awaited = false", 'awaited = "no"', 1)
    with pytest.raises(af.DefinitionError, match="awaited"):
        af.loads_workflow(text)


# -- every problem at once ------------------------------------------------------------------


def test_check_lists_unregistered_guards_with_every_other_problem(tmp_path: Path) -> None:
    """A file with an unregistered guard and an unreachable state: check prints both at
    once (it used to stop at the guard)."""
    text = GRANT.read_text(encoding="utf-8").replace('"grant_budget_ok"', '"nobody_has_this"')
    text += '\n[states.orphan]\nlabel = "Never reached"\n'
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    done = run("check", str(path))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert any("guard 'nobody_has_this' is not registered" in line for line in lines), lines
    assert any("orphan" in line and "unreachable" in line for line in lines), lines
    assert all(line.startswith(f"Error: {path}: ") for line in lines)


# -- CLI messages speak of CLI commands -----------------------------------------------------

PYTHON_ADVICE = re.compile(r"store\.\w+\(|@approvalflow|open_store\(|approvalflow\.\w+\(")


def test_cli_errors_give_no_python_advice(tmp_path: Path) -> None:
    """A case id in use, a guard not registered at fire, a workflow with an unregistered
    guard: each error speaks of commands and options, not of Python calls."""
    db = str(tmp_path / "g.db")
    assert run("--db", db, "new", "medfinansiering-restbeloeb", "a", "--actor",
               "tmf").returncode == 0
    again = run("--db", db, "new", "medfinansiering-restbeloeb", "a", "--actor", "tmf")
    assert again.returncode == 1 and "'approvalflow show a'" in again.stderr
    run("--guards", "tests.grant_guards", "--db", db, "new", str(GRANT), "g", "--actor",
        "applicant")
    run("--db", db, "fire", "g", "submit", "--actor", "applicant", "--by", "ann")
    fired = run("--db", db, "fire", "g", "finance.ok", "--actor", "finance", "--by", "kim")
    assert fired.returncode == 1 and "--guards MODULE" in fired.stderr
    checked = run("check", str(GRANT))
    for done in (again, fired, checked):
        assert not PYTHON_ADVICE.search(done.stderr), done.stderr


def test_every_option_is_documented() -> None:
    """docs/cli.md names every option of the command group and of every command."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = []
    for name, command in [("approvalflow", cli), *cli.commands.items()]:
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in ("--help", "--json", "--version") \
                        and f"`{opt}" not in text:
                    missing.append(f"{name} {opt}")
    assert not missing, f"options not in docs/cli.md: {missing}"
