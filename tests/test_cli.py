"""The approvalflow command: every command, every error path, exit codes and key lines."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result

import approvalflow as af
from approvalflow.cli import cli

from .conftest import approve_all

FLAGSHIP = "boligsocial-helhedsplan"
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"APPROVALFLOW_DB": None})


@pytest.fixture
def case_db(tmp_path: Path, seed_data: dict[str, Any]) -> Path:
    """The Mimerskvarteret case after TMU's meeting: TMU and AAB have approved (4 events)."""
    path = tmp_path / "cases.db"
    with af.open_store(path) as store:
        case = store.create_case(FLAGSHIP, "mimerskvarteret", actor="tmf", on="2021-12-06",
                                 data=seed_data, note="Indstilling fra forvaltningen.")
        case.fire("submit", actor="tmf", on="2021-12-06",
                  note="Forelagt Teknik- og Miljøudvalget og beboerdemokratiet.")
        case.fire("aab.approve", actor="aab", on="2021-12-06",
                  data={"dates": {"aab.approve": {"decided_on": "unknown"}}})
        case.fire("tmu.approve", actor="tmu", on="2021-12-06")
    return path


def run(runner: CliRunner, db: Path | None, *args: str, **kwargs: Any) -> Result:
    argv = (["--db", str(db)] if db is not None else []) + list(args)
    return runner.invoke(cli, argv, catch_exceptions=False, **kwargs)


def one_error(result: Result, code: int = 1) -> str:
    """The single 'Error: ...' line of a failed command (and no traceback)."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return errors[0]


def db_bytes(path: Path) -> bytes:
    return path.read_bytes()


# --------------------------------------------------------------------------- the group


def test_help_lists_every_command(runner: CliRunner) -> None:
    """--help exits 0 and names each command of the issue."""
    result = run(runner, None, "--help")
    assert result.exit_code == 0
    for name in ("workflows", "check", "diagram", "new", "fire", "cases", "show", "history",
                 "allowed", "verify", "heads", "demo"):
        assert re.search(rf"^  {name}\b", result.stdout, re.M), name


def test_unknown_command_is_a_usage_error(runner: CliRunner) -> None:
    """An unknown command exits 2 with one Error line naming it."""
    line = one_error(run(runner, None, "frobnicate"), code=2)
    assert "frobnicate" in line


def test_cli_module_defers_the_heavy_imports() -> None:
    """Importing the CLI loads neither the demo, the diagrams nor the HTML layer."""
    code = ("import sys, approvalflow.cli; "
            "print(sorted(m for m in ('approvalflow.demo', 'approvalflow.views.diagram', "
            "'approvalflow.views.html', 'approvalflow.rules') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- workflows, check


def test_workflows_lists_the_bundled_ones(runner: CliRunner) -> None:
    """Each bundled workflow is listed with its version and title, as text and as JSON."""
    result = run(runner, None, "workflows")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"{FLAGSHIP}     v3  Housing-social plan")
    rows = json.loads(run(runner, None, "workflows", "--json").stdout)
    assert [r["name"] for r in rows] == af.bundled_workflows()
    assert rows[0] == {"name": FLAGSHIP, "version": 3, "title": af.load_workflow(FLAGSHIP).title,
                       "label": "Boligsocial helhedsplan"}


def test_check_accepts_bundled_names_and_files(runner: CliRunner) -> None:
    """A sound workflow, by name or by path, gets one 'ok:' line and exit 0."""
    path = ROOT / "workflows" / "medfinansiering-restbeloeb.toml"
    result = run(runner, None, "check", FLAGSHIP, str(path))
    assert result.exit_code == 0
    flagship, rest = af.load_workflow(FLAGSHIP), af.load_workflow(path)
    assert result.stdout.splitlines() == [
        f"ok: {FLAGSHIP}: {FLAGSHIP} v3, {len(flagship.state_defs)} states, "
        f"{len(flagship.transitions)} transitions",
        f"ok: {path}: medfinansiering-restbeloeb v1, {len(rest.state_defs)} states, "
        f"{len(rest.transitions)} transitions",
    ]


UNSOUND = """
[workflow]
name = "broken"
version = 1
initial = "a"

[actors]
x = "X"

[states.a]
[states.b]
final = true

[[transitions]]
trigger = "go"
source = "a"
target = "nowhere"
actors = ["x"]

[[transitions]]
trigger = "stop"
source = "a"
target = "b"
actors = ["nobody"]
"""


def test_check_prints_one_error_line_per_problem(runner: CliRunner, tmp_path: Path) -> None:
    """An unsound file gives one 'Error:' line per problem, each naming the file; exit 1."""
    bad = tmp_path / "broken.toml"
    bad.write_text(UNSOUND, encoding="utf-8")
    result = run(runner, None, "check", FLAGSHIP, str(bad))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"ok: {FLAGSHIP}")
    errors = result.stderr.splitlines()
    assert len(errors) >= 2
    assert all(line.startswith(f"Error: {bad}: ") for line in errors)
    assert any("'nowhere'" in line for line in errors)
    assert any("'nobody'" in line for line in errors)


@pytest.mark.parametrize("explore", [[], ["--explore"]])
def test_a_file_name_with_a_line_break_stays_on_its_line(runner: CliRunner, tmp_path: Path,
                                                         explore: list[str]) -> None:
    """check, new and diagram on a file named 'x\\nError: spoof.toml': each problem is one
    Error line (it was two, the second a made-up 'Error: spoof.toml: ...'), and the ok line
    of a sound file so named is one line."""
    bad = tmp_path / "x\nError: spoof.toml"
    bad.write_text(UNSOUND, encoding="utf-8")
    good = tmp_path / "ok\nname.toml"
    good.write_text((ROOT / "workflows" / f"{FLAGSHIP}.toml").read_text(encoding="utf-8"),
                    encoding="utf-8")
    checked = run(runner, None, "check", *explore, str(good), str(bad))
    assert checked.exit_code == 1
    errors = checked.stderr.rstrip("\n").split("\n")
    assert len(errors) >= 2 and all(line.startswith(f"Error: {tmp_path}/x\\nError: spoof.toml: ")
                                    for line in errors), checked.stderr
    assert checked.stdout.startswith(f"{tmp_path}/ok\\nname.toml: " if explore else
                                     f"ok: {tmp_path}/ok\\nname.toml: {FLAGSHIP} v")
    for args in (["new", str(bad), "c", "--actor", "tmf"], ["diagram", str(bad)]):
        failed = run(runner, tmp_path / "cases.db", *args)
        assert failed.exit_code == 1
        assert failed.stderr.count("\n") == len(errors), failed.stderr
        assert "\nError: spoof" not in failed.stderr


@pytest.mark.parametrize("content", [b"not = [valid", b"\xff\xfe bytes"])
def test_check_refuses_unreadable_files(runner: CliRunner, tmp_path: Path,
                                        content: bytes) -> None:
    """Broken TOML or non-UTF-8 bytes give one Error line and exit 1."""
    bad = tmp_path / "bad.toml"
    bad.write_bytes(content)
    line = one_error(run(runner, None, "check", str(bad)))
    assert line.startswith(f"Error: {bad}: ")


def test_check_unknown_name_lists_the_bundled_ones(runner: CliRunner) -> None:
    """An unknown workflow name is refused with the names that exist."""
    line = one_error(run(runner, None, "check", "nope"))
    assert "'nope'" in line and FLAGSHIP in line


# --------------------------------------------------------------------------- new


def test_new_creates_the_database_and_the_case(runner: CliRunner, tmp_path: Path) -> None:
    """'new' creates the file, records the case, and says what may happen next."""
    db = tmp_path / "new.db"
    result = run(runner, db, "new", FLAGSHIP, "c1", "--actor", "tmf", "--on", "2021-10-01",
                 "--data", '{"title": "T"}', "--note", "first")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Created case 'c1' on {FLAGSHIP} v3, 2021-10-01, in draft, old_running.",
        "Allowed now: submit (by tmf).",
    ]
    with af.open_store(db, create=False) as store:
        case = store.case("c1")
        assert case.data["title"] == "T" and case.history[0].note == "first"


def test_new_reads_data_from_a_file(runner: CliRunner, tmp_path: Path) -> None:
    """--data @FILE reads the JSON object from the file."""
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"budget": {"total": 4}, "title": "Æblegård"}), encoding="utf-8")
    db = tmp_path / "new.db"
    result = run(runner, db, "new", FLAGSHIP, "c1", "--actor", "tmf", "--data", f"@{data}")
    assert result.exit_code == 0, result.stderr
    with af.open_store(db, create=False) as store:
        assert store.case("c1").data["title"] == "Æblegård"


def test_new_accepts_a_workflow_file_without_toml_suffix(runner: CliRunner,
                                                         tmp_path: Path) -> None:
    """WORKFLOW may be the path of an existing file, whatever its name."""
    source = ROOT / "workflows" / "medfinansiering-restbeloeb.toml"
    copy = tmp_path / "myflow"
    copy.write_bytes(source.read_bytes())
    result = run(runner, tmp_path / "n.db", "new", str(copy), "c1", "--actor", "tmf")
    assert result.exit_code == 0, result.stderr
    assert "on medfinansiering-restbeloeb v1" in result.stdout


@pytest.mark.parametrize(("args", "expected", "code"), [
    (["--actor", "nobody"], "'nobody' is not an actor of workflow", 1),
    (["--actor", "tmf", "--data", '{"x": 1e999}'], "data['x'] is inf", 2),  # bad --data
])
def test_failed_new_leaves_no_database(runner: CliRunner, tmp_path: Path, args: list[str],
                                       expected: str, code: int) -> None:
    """A refused 'new' on a missing file leaves no file behind."""
    db = tmp_path / "new.db"
    line = one_error(run(runner, db, "new", FLAGSHIP, "c1", *args), code)
    assert expected in line
    assert list(tmp_path.iterdir()) == []


def test_new_unknown_workflow_touches_nothing(runner: CliRunner, tmp_path: Path) -> None:
    """An unknown workflow is refused before any database is opened."""
    line = one_error(run(runner, tmp_path / "new.db", "new", "nope", "c1", "--actor", "tmf"))
    assert "There is no bundled workflow 'nope'" in line
    assert list(tmp_path.iterdir()) == []


def test_new_refuses_an_existing_case(runner: CliRunner, case_db: Path) -> None:
    """Creating a case whose id is taken exits 1 and leaves the file as it was."""
    before = db_bytes(case_db)
    line = one_error(run(runner, case_db, "new", FLAGSHIP, "mimerskvarteret", "--actor", "tmf"))
    assert line.startswith("Error: Case 'mimerskvarteret' already exists")
    assert db_bytes(case_db) == before


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("value", ["2022-02-30", "2021-1-1", "20211206", "tomorrow",
                                   "2021-12-06T10:00"])
def test_dates_must_be_iso_days(runner: CliRunner, case_db: Path, value: str) -> None:
    """A date that is not a real YYYY-MM-DD is a usage error (exit 2) naming the value."""
    before = db_bytes(case_db)
    result = run(runner, case_db, "fire", "mimerskvarteret", "3b.approve", "--actor", "3b",
                 "--on", value)
    line = one_error(result, code=2)
    assert f"Invalid value for '--on': {value!r} is not a real date" in line
    assert db_bytes(case_db) == before


@pytest.mark.parametrize(("data", "expected"), [
    ("{bad", "the value is not valid JSON"),
    ("[1, 2]", "the value is a JSON list, not an object"),
    ('{"a": NaN}', "NaN is not a JSON value"),
    ("@/nonexistent/data.json", "can't read the file '/nonexistent/data.json'"),
    ("[" * 100_000, "nested too deeply"),
])
def test_bad_data_is_a_usage_error(runner: CliRunner, case_db: Path, data: str,
                                   expected: str) -> None:
    """--data that is not a JSON object (or an unreadable @file) exits 2 and writes nothing."""
    before = db_bytes(case_db)
    result = run(runner, case_db, "fire", "mimerskvarteret", "3b.approve", "--actor", "3b",
                 "--data", data)
    line = one_error(result, code=2)
    assert "Invalid value for '--data'" in line and expected in line
    assert db_bytes(case_db) == before


def test_data_file_must_be_utf8(runner: CliRunner, case_db: Path, tmp_path: Path) -> None:
    """An @file that is not UTF-8 is a usage error saying where the bad byte is."""
    bad = tmp_path / "d.json"
    bad.write_bytes(b'{"a": "\xff"}')
    line = one_error(run(runner, case_db, "fire", "mimerskvarteret", "3b.approve", "--actor",
                         "3b", "--data", f"@{bad}"), code=2)
    assert "is not UTF-8 text (bad byte at offset 7)" in line


# --------------------------------------------------------------------------- fire


def test_fire_records_the_step(runner: CliRunner, case_db: Path) -> None:
    """A step that may be taken is recorded; the output says what moved and what is next."""
    result = run(runner, case_db, "fire", "mimerskvarteret", "3b.approve", "--actor", "3b",
                 "--on", "2021-12-10", "--note", "afdelingsmøde")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("Case 'mimerskvarteret' event 5: 3b.approve by 3b on 2021-12-10: "
                        "left 3b_pending,")
    assert lines[1] == "  now in 3b_approved."
    assert lines[2].startswith("Allowed now: vibo.approve (by vibo_afd_1, ")
    with af.open_store(case_db, create=False) as store:
        event = store.case("mimerskvarteret").history[-1]
    assert (event.trigger, event.note, event.on.isoformat()) == ("3b.approve", "afdelingsmøde",
                                                                 "2021-12-10")


def test_fire_a_ballot_that_does_not_decide(runner: CliRunner, case_db: Path) -> None:
    """One VIBO department's yes is recorded as a ballot; the vote goes on."""
    result = run(runner, case_db, "fire", "mimerskvarteret", "vibo.approve", "--actor",
                 "vibo_afd_1", "--on", "2022-01-10")
    assert result.exit_code == 0, result.stderr
    assert "ballot recorded; the vote goes on." in result.stdout.replace("\n  ", " ")


def test_refused_fire_says_why_and_what_is_allowed(runner: CliRunner, case_db: Path) -> None:
    """A refused step exits 1 with one line: the reasons and the steps allowed now; no write."""
    before = db_bytes(case_db)
    result = run(runner, case_db, "fire", "mimerskvarteret", "send_to_lbf", "--actor", "tmf",
                 "--on", "2021-12-07")
    line = one_error(result)
    assert line.startswith("Error: Can't fire 'send_to_lbf' on case 'mimerskvarteret' by "
                           "'tmf': waiting for '3b'")
    assert "Allowed now: 3b.approve (by 3b); 3b.reject (by 3b); vibo.approve (by " in line
    assert result.stdout == ""
    assert db_bytes(case_db) == before
    assert not Path(f"{case_db}-wal").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["bogus", "--actor", "tmf"], "'bogus' is not a step of workflow"),
    (["3b.approve", "--actor", "tmu"], "'tmu' may not take '3b.approve'; only '3b' may"),
    (["3b.approve", "--actor", "3b", "--on", "2021-01-01"], "dates may not go backwards"),
    (["3b.approve", "--actor", "\udcff"], "actor '\\udcff' is not valid Unicode text"),
    (["3b.approve", "--actor", "3b", "--note", "\udcff"], "note '\\udcff' is not valid"),
])
def test_refused_fire_variants(runner: CliRunner, case_db: Path, args: list[str],
                               expected: str) -> None:
    """Each kind of refusal (and hostile text) exits 1 with one Error line and no write."""
    before = db_bytes(case_db)
    line = one_error(run(runner, case_db, "fire", "mimerskvarteret", *args))
    assert expected in line
    assert db_bytes(case_db) == before


def ended_case(tmp_path: Path) -> Path:
    """A database with case 'c', which TMU rejected: it has ended."""
    db = tmp_path / "x.db"
    with af.open_store(db) as store:
        case = store.create_case(FLAGSHIP, "c", actor="tmf", on="2021-11-01")
        case.fire("submit", actor="tmf", on="2021-11-01")
        case.fire("tmu.reject", actor="tmu", on="2021-11-02")
    return db


def test_fire_on_an_ended_case(runner: CliRunner, tmp_path: Path) -> None:
    """A step on a case that has ended says so, and that nothing more can happen."""
    db = ended_case(tmp_path)
    line = one_error(run(runner, db, "fire", "c", "resubmit", "--actor", "tmf"))
    assert "the case has ended in final state 'rejected'" in line
    assert line.endswith("The case has ended; nothing more can happen.")


def test_fire_unknown_case_lists_the_cases(runner: CliRunner, case_db: Path) -> None:
    """An unknown case id exits 1 and names the cases there are."""
    line = one_error(run(runner, case_db, "fire", "nope", "submit", "--actor", "tmf"))
    assert line == f"Error: There is no case 'nope' in {str(case_db)!r}; cases: 'mimerskvarteret'."


def test_fire_with_a_key_twice_records_once(runner: CliRunner, case_db: Path) -> None:
    """A retried fire with the same --key records nothing new and says so."""
    args = ("fire", "mimerskvarteret", "3b.approve", "--actor", "3b", "--on", "2021-12-10",
            "--key", "k-1")
    assert run(runner, case_db, *args).exit_code == 0
    again = run(runner, case_db, *args)
    assert again.exit_code == 0
    assert again.stdout == "Already recorded as event 5 (key 'k-1'); nothing new.\n"
    with af.open_store(case_db, create=False) as store:
        assert store.case("mimerskvarteret").version == 5


def test_fire_never_creates_a_database(runner: CliRunner, tmp_path: Path) -> None:
    """'fire' on a missing file is an error and leaves no file behind."""
    db = tmp_path / "none.db"
    line = one_error(run(runner, db, "fire", "c", "submit", "--actor", "tmf"))
    assert line.startswith(f"Error: There is no database at {str(db)!r}")
    assert not db.exists()


# --------------------------------------------------------------------------- cases


def test_cases_lists_each_case(runner: CliRunner, case_db: Path) -> None:
    """'cases' prints one line per case and its active states."""
    result = run(runner, case_db, "cases")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"mimerskvarteret  {FLAGSHIP} v3  4 events, last 2021-12-06",
        "    state: 3b_pending, aab_approved, old_running, tmu_approved, vibo_voting",
    ]


def test_cases_json_and_filters(runner: CliRunner, case_db: Path) -> None:
    """--json lists objects with case_id, workflow and state; --workflow and --state filter."""
    with af.open_store(case_db) as store:
        store.create_case("medfinansiering-restbeloeb", "rest", actor="tmf", on="2021-12-01")
    rows = json.loads(run(runner, case_db, "cases", "--json").stdout)
    assert [r["case_id"] for r in rows] == ["mimerskvarteret", "rest"]
    assert rows[0]["workflow"] == FLAGSHIP
    assert rows[0]["state"] == ["3b_pending", "aab_approved", "old_running", "tmu_approved",
                                "vibo_voting"]
    assert set(rows[0]) >= {"case_id", "workflow", "workflow_version", "state", "version",
                            "last_on", "is_final", "updated_at"}
    only = json.loads(run(runner, case_db, "cases", "--workflow", FLAGSHIP, "--json").stdout)
    assert [r["case_id"] for r in only] == ["mimerskvarteret"]
    composite = json.loads(run(runner, case_db, "cases", "--state", "approval", "--json").stdout)
    assert [r["case_id"] for r in composite] == ["mimerskvarteret"]
    none = run(runner, case_db, "cases", "--state", "started")
    assert (none.exit_code, none.stdout) == (0, "No cases.\n")


# --------------------------------------------------------------------------- show


def test_show_is_readable_at_80_columns(runner: CliRunner, case_db: Path) -> None:
    """'show' names the workflow, each region's state (label and id), who decided, who is
    awaited, the steps allowed and the last events, in lines of at most 80 characters."""
    result = run(runner, case_db, "show", "mimerskvarteret", "--on", "2021-12-07")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == ("Case 'mimerskvarteret': Videreførelse af boligsocial indsats i "
                        "Mimerskvarteret,")
    assert f"Workflow: {FLAGSHIP} v3 (Boligsocial helhedsplan)" in lines
    for expected in [
        "  Teknik- og Miljøudvalget [committee]",
        "    Godkendt af udvalget; kommunen støtter op om indsatsens fire målsætninger",
        "      [tmu_approved], done",
        "    decided by tmu on 2021-12-06 (tmu.approve, event 4)",
        "    Afventer 3B's afdelingsmøde [3b_pending]",
        "    awaited: 3b (3b.approve, 3b.reject)",
        "  2021-12-06  aab (AAB's afdelingsmøde): aab.approve (exact date unknown)",
        "Awaited on 2021-12-07",
        "  vibo_afd_4 (VIBO, afdeling 4's afdelingsmøde)",
        "  VIBO-afdelingernes afdelingsmøder [vibo]: 0 yes of 4 needed",
        "Allowed on 2021-12-07",
        "  3b.approve by 3b: 3B's afdelingsmøde godkender",
        "Events (4 of 4; all: approvalflow history mimerskvarteret)",
        "    4  2021-12-06  tmu.approve by tmu",
    ]:
        assert expected in lines, expected
    sections = [line for line in lines if line and not line.startswith(" ")]
    mine = ["Regions", "Decided", "Awaited on 2021-12-07", "Open votes", "Allowed on 2021-12-07",
            "Events (4 of 4; all: approvalflow history mimerskvarteret)"]
    assert [title for title in sections if title in mine] == mine  # in this order
    assert sections[-1] == mine[-1]


def test_long_ids_still_fit_80_columns(runner: CliRunner, tmp_path: Path) -> None:
    """A 150-character case id wraps: no line of cases, show, history or allowed passes 80."""
    db, long_id = tmp_path / "x.db", "x" * 150
    with af.open_store(db) as store:
        store.create_case("medfinansiering-restbeloeb", long_id, actor="tmf", on="2021-11-01")
        store.create_case("medfinansiering-restbeloeb", "short", actor="tmf", on="2021-11-01")
    for args in (["cases"], ["show", long_id], ["history", long_id], ["allowed", long_id]):
        result = run(runner, db, *args)
        assert result.exit_code == 0, result.stderr
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, args


def test_show_lists_ballots_and_only_the_last_events(runner: CliRunner, case_db: Path) -> None:
    """After ballots, 'show' lists each ballot and the voters not yet heard; 5 last events."""
    with af.open_store(case_db) as store:
        case = store.case("mimerskvarteret")
        case.fire("vibo.approve", actor="vibo_afd_2", on="2022-01-10")
        case.fire("vibo.withdraw", actor="vibo_afd_3", on="2022-01-11")
    lines = run(runner, case_db, "show", "mimerskvarteret", "--on", "2022-01-12").stdout
    lines = lines.splitlines()
    assert "  VIBO-afdelingernes afdelingsmøder [vibo]: 1 yes of 3 needed" in lines
    assert "    vibo_afd_2: yes" in lines and "    vibo_afd_3: withdrew" in lines
    assert "    not yet voted: vibo_afd_1, vibo_afd_4" in lines
    assert "Last events (5 of 6; all: approvalflow history mimerskvarteret)" in lines


def test_show_json_is_the_documented_object(runner: CliRunner, case_db: Path) -> None:
    """--json gives case_id, workflow, state, history (every Event field) and the sections."""
    result = run(runner, case_db, "show", "mimerskvarteret", "--json", "--on", "2021-12-07")
    doc = json.loads(result.stdout)
    keys = ["case_id", "workflow", "workflow_version", "workflow_title", "workflow_label",
            "title", "state", "version", "last_on", "is_final", "as_of", "on", "regions",
            "decided", "awaited", "votes", "allowed", "history"]
    assert [k for k in doc if k in keys] == keys  # in this order; later parts may add keys
    assert list(doc)[:12] == keys[:12] and list(doc)[-1] == "history"
    assert doc["state"] == ["3b_pending", "aab_approved", "old_running", "tmu_approved",
                            "vibo_voting"]
    assert (doc["version"], doc["as_of"], doc["on"]) == (4, None, "2021-12-07")
    regions = {r["id"]: r for r in doc["regions"]}
    committee = regions["committee"]
    assert committee == {"id": "committee", "label": "Teknik- og Miljøudvalget",
                         "state": "tmu_approved",
                         "state_label": "Godkendt af udvalget; kommunen støtter op om "
                                        "indsatsens fire målsætninger",
                         "done": True, "outcome": "done",
                         "entered_by": {"seq": 4, "trigger": "tmu.approve", "actor": "tmu",
                                        "on": "2021-12-06", "date_known": True},
                         "awaiting": {}, "actor_labels": {}}
    assert regions["3b"]["awaiting"] == {"3b": ["3b.approve", "3b.reject"]}
    assert doc["coverage"]["vibo"] == {"in": ["vibo_afd_1", "vibo_afd_2", "vibo_afd_3",
                                              "vibo_afd_4"], "left": []}
    assert doc["latest_dates"]["steps"][1]["step"] == "lbf.approve"
    assert set(doc["assumptions"]) == {"budget", "departments", "dates", "lbf"}
    assert [d["trigger"] for d in doc["decided"]] == ["submit", "aab.approve", "tmu.approve"]
    assert [a["actor"] for a in doc["awaited"]] == ["3b", "vibo_afd_1", "vibo_afd_2",
                                                     "vibo_afd_3", "vibo_afd_4"]
    assert doc["votes"] == [{"id": "vibo", "label": "VIBO-afdelingernes afdelingsmøder",
                             "voters": ["vibo_afd_1", "vibo_afd_2", "vibo_afd_3", "vibo_afd_4"],
                             "need": 4, "ballots": {}, "withdrawn": [],
                             "awaited": ["vibo_afd_1", "vibo_afd_2", "vibo_afd_3",
                                         "vibo_afd_4"]}]
    assert doc["allowed"][0] == {"trigger": "3b.approve", "label": "3B's afdelingsmøde godkender",
                                 "actors": ["3b"]}
    fields = [f.name for f in attrs.fields(af.Event)]
    assert all(set(e) == set(fields) for e in doc["history"])
    assert [e["seq"] for e in doc["history"]] == [1, 2, 3, 4]


def test_show_as_of_a_date(runner: CliRunner, tmp_path: Path,
                           seed_data: dict[str, Any]) -> None:
    """--as-of shows the case as its events dated up to then left it, and who was awaited."""
    db = tmp_path / "x.db"
    with af.open_store(db) as store:
        case = store.create_case(FLAGSHIP, "c", actor="tmf", on="2021-11-01", data=seed_data)
        case.fire("submit", actor="tmf", on="2021-11-02")
        approve_all(case, on="2022-01-31")
    doc = json.loads(run(runner, db, "show", "c", "--as-of", "2021-11-01", "--json").stdout)
    assert (doc["state"], doc["as_of"], doc["on"]) == (["draft", "old_running"], "2021-11-01",
                                                       "2021-11-01")
    assert doc["awaited"] == [{"actor": "tmf", "actor_label": "Teknik- og Miljøforvaltningen",
                               "triggers": ["submit"]}]
    assert len(doc["history"]) == 1
    text = run(runner, db, "show", "c", "--as-of", "2021-11-01").stdout
    assert "As of 2021-11-01: only events dated on or before it are counted." in text
    now = json.loads(run(runner, db, "show", "c", "--json", "--on", "2022-02-01").stdout)
    assert now["allowed"] == [{"trigger": "send_to_lbf", "actors": ["tmf"],
                               "label": "Sagen sendes til endelig behandling i "
                                        "Landsbyggefonden"}]


def test_show_before_the_case_existed(runner: CliRunner, case_db: Path) -> None:
    """--as-of a date before the creation exits 1 and gives the creation date."""
    line = one_error(run(runner, case_db, "show", "mimerskvarteret", "--as-of", "2021-01-01"))
    assert line == ("Error: Case 'mimerskvarteret' did not exist yet on 2021-01-01; it was "
                    "created on 2021-12-06.")


def test_show_an_ended_case(runner: CliRunner, tmp_path: Path) -> None:
    """A case in a final state says it has ended and lists no steps."""
    db = ended_case(tmp_path)
    lines = run(runner, db, "show", "c").stdout.splitlines()
    assert "Events: 3, the last dated 2021-11-02; the case has ended" in lines
    assert "  nobody: the case has ended" in lines
    assert not any(line.startswith("Allowed") for line in lines)


def test_show_unknown_case(runner: CliRunner, case_db: Path) -> None:
    """An unknown case exits 1 with the ids there are."""
    line = one_error(run(runner, case_db, "show", "nope"))
    assert "There is no case 'nope'" in line and "'mimerskvarteret'" in line


# --------------------------------------------------------------------------- history


def test_history_text_and_json(runner: CliRunner, case_db: Path) -> None:
    """'history' prints every event; --json gives every Event field of every event."""
    result = run(runner, case_db, "history", "mimerskvarteret")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"Case 'mimerskvarteret' on {FLAGSHIP} v3, 4 events:"
    assert "    2  2021-12-06  submit by tmf" in lines
    assert "         left draft; now in 3b_pending, aab_pending, tmu_pending, vibo_voting" in lines
    assert '         data: {"dates": {"aab.approve": {"decided_on": "unknown"}}}' in lines
    events = json.loads(run(runner, case_db, "history", "mimerskvarteret", "--json").stdout)
    with af.open_store(case_db, create=False) as store:
        assert events == [e.to_dict() for e in store.case("mimerskvarteret").history]
    assert set(events[0]) == {f.name for f in attrs.fields(af.Event)}


# --------------------------------------------------------------------------- allowed


def test_allowed_says_what_may_happen_and_why_not(runner: CliRunner, case_db: Path) -> None:
    """'allowed' lists the steps allowed now and, for the other steps out, the reasons."""
    result = run(runner, case_db, "allowed", "mimerskvarteret", "--on", "2021-12-07")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "Allowed:" in lines
    assert "  3b.approve by 3b: 3B's afdelingsmøde godkender" in lines
    assert "Not allowed:" in lines
    assert any(line.startswith("  send_to_lbf by tmf: waiting for '3b'") for line in lines)


def test_allowed_for_one_actor(runner: CliRunner, case_db: Path) -> None:
    """--actor narrows to that actor: TMU has decided, so it may do nothing, and is told why."""
    doc = json.loads(run(runner, case_db, "allowed", "mimerskvarteret", "--actor", "tmu",
                         "--on", "2021-12-07", "--json").stdout)
    assert (doc["actor"], doc["allowed"]) == ("tmu", [])
    why = {r["trigger"]: r["why_not"] for r in doc["not_allowed"]}
    assert why["3b.approve"] == {"tmu": ["'tmu' may not take '3b.approve'; only '3b' may"]}
    assert set(why) == {"3b.approve", "3b.reject", "vibo.approve", "vibo.reject",
                        "vibo.withdraw", "send_to_lbf", "no_departments_left",
                        "old_plan_expires"}
    mine = json.loads(run(runner, case_db, "allowed", "mimerskvarteret", "--actor", "3b",
                          "--on", "2021-12-07", "--json").stdout)
    assert [a["trigger"] for a in mine["allowed"]] == ["3b.approve", "3b.reject"]


def test_allowed_on_an_ended_case(runner: CliRunner, tmp_path: Path) -> None:
    """An ended case has nothing allowed and says so."""
    db = ended_case(tmp_path)
    result = run(runner, db, "allowed", "c")
    assert result.stdout.splitlines()[-1] == "The case has ended: nothing more can happen."


def test_allowed_refuses_a_hostile_actor(runner: CliRunner, case_db: Path) -> None:
    """A non-UTF-8 --actor exits 1 with one Error line."""
    line = one_error(run(runner, case_db, "allowed", "mimerskvarteret", "--actor", "\udcff"))
    assert "not valid Unicode text" in line


@pytest.mark.parametrize("args", [["new", "\udcff", "c2", "--actor", "tmf"],
                                  ["cases", "--data", "\udcff=1"],
                                  ["cases", "--data", "plan=\udcff"]])
def test_non_utf8_workflow_name_or_data_filter(runner: CliRunner, case_db: Path,
                                               args: list[str]) -> None:
    """A non-UTF-8 workflow name for 'new' or '--data' filter for 'cases': one Error line
    naming the value (not an unexpected error), and the database is unchanged."""
    before = db_bytes(case_db)
    line = one_error(run(runner, case_db, *args))
    assert "not valid Unicode text" in line and "\\udcff" in line
    assert db_bytes(case_db) == before


# --------------------------------------------------------------------------- verify, heads


def test_verify_ok(runner: CliRunner, case_db: Path) -> None:
    """A sound log verifies with exit 0."""
    result = run(runner, case_db, "verify")
    assert (result.exit_code, result.stdout) == (0, "ok: 1 cases, 4 events, no problems.\n")
    doc = json.loads(run(runner, case_db, "verify", "--json").stdout)
    assert doc == {"ok": True, "cases": 1, "events": 4, "problems": [], "unchecked": {},
                   "strict": False}


def test_verify_strict_fails_on_a_guard_not_registered(runner: CliRunner,
                                                      tmp_path: Path) -> None:
    """A step whose guard this process does not know is listed; --strict makes it fail."""
    from approvalflow.guards import lookup_guard, unregister_guard

    db = tmp_path / "guarded.db"
    with af.open_store(db) as store:
        case = store.create_case("medfinansiering-restbeloeb", "rest", actor="tmf",
                                 on="2022-01-10", data={"amount": 600_000})
        case.fire("propose", actor="tmf", on="2022-01-12")  # guarded by proposal_ok
    func = lookup_guard("proposal_ok")
    assert func is not None
    unregister_guard("proposal_ok")
    try:
        lenient = run(runner, db, "verify")
        strict = run(runner, db, "verify", "--strict")
    finally:
        af.guard("proposal_ok")(func)
    assert lenient.exit_code == 0, lenient.output
    assert "not re-checked: guard 'proposal_ok' (not registered in this process), 1 time" \
        in lenient.stdout
    assert strict.exit_code == 1
    assert "case 'rest': 1 check(s) not made: guard 'proposal_ok'" in strict.stdout


def _tamper(db: Path) -> None:
    """Edit a recorded note behind the library's back (dropping the append-only trigger)."""
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET note = 'changed' WHERE seq = 2")
    conn.commit()
    conn.close()


def test_verify_reports_problems_and_exits_1(runner: CliRunner, case_db: Path) -> None:
    """An edited event is listed on stdout and the command ends with one Error line."""
    _tamper(case_db)
    result = run(runner, case_db, "verify")
    line = one_error(result)
    assert line == f"Error: 1 problem in {str(case_db)!r} (1 cases, 4 events)."
    assert "case 'mimerskvarteret' event 2: its content does not match its hash" in \
        result.stdout.replace("\n  ", " ")


def test_heads_and_verify_heads(runner: CliRunner, case_db: Path, tmp_path: Path) -> None:
    """'heads' exports the head hashes; 'verify --heads' passes, then catches a rewrite."""
    result = run(runner, case_db, "heads")
    heads = json.loads(result.stdout)
    with af.open_store(case_db, create=False) as store:
        assert heads == store.heads()
    exported = tmp_path / "heads.json"
    exported.write_text(result.stdout, encoding="utf-8")
    ok = run(runner, case_db, "verify", "--heads", str(exported))
    assert ok.stdout == "ok: 1 cases, 4 events, no problems, matching 1 exported heads.\n"
    heads["mimerskvarteret"]["hash"] = "0" * 64
    exported.write_text(json.dumps(heads), encoding="utf-8")
    bad = run(runner, case_db, "verify", "--heads", str(exported))
    one_error(bad)
    assert "(the chain was rewritten)" in bad.stdout.replace("\n  ", " ")


@pytest.mark.parametrize(("content", "expected"), [
    ("[1]", "holds a JSON list"),
    ("{nope", "is not a JSON file written by 'approvalflow heads'"),
    (None, "can't read"),
])
def test_verify_heads_file_must_be_an_export(runner: CliRunner, case_db: Path, tmp_path: Path,
                                             content: str | None, expected: str) -> None:
    """A --heads file that is missing or not an object is a usage error."""
    path = tmp_path / "heads.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    line = one_error(run(runner, case_db, "verify", "--heads", str(path)), code=2)
    assert "Invalid value for '--heads'" in line and expected in line


# --------------------------------------------------------------------------- the database


@pytest.mark.parametrize("args", [["cases"], ["show", "x"], ["history", "x"], ["allowed", "x"],
                                  ["verify"], ["heads"]])
def test_inspection_never_creates_a_database(runner: CliRunner, tmp_path: Path,
                                             args: list[str]) -> None:
    """Every inspection command on a missing file exits 1 and creates nothing."""
    db = tmp_path / "missing.db"
    line = one_error(run(runner, db, *args))
    assert line.startswith(f"Error: There is no database at {str(db)!r}")
    assert list(tmp_path.iterdir()) == []


def test_database_from_the_environment(runner: CliRunner, case_db: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --db, $APPROVALFLOW_DB names the file; without both, ./approvalflow.db."""
    result = runner.invoke(cli, ["cases"], env={"APPROVALFLOW_DB": str(case_db)})
    assert result.stdout.startswith("mimerskvarteret ")
    monkeypatch.chdir(tmp_path)
    line = one_error(runner.invoke(cli, ["cases"]))
    assert line.startswith("Error: There is no database at 'approvalflow.db'")


def test_directory_as_database_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    """A directory given as --db or $APPROVALFLOW_DB exits 2 with one Error line."""
    line = one_error(run(runner, tmp_path, "cases"), code=2)
    assert "is a directory" in line
    line = one_error(runner.invoke(cli, ["cases"], env={"APPROVALFLOW_DB": str(tmp_path)}),
                     code=2)
    assert "is a directory" in line


@pytest.mark.parametrize("content", [b"hello, not a database\n" * 100, b""])
def test_other_files_are_not_databases(runner: CliRunner, tmp_path: Path,
                                       content: bytes) -> None:
    """A file that is not an approvalflow database is refused, and left unchanged."""
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    commands = [["cases"], ["fire", "c", "submit", "--actor", "tmf"]]
    if content:  # an empty file is an empty SQLite database: 'new' may use it
        commands.append(["new", FLAGSHIP, "c", "--actor", "tmf"])
    for args in commands:
        line = one_error(run(runner, path, *args))
        assert "not an approvalflow database" in line or "not a database" in line
    assert path.read_bytes() == content


@pytest.mark.parametrize("args", [["tail", "--after", str(2**63)],
                                  ["tail", "--after", "9" * 30],
                                  ["cases", "--limit", str(2**62 + 1)],
                                  ["cases", "--offset", "9" * 30]])
def test_a_number_past_what_the_database_holds_is_a_usage_error(runner: CliRunner,
                                                                 case_db: Path,
                                                                 args: list[str]) -> None:
    """tail --after, cases --limit or --offset past SQLite's integers: exit 2 naming the
    range (tail said 'unexpected OverflowError, a bug')."""
    line = one_error(run(runner, case_db, *args), code=2)
    assert "is not in the range 0<=x<=" in line


def test_non_utf8_database_path(runner: CliRunner, tmp_path: Path) -> None:
    """A database path that is not valid UTF-8 is named (escaped) in the error."""
    line = one_error(run(runner, tmp_path / "\udcff.db", "cases"))
    assert "\\udcff.db" in line


# --------------------------------------------------------------------------- demo, diagram


def test_demo_writes_and_describes_the_case(runner: CliRunner, tmp_path: Path) -> None:
    """'demo' builds the case at --db and tells how to explore it; 'show' then works."""
    db = tmp_path / "d.db"
    result = run(runner, db, "demo")
    assert result.exit_code == 0, result.stderr
    assert f"Explore it with:\n  approvalflow --db {db} show mimerskvarteret" in result.stdout
    assert run(runner, db, "show", "mimerskvarteret").exit_code == 0


def test_demo_refuses_a_database_with_other_cases(runner: CliRunner, tmp_path: Path) -> None:
    """'demo' will not rebuild a database holding other cases."""
    db = tmp_path / "mine.db"
    with af.open_store(db) as store:
        store.create_case(FLAGSHIP, "mine", actor="tmf", on="2021-11-01")
    before = db_bytes(db)
    line = one_error(run(runner, db, "demo"))
    assert "holds other cases ('mine')" in line
    assert db_bytes(db) == before


def test_diagram_mermaid_and_dot(runner: CliRunner) -> None:
    """'diagram' prints Mermaid by default and DOT on request."""
    mermaid = run(runner, None, "diagram", FLAGSHIP)
    assert mermaid.exit_code == 0
    assert mermaid.stdout.startswith("stateDiagram-v2")
    dot = run(runner, None, "diagram", FLAGSHIP, "--format", "dot")
    assert dot.stdout.startswith(f'digraph "{FLAGSHIP}"')
    line = one_error(run(runner, None, "diagram", FLAGSHIP, "--format", "png"), code=2)
    assert "'png' is not one of 'mermaid', 'dot'" in line


def test_diagram_highlights_a_case(runner: CliRunner, case_db: Path) -> None:
    """--case highlights the case's active states; a case of another workflow is refused."""
    plain = run(runner, case_db, "diagram", FLAGSHIP).stdout
    marked = run(runner, case_db, "diagram", FLAGSHIP, "--case", "mimerskvarteret").stdout
    assert marked != plain
    assert re.search(r"class .*tmu_approved.* active|tmu_approved:::active", marked)
    line = one_error(run(runner, case_db, "diagram", "medfinansiering-restbeloeb", "--case",
                         "mimerskvarteret"))
    assert "runs on workflow 'boligsocial-helhedsplan'" in line
    line = one_error(run(runner, case_db, "diagram", "nope"))
    assert "There is no bundled workflow 'nope'" in line


# --------------------------------------------------------------------------- real processes


def _console_script() -> list[str]:
    exe = shutil.which("approvalflow", path=os.path.dirname(sys.executable)) or \
        shutil.which("approvalflow")
    return [exe] if exe else [sys.executable, "-m", "approvalflow"]


def test_console_script_in_a_real_process(tmp_path: Path) -> None:
    """The installed command drives a case end to end; errors are one line, no traceback."""
    env = {**os.environ, "APPROVALFLOW_DB": str(tmp_path / "real.db")}

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_console_script(), *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    created = call("new", FLAGSHIP, "c", "--actor", "tmf", "--on", "2021-11-01")
    assert created.returncode == 0, created.stderr
    assert call("fire", "c", "submit", "--actor", "tmf", "--on", "2021-11-01").returncode == 0
    refused = call("fire", "c", "send_to_lbf", "--actor", "tmf", "--on", "2021-11-02")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("Error: Can't fire")
    shown = call("show", "c")
    assert shown.returncode == 0 and "Afventer udvalgets behandling [tmu_pending]" in shown.stdout
    usage = call("show", "c", "--as-of", "2022-02-30")
    assert usage.returncode == 2 and "'2022-02-30'" in usage.stderr
    assert "Traceback" not in refused.stderr + usage.stderr


def test_python_dash_m(tmp_path: Path) -> None:
    """'python -m approvalflow' is the same command."""
    result = subprocess.run([sys.executable, "-m", "approvalflow", "--db",
                             str(tmp_path / "x.db"), "cases"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: There is no database at")


# --------------------------------------------------------------------------- docs


def test_every_command_is_documented() -> None:
    """docs/cli.md has a section and a console example for every command of the group."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## `approvalflow (?:\[--db PATH\] )?([a-z]+)", text, re.M))
    examples = "\n".join(re.findall(r"```console\n(.*?)```", text, re.S))
    used = set(re.findall(r"^\$ approvalflow (?:--db \S+ )?([a-z]+)", examples, re.M))
    missing = sorted(set(cli.commands) - headings)
    assert not missing, f"commands without a section in docs/cli.md: {missing}"
    missing = sorted(set(cli.commands) - used)
    assert not missing, f"commands without a console example in docs/cli.md: {missing}"


def test_refused_backdated_fire_still_lists_what_is_allowed(tmp_path) -> None:
    """A step dated before the last event is refused, and the message lists the steps allowed
    from the last event's date on, not 'nothing'."""
    db = tmp_path / "c.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", str(db), "new", "boligsocial-helhedsplan", "c",
                               "--actor", "tmf", "--on", "2021-11-01"]).exit_code == 0
    assert runner.invoke(cli, ["--db", str(db), "fire", "c", "submit", "--actor", "tmf",
                               "--on", "2021-11-05"]).exit_code == 0
    result = runner.invoke(cli, ["--db", str(db), "fire", "c", "tmu.approve", "--actor", "tmu",
                                 "--on", "2021-11-01"])
    assert result.exit_code == 1
    assert "dates may not go backwards" in result.output
    assert "Allowed now: 3b.approve (by 3b)" in result.output


def test_cases_with_an_unknown_state_fails(tmp_path) -> None:
    """cases --state with a state no workflow has is an error naming the states, exit 1."""
    db = tmp_path / "c.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", str(db), "new", "medfinansiering-restbeloeb", "r",
                               "--actor", "tmf", "--on", "2022-01-10"]).exit_code == 0
    result = runner.invoke(cli, ["--db", str(db), "cases", "--state", "nowhere"])
    assert result.exit_code == 1
    assert "Error: No workflow of these cases has a state 'nowhere'; states: " in result.output
    assert "br_decision" in result.output
