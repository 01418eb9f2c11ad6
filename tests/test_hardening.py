"""Input hardening (issue 10): every way a hostile value, file or caller could get past the
library's checks, tried as an attacker would, with real files and real processes.

Grouped by the issue's items: aliased data (5), dates (6), runnable workflows (7), input
files (8), heads files (9), only approvalflow errors (10), terminal output (11), read-only
inspection and identifiers (12), backup (13).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import approvalflow as af
from approvalflow.canonical import DATE_RANGE, MAX_DATE, MIN_DATE
from approvalflow.cli import cli

from .conftest import FLAGSHIP, approve_all

# The tests of the store's promises run on SQLite and on PostgreSQL (those using the
# ``store`` fixture); those of SQLite's file (backup) stay SQLite's.
pytestmark = pytest.mark.backends

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"APPROVALFLOW_DB": None})


def run(runner: CliRunner, db: str | Path | None, *args: str) -> Result:
    argv = (["--db", str(db)] if db is not None else []) + list(args)
    return runner.invoke(cli, argv, catch_exceptions=False)


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def workflow_text(extra_transition: str = "", *, version: str = "1") -> str:
    """A small sound workflow: draft -> review -> done, with optional keys on 'approve'."""
    return f"""
[workflow]
name = "tiny"
version = {version}
initial = "draft"
goal = "done"

[actors]
x = "X"

[states.draft]
[states.review]
[states.done]
final = true

[[transitions]]
trigger = "submit"
source = "draft"
target = "review"
actors = ["x"]

[[transitions]]
trigger = "approve"
source = "review"
target = "done"
actors = ["x"]
{extra_transition}
"""


# --------------------------------------------------------------------------- 5: aliased data


def test_mutating_the_callers_data_after_create_changes_nothing(store, flagship, seed_data):
    """A budget swapped in the caller's dict after create_case does not reach the guard."""
    bad = copy.deepcopy(seed_data)
    bad["budget"]["lbf"] = 3_900_000  # more than 75 % of the total: breaks financing_ok
    case = store.create_case(flagship, "alias", actor="tmf", on="2021-11-01", data=bad)
    bad["budget"].update(seed_data["budget"])  # now the caller's dict keeps the rules
    bad["title"] = "changed afterwards"
    assert case.data["budget"]["lbf"] == 3_900_000
    assert case.data["title"] == seed_data["title"]
    case.fire("submit", actor="tmf", on="2021-11-01")
    approve_all(case)
    with pytest.raises(af.TransitionRefusedError, match="75 %"):
        case.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    assert store.case("alias").data == case.data
    assert store.verify().ok


def test_mutating_the_callers_data_after_fire_changes_nothing(store, seed_data):
    """The data given to fire() is copied: the event, case.data and the log agree afterwards."""
    wf = af.loads_workflow(FREE_DATA)
    case = store.create_case(wf, "alias", actor="clerk", on="2021-11-01", data=seed_data)
    seed_data["budget"]["lbf"] = 1  # the caller's create data, changed afterwards
    given = {"dates": {"go": {"decided_on": "2021-11-01"}}, "list": [1, {"a": 2}]}
    event = case.fire("go", actor="clerk", on="2021-11-01", data=given)
    given["dates"]["go"]["decided_on"] = "1999-01-01"
    given["list"][1]["a"] = 99
    assert event.data["dates"]["go"]["decided_on"] == "2021-11-01"
    assert case.data["list"] == [1, {"a": 2}]
    assert case.data["budget"]["lbf"] == 3_000_000
    reloaded = store.case("alias")
    assert reloaded.data == case.data
    assert reloaded.history[-1].data == event.data
    assert store.verify().ok


#: a workflow whose one step may carry any data
FREE_DATA = """
[workflow]
name = "free-data"
version = 1
initial = "open"
[actors]
clerk = "Clerk"
[states.open]
[states.done]
final = true
[[transitions]]
trigger = "go"
source = "open"
target = "done"
actors = ["clerk"]
"""


def test_imported_data_is_copied_too(store, flagship, seed_data):
    """import_events copies each record's data; a later change to the records changes nothing."""
    records: list[dict[str, Any]] = [
        {"case_id": "imp", "trigger": "create", "workflow": af.loads_workflow(FREE_DATA),
         "actor": "clerk", "on": "2021-11-01", "data": seed_data},
        {"case_id": "imp", "trigger": "go", "actor": "clerk", "on": "2021-11-01",
         "data": {"x": {"y": 1}}},
    ]
    assert store.import_events(records) == 2
    records[0]["data"]["budget"]["total"] = 0
    records[1]["data"]["x"]["y"] = 2
    case = store.case("imp")
    assert case.data["budget"]["total"] == 4_000_000
    assert case.data["x"] == {"y": 1}
    assert store.verify().ok


def test_check_data_returns_a_fresh_copy():
    """check_data's result shares no dict or list with its argument, and equals it as JSON."""
    from approvalflow.canonical import canonical_json, check_data

    given = {"a": [1, {"b": (2, 3)}], "c": {"d": None, "e": 1.5, "f": True}}
    copied = check_data(given)
    assert copied == {"a": [1, {"b": [2, 3]}], "c": {"d": None, "e": 1.5, "f": True}}
    assert copied is not given and copied["a"] is not given["a"]
    assert copied["a"][1] is not given["a"][1] and copied["c"] is not given["c"]
    assert canonical_json(copied) == canonical_json(given)


# --------------------------------------------------------------------------- 6: dates


@pytest.mark.parametrize("on", ["9999-12", "0001-01", "9999-12-31", "1899-12-31",
                                "3000-01-01", dt.date(1, 1, 1), dt.date.max])
def test_an_expectation_outside_the_range_is_refused(store, submitted, store_url, on):
    """case.expect with a date outside the range is refused; due and show keep working."""
    before = submitted.version
    with pytest.raises(af.InvalidInputError, match=DATE_RANGE):
        submitted.expect("3b.approve", on, actor="tmf", said_on="2021-11-02")
    assert submitted.version == before == store.case(submitted.id).version
    assert isinstance(store.due(on="2999-12-31", within_days=36_500), list)
    assert submitted.forecast(on="2999-12-31").on == dt.date(2999, 12, 31)


def test_the_range_ends_are_accepted_and_every_read_still_works(store, submitted, runner,
                                                                 store_url):
    """An expectation on the last accepted day, due asked on it with the widest window: no
    read fails (show, forecast, deadlines, due, the CLI)."""
    submitted.expect("3b.approve", "2999-12", actor="tmf", said_on="2021-11-02")
    submitted.expect("vibo.approve", MAX_DATE, actor="tmf", said_on="2021-11-02")
    assert submitted.expectations()[-1].date == MAX_DATE
    assert submitted.forecast(on=MAX_DATE).on == MAX_DATE
    assert {d.step for d in submitted.deadlines(on=MAX_DATE)} == {"lbf.approve", "start"}
    assert isinstance(store.due(on=MAX_DATE, within_days=36_500), list)
    assert isinstance(store.due(on=MIN_DATE, within_days=36_500), list)
    for args in (["show", submitted.id, "--on", "2999-12-31"],
                 ["due", "--on", "2999-12-31", "--within", "36500"],
                 ["due", "--on", "1900-01-01", "--within", "36500"]):
        result = run(runner, store_url, *args)
        assert result.exit_code == 0, (args, result.stderr)


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31", "1899-12-31"])
def test_a_data_date_outside_the_range_is_a_clear_problem(store, flagship, seed_data, runner,
                                                            store_url, value):
    """planned_start = '0001-01-01' in the data: forecast, deadlines, due and show explain it,
    and the guarded step is refused naming the range, never an OverflowError."""
    seed_data["planned_start"] = value
    seed_data["expires"] = value
    case = store.create_case(flagship, "old", actor="tmf", on="2021-11-01", data=seed_data)
    case.fire("submit", actor="tmf", on="2021-11-01")
    approve_all(case)
    case.fire("send_to_lbf", actor="tmf", on="2022-02-01")
    case.fire("lbf.approve", actor="lbf", on="2022-02-10")
    notes = " ".join(d.note for d in case.deadlines(on="2022-02-10"))
    assert DATE_RANGE in notes
    assert case.forecast(on="2022-02-10").on == dt.date(2022, 2, 10)
    assert isinstance(store.due(on="2022-02-10", within_days=36_500), list)
    with pytest.raises(af.TransitionRefusedError, match=DATE_RANGE):
        case.fire("start", actor="tmf", on="2022-03-02")
    result = run(runner, store_url, "show", "old", "--on", "2022-02-10")
    assert result.exit_code == 0, result.stderr
    assert run(runner, store_url, "due", "--on", "2022-02-10").exit_code == 0
    assert store.verify().ok


@pytest.mark.parametrize("ref", ["{date = 9999-12-31, days = 36500}", "0001-01-01",
                                 '"9999-12-31"', "{date = 1899-12-31}"])
def test_a_workflow_date_reference_outside_the_range_is_refused(ref):
    """A deadline or earliest date outside the range is a DefinitionError naming the range."""
    for key in ("deadline", "earliest"):
        with pytest.raises(af.DefinitionError, match=DATE_RANGE):
            af.loads_workflow(workflow_text(f"{key} = {ref}"))


def test_the_widest_accepted_date_reference_still_forecasts():
    """{date = 2999-12-31, days = 36500} loads, and a case on it forecasts and lists what is due."""
    wf = af.loads_workflow(workflow_text("deadline = {date = 2999-12-31, days = 36500}\n"
                                         "duration_days = 36500"))
    with af.open_store(":memory:") as store:
        case = store.create_case(wf, "c", actor="x", on="2999-12-31")
        case.fire("submit", actor="x", on="2999-12-31")
        assert case.forecast(on="2999-12-31").date is not None
        assert case.deadlines(on="2999-12-31")[0].due == dt.date(3099, 12, 7)
        assert store.due(on="2999-12-31", within_days=36_500)[0].step == "approve"


def test_a_long_chain_of_long_durations_does_not_overflow():
    """Eighty steps of 36,500 days each from the last accepted day: the forecast saturates
    at the last date Python holds instead of raising OverflowError."""
    n = 80
    states = "".join(f"[states.s{i}]\n" for i in range(n)) + "[states.end]\nfinal = true\n"
    steps = "".join(f'[[transitions]]\ntrigger = "t{i}"\nsource = "s{i}"\n'
                    f'target = "{"s" + str(i + 1) if i < n - 1 else "end"}"\nactors = ["x"]\n'
                    f"duration_days = 36500\n" for i in range(n))
    text = (f'[workflow]\nname = "long"\nversion = 1\ninitial = "s0"\ngoal = "end"\n'
            f'target = 2999-12-31\n[actors]\nx = "X"\n{states}{steps}')
    wf = af.loads_workflow(text)
    with af.open_store(":memory:") as store:
        case = store.create_case(wf, "c", actor="x", on="2999-12-31")
        fc = case.forecast(on="2999-12-31")
        assert fc.date == dt.date.max
        assert fc.on_time is False
        assert fc.steps[-1].date == dt.date.max
        assert store.due(on="2999-12-31", within_days=36_500) == []
        assert case.deadlines(on="2999-12-31") == []


@pytest.mark.parametrize("on", ["9999-12-31", "0001-01-01", "1899-12-31", dt.date(3000, 1, 1)])
def test_a_step_or_creation_outside_the_range_is_refused(store, flagship, submitted, on):
    """create_case, fire, case(as_of=) and due(on=) refuse a date outside the range."""
    with pytest.raises(af.InvalidInputError, match=DATE_RANGE):
        store.create_case(flagship, "x", actor="tmf", on=on)
    with pytest.raises(af.InvalidInputError, match=DATE_RANGE):
        submitted.fire("tmu.approve", actor="tmu", on=on)
    with pytest.raises(af.InvalidInputError, match=DATE_RANGE):
        store.case(submitted.id, as_of=on)
    with pytest.raises(af.InvalidInputError, match=DATE_RANGE):
        store.due(on=on)
    assert store.verify().ok and store.case(submitted.id).version == 2


def test_the_cli_refuses_a_date_outside_the_range_as_a_usage_error(runner, tmp_path):
    """--on 9999-12-31 is a usage error (exit 2) that names the range."""
    result = run(runner, tmp_path / "x.db", "new", FLAGSHIP, "c", "--actor", "tmf",
                 "--on", "9999-12-31")
    assert result.exit_code == 2
    assert DATE_RANGE in result.stderr
    assert not (tmp_path / "x.db").exists()


# --------------------------------------------------------------------------- 7: runnable


@pytest.mark.parametrize("version", ["9223372036854775808", "99999999999999999999"])
def test_a_version_sqlite_cannot_store_is_refused(version):
    """[workflow].version past SQLite's largest integer is a DefinitionError, not a crash later."""
    with pytest.raises(af.DefinitionError, match="version"):
        af.loads_workflow(workflow_text(version=version))


def test_the_largest_version_sqlite_stores_runs(tmp_path):
    """version = 2**63 - 1 loads, and a case on it is created, fired and verified."""
    wf = af.loads_workflow(workflow_text(version=str(2**63 - 1)))
    with af.open_store(tmp_path / "v.db") as store:
        case = store.create_case(wf, "c", actor="x", on="2022-01-01")
        case.fire("submit", actor="x", on="2022-01-01")
        assert store.case("c").workflow_version == 2**63 - 1
        assert store.verify().ok


def nested_workflow(depth: int) -> str:
    lines = ['[workflow]\nname = "deep"\nversion = 1\ninitial = "s0"\n[actors]\nx = "X"\n']
    for i in range(depth):
        lines.append(f"[states.s{i}]\n" + (f'parent = "s{i - 1}"\n' if i else "")
                     + (f'initial = "s{i + 1}"\n' if i < depth - 1 else ""))
    lines.append('[states.end]\nfinal = true\n[[transitions]]\ntrigger = "go"\n'
                 'source = "s0"\ntarget = "end"\nactors = ["x"]\n')
    return "".join(lines)


@pytest.mark.parametrize("depth", [33, 500, 5000])
def test_states_nested_too_deeply_are_refused_naming_the_state(depth, runner, tmp_path):
    """Compound states nested past 32 levels: DefinitionError naming the first state too deep,
    and 'check' says so (exit 1), with no RecursionError anywhere."""
    with pytest.raises(af.DefinitionError, match=r"'s32'.*at most 32"):
        af.loads_workflow(nested_workflow(depth))
    path = tmp_path / "deep.toml"
    path.write_text(nested_workflow(depth), encoding="utf-8")
    result = run(runner, None, "check", str(path))
    assert result.exit_code == 1
    assert "'s32'" in result.stderr and "Traceback" not in result.stderr


def test_states_nested_32_deep_load_run_and_draw(tmp_path):
    """The deepest nesting allowed is runnable: created, fired, verified, drawn."""
    wf = af.loads_workflow(nested_workflow(32))
    with af.open_store(tmp_path / "d.db") as store:
        case = store.create_case(wf, "c", actor="x", on="2022-01-01")
        assert "s31" in case.state
        case.fire("go", actor="x", on="2022-01-01")
        assert case.is_final and store.verify().ok
    assert "s31" in wf.diagram()


# --------------------------------------------------------------------------- 8: input files


def special_files(tmp_path: Path) -> dict[str, str]:
    """A character device, a FIFO nobody writes to, and a directory."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    return {"character device": "/dev/zero", "FIFO": str(fifo), "directory": str(folder)}


def test_load_workflow_reads_only_regular_files(tmp_path):
    """/dev/zero, a FIFO and a directory are refused by load_workflow, without hanging."""
    for kind, path in special_files(tmp_path).items():
        with pytest.raises(af.DefinitionError, match=kind):
            af.load_workflow(path)


def test_the_size_cap_is_enforced_while_reading(tmp_path):
    """A file over 1 MB is refused however it is reached (a symlink to /dev/zero included)."""
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    with pytest.raises(af.DefinitionError, match="character device"):
        af.load_workflow(link)
    big = tmp_path / "big.toml"
    big.write_bytes(workflow_text().encode() + b"#" * 1_000_001)
    with pytest.raises(af.DefinitionError, match="at most 1000000 bytes"):
        af.load_workflow(big)
    exact = tmp_path / "exact.toml"
    text = workflow_text().encode()
    exact.write_bytes(text + b"#" * (1_000_000 - len(text)))
    assert af.load_workflow(exact).name == "tiny"


def test_the_read_stops_at_the_cap(tmp_path):
    """read_regular_file reads at most limit + 1 bytes of a file that is larger."""
    from approvalflow.files import read_regular_file

    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, limit=100) == b"x" * 100
    with pytest.raises(af.InvalidInputError, match="larger than 99 bytes"):
        read_regular_file(path, limit=99)


@pytest.mark.parametrize("command", ["check", "new", "data", "heads", "diagram"])
def test_the_cli_reads_only_regular_files(command, runner, tmp_path, case_db_path):
    """check, new, --data @FILE, verify --heads and diagram: each special file gives one clear
    error (no hang, no traceback) and the database is unchanged."""
    before = case_db_path.read_bytes()
    for kind, path in special_files(tmp_path).items():
        args = {"check": ["check", path],
                "new": ["new", path, "c2", "--actor", "tmf"],
                "data": ["fire", "mimerskvarteret", "tmu.approve", "--actor", "tmu",
                         "--data", f"@{path}"],
                "heads": ["verify", "--heads", path],
                "diagram": ["diagram", path]}[command]
        result = run(runner, case_db_path, *args)
        assert result.exit_code in (1, 2), (kind, result.stdout, result.stderr)
        assert len(error_lines(result)) == 1, (kind, result.stderr)
        assert kind in result.stderr or "directory" in result.stderr, (kind, result.stderr)
        assert "Traceback" not in result.stderr
    assert case_db_path.read_bytes() == before


@pytest.mark.parametrize("args", [["show", "c"], ["fire", "c", "go", "--actor", "x"],
                                  ["new", "boligsocial-helhedsplan", "c", "--actor", "tmf"],
                                  ["verify"], ["cases"], ["tick"]])
def test_a_special_file_as_the_database_is_named_for_what_it_is(args, runner, tmp_path):
    """--db /dev/null, /dev/zero or a FIFO: exit 1, one Error line saying it is a device or
    a FIFO (not "an empty file" or "disk I/O error"), and nothing made beside it."""
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    for path, kind in (("/dev/null", "character device"), ("/dev/zero", "character device"),
                       (str(fifo), "FIFO")):
        result = run(runner, Path(path), *args)
        assert result.exit_code == 1, (path, result.stdout, result.stderr)
        assert len(error_lines(result)) == 1, (path, result.stderr)
        assert kind in error_lines(result)[0], (path, result.stderr)
        assert "empty file" not in result.stderr and "I/O" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.db"]


@pytest.mark.parametrize("readonly", [False, True])
def test_open_store_names_a_special_file(tmp_path, readonly):
    """open_store on a FIFO or a character device is a StoreError saying what it is."""
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "FIFO"), (Path("/dev/null"), "character device")):
        with pytest.raises(af.StoreError, match=kind):
            af.open_store(path, readonly=readonly)


@pytest.fixture
def case_db_path(tmp_path: Path, seed_data: dict[str, Any]) -> Path:
    """A database with the flagship case, submitted."""
    path = tmp_path / "cases.db"
    with af.open_store(path) as store:
        case = store.create_case(FLAGSHIP, "mimerskvarteret", actor="tmf", on="2021-12-06",
                                 data=seed_data)
        case.fire("submit", actor="tmf", on="2021-12-06")
    return path


# --------------------------------------------------------------------------- 11: terminal output

NOTE = "\x1b[31mAPPROVED BY BR\x1b[0m\x1b[1A\x1b[2K"
TITLE = "\x1b]0;pwned\x07Plan \u202eevil\u202c \x85next\x7f"
RAW = ("\x1b", "\x07", "\x85", "\x7f", "\u202e", "\u202c", "\r")


def hostile_workflow() -> str:
    """tiny, with escape sequences in its title and in state and step labels (TOML escapes)."""
    return workflow_text('label = "ok \\u001b[2J\\u001b]0;t\\u0007 \\u202eok"\n'
                         'deadline = "2022-02-01"').replace(
        '[states.review]', '[states.review]\nlabel = "in \\u001b[5mreview\\u0085\\r"').replace(
        'goal = "done"', 'goal = "done"\ntitle = "T \\u001b]0;x\\u0007"')


@pytest.fixture
def hostile_db(tmp_path: Path) -> Path:
    """A case whose title, notes, data and workflow labels carry terminal escapes."""
    wf_path = tmp_path / "hostile.toml"
    wf_path.write_text(hostile_workflow(), encoding="utf-8")
    path = tmp_path / "hostile.db"
    with af.open_store(path) as store:
        case = store.create_case(af.load_workflow(wf_path), "c1", actor="x", on="2022-01-01",
                                 data={"title": TITLE, "k\x1b[1m": "v\x9b2J"}, note=NOTE)
        case.fire("submit", actor="x", on="2022-01-02", note=NOTE + "\nsecond line\r",
                  data={"why": TITLE})
        case.expect("approve", "2022-01-20", actor="x", note=NOTE, said_on="2022-01-02")
    return path


@pytest.mark.parametrize(("args", "shows"), [
    (["history", "c1"], True), (["show", "c1", "--on", "2022-01-03"], True),
    (["cases"], False), (["allowed", "c1", "--on", "2022-01-03"], True),
    (["due", "--on", "2022-01-25"], True), (["verify"], False),
    (["fire", "c1", "\x1b[31mnope", "--actor", "x", "--on", "2022-01-03"], True),
    (["fire", "c1", "approve", "--actor", "\x1b]0;x\x07", "--on", "2022-01-03"], True),
    (["fire", "c1", "approve", "--actor", "x", "--on", "2022-01-03"], False),
])
def test_text_output_escapes_control_characters(runner, hostile_db, args, shows):
    """No raw C0, DEL, C1 or bidi control from stored text reaches stdout or stderr; where
    the output shows such text, the escapes show visibly instead."""
    result = run(runner, hostile_db, *args)
    out = result.stdout + result.stderr
    assert out.strip()
    for char in RAW:
        assert char not in out, (args, char, out)
    assert ("\\x1b" in out) == shows, (args, out)


def test_history_and_show_show_the_escaped_note_and_title(runner, hostile_db):
    """The note and title appear with their escapes spelled out, nothing dropped."""
    history = run(runner, hostile_db, "history", "c1").stdout
    assert "\\x1b[31mAPPROVED BY BR\\x1b[0m\\x1b[1A\\x1b[2K" in history
    show = run(runner, hostile_db, "show", "c1", "--on", "2022-01-03").stdout
    assert "\\x1b]0;pwned\\x07Plan \\u202eevil\\u202c \\x85next\\x7f" in show


@pytest.mark.parametrize("args", [["history", "c1", "--json"], ["show", "c1", "--json"],
                                  ["allowed", "c1", "--json"], ["cases", "--json"],
                                  ["tail", "--json"]])
def test_json_output_escapes_as_json_does(runner, hostile_db, args):
    """--json output holds no raw control character, and parses back to the stored text."""
    result = run(runner, hostile_db, *args)
    assert result.exit_code == 0, result.stderr
    for char in RAW:
        assert char not in result.stdout, (args, char)
    if args[0] == "tail":  # one object per line
        doc = [json.loads(line) for line in result.stdout.splitlines()]
        assert [e["note"] for e in doc][:2] == [NOTE, NOTE + "\nsecond line\r"]
        assert doc[1]["data"]["why"] == TITLE
        return
    doc = json.loads(result.stdout)
    if args[0] == "history":
        assert doc[0]["note"] == NOTE and doc[1]["data"]["why"] == TITLE
    if args[0] == "show":
        assert doc["title"] == TITLE


def test_timeline_names_its_output_file_escaped(runner, hostile_db, tmp_path):
    """timeline -o with a control character in the file name: the 'wrote' line escapes it."""
    out = tmp_path / "t\x1b[2J.svg"
    result = run(runner, hostile_db, "timeline", "c1", "-o", str(out), "--on", "2022-01-03")
    assert result.exit_code == 0, result.stderr
    assert out.exists() and "\x1b" not in result.stdout
    assert result.stdout == f"wrote {tmp_path}/t\\x1b[2J.svg\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_timeline_on_a_full_disk_names_the_file(runner, hostile_db):
    """timeline -o /dev/full: exit 1, one Error line naming the file and the reason (it said
    'Could not use: No space left on device.', naming nothing)."""
    result = run(runner, hostile_db, "timeline", "c1", "-o", "/dev/full", "--on", "2022-01-03")
    assert result.exit_code == 1 and len(error_lines(result)) == 1, result.stderr
    assert error_lines(result)[0] == ("Error: Could not write '/dev/full': No space left on "
                                      "device.")


def test_check_and_diagram_escape_labels_and_file_names(runner, tmp_path):
    """check's ok line (a file name with an escape) and diagram's labels are escaped too."""
    path = tmp_path / "evil\x1b[2J.toml"
    path.write_text(hostile_workflow(), encoding="utf-8")
    for args in (["check", str(path)], ["diagram", str(path)],
                 ["diagram", str(path), "--format", "dot"]):
        result = run(runner, None, *args)
        assert result.exit_code == 0, (args, result.stderr)
        for char in RAW:
            assert char not in result.stdout, (args, char)


def test_a_piped_real_process_gets_no_title_escape(hostile_db):
    """The installed command, piped: the OSC title sequence is not in its output."""
    exe = Path(sys.executable).with_name("approvalflow")
    proc = subprocess.run([str(exe), "--db", str(hostile_db), "show", "c1"],
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout
    assert b"\\x1b]0;pwned\\x07" in proc.stdout


def test_terminal_safe_escapes_every_kind():
    """terminal_safe: C0 but the newline, DEL, C1, bidi, the line and paragraph separators
    and lone surrogates become escapes; json_safe: the same JSON value, escaped."""
    from approvalflow.views.summary import json_safe, terminal_safe

    text = ("".join(map(chr, range(0x00, 0xa0))) + "".join(RAW) + "\u2066\u2069\ud800"
            + "\u2028\u2029")
    safe = terminal_safe(text)
    assert safe.count("\n") == 1 and len(safe.splitlines()) == 2
    assert "\\u2028\\u2029" in safe
    as_json = json_safe(json.dumps(text.replace("\ud800", ""), ensure_ascii=False))
    assert len(as_json.splitlines()) == 1
    assert json.loads(as_json) == text.replace("\ud800", "")
    assert all(ord(c) >= 0x20 and not 0x7f <= ord(c) < 0xa0 for c in safe if c != "\n")
    assert not set(safe) & set("\u202e\u202c\u2066\u2069\u061c\u200e\u200f")
    safe.encode("utf-8")
    assert terminal_safe("plain text, æøå\nline two") == "plain text, æøå\nline two"


# --------------------------------------------------------------------------- 9: heads files


def write_heads(tmp_path: Path, text: str) -> str:
    path = tmp_path / "heads.json"
    path.write_text(text, encoding="utf-8")
    return str(path)


GOOD_HASH = "0" * 64


@pytest.mark.parametrize("text", [
    '{"mimerskvarteret": {"seq": 1e999, "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": 9223372036854775808, "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": ' + "9" * 5000 + ', "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": -1, "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": 0, "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": 1.5, "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": "2", "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": true, "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": NaN, "hash": "' + GOOD_HASH + '"}}',
    '{"mimerskvarteret": {"seq": 2, "hash": 5}}',
    '{"mimerskvarteret": {"seq": 2, "hash": "xyz"}}',
    '{"mimerskvarteret": {"seq": 2, "hash": "' + GOOD_HASH + '\\n"}}',
    '{"mimerskvarteret": {"seq": 2}}',
    '{"mimerskvarteret": {"seq": 2, "hash": "' + GOOD_HASH + '", "extra": 1}}',
    '{"mimerskvarteret": [2, "' + GOOD_HASH + '"]}',
    '{"mimerskvarteret": null}',
    "[1, 2]", '"heads"', "1e999", "", "{",
])
def test_a_bad_heads_file_is_a_usage_error(runner, tmp_path, case_db_path, text):
    """verify --heads with 1e999, a seq >= 2**63, a non-integer or a wrong shape: exit 2 and
    one Error line naming the file, never a crash."""
    result = run(runner, case_db_path, "verify", "--heads", write_heads(tmp_path, text))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(error_lines(result)) == 1, result.stderr
    assert "heads" in error_lines(result)[0] and "Traceback" not in result.stderr


def test_a_good_heads_file_still_verifies_and_a_moved_head_is_a_problem(runner, tmp_path,
                                                                       case_db_path):
    """The heads written by 'heads' pass (exit 0); a well-formed head the log lacks is a
    reported problem (exit 1)."""
    heads = run(runner, case_db_path, "heads").stdout
    result = run(runner, case_db_path, "verify", "--heads", write_heads(tmp_path, heads))
    assert result.exit_code == 0, result.stderr
    assert "matching 1 exported heads" in result.stdout
    doc = json.loads(heads)
    doc["mimerskvarteret"]["seq"] = 9
    result = run(runner, case_db_path, "verify", "--heads",
                 write_heads(tmp_path, json.dumps(doc)))
    assert result.exit_code == 1
    assert "event 9: exported earlier, no longer in the log" in result.stdout


# --------------------------------------------------------------------------- 10: errors


HUGE = 10 ** 5000


def test_an_int_too_long_for_text_is_invalid_input_everywhere(store, flagship, seed_data,
                                                               store_url):
    """Ints over 4,300 digits in data: InvalidInputError from create_case, fire and
    import_events, and nothing is written."""
    with pytest.raises(af.InvalidInputError, match="digits"):
        store.create_case(flagship, "big", actor="tmf", on="2021-11-01", data={"n": HUGE})
    case = store.create_case(af.loads_workflow(FREE_DATA), "ok", actor="clerk",
                             on="2021-11-01", data=seed_data)
    with pytest.raises(af.InvalidInputError, match="digits"):
        case.fire("go", actor="clerk", on="2021-11-01", data={"deep": [{"n": -HUGE}]})
    with pytest.raises(af.InvalidInputError, match="digits"):
        store.import_events([{"case_id": "imp", "trigger": "create", "workflow": flagship,
                              "actor": "tmf", "on": "2021-11-01", "data": {"n": HUGE}}])
    assert [c.case_id for c in store.cases()] == ["ok"]
    assert store.case("ok").version == 1 and store.verify().ok
    case.fire("go", actor="clerk", on="2021-11-01", data={"n": 10 ** 4000})
    assert store.case("ok").data["n"] == 10 ** 4000


def test_a_huge_int_on_the_command_line_is_a_usage_error(runner, case_db_path):
    """--data with a 5,000-digit number is a usage error (exit 2), not a crash."""
    result = run(runner, case_db_path, "fire", "mimerskvarteret", "tmu.approve", "--actor",
                 "tmu", "--data", '{"n": %s}' % ("9" * 5000))
    assert result.exit_code == 2, result.stderr
    assert len(error_lines(result)) == 1


@pytest.mark.parametrize("name", [None, "boligsocial\x00-helhedsplan", "x" * 5000,
                                  "/tmp/" + "x" * 5000 + ".toml", "a/" + "y" * 300 + ".toml",
                                  42, b"boligsocial-helhedsplan", "../../etc/passwd"])
def test_load_workflow_raises_only_definition_error(name):
    """load_workflow with None, a NUL, a 5,000-character name or a wrong type: DefinitionError."""
    with pytest.raises(af.DefinitionError):
        af.load_workflow(name)


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1, "5", True, None, 10**9])
def test_open_store_refuses_a_bad_timeout(tmp_path, timeout):
    """open_store(timeout=NaN/inf/str/negative/...) is InvalidInputError and creates no file."""
    with pytest.raises(af.InvalidInputError, match="timeout"):
        af.open_store(tmp_path / "t.db", timeout=timeout)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", [None, "a\x00b.db", b"bytes.db", 5, "", "x" * 5000])
def test_open_store_refuses_a_bad_path(tmp_path, monkeypatch, path):
    """open_store(None), a NUL in the path, bytes, a number: InvalidInputError, no file made."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(af.InvalidInputError, match="path"):
        af.open_store(path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [None, 2**64, [], {}, b"x", "a\x00b", "x" * 5000])
def test_lookups_refuse_odd_values_with_approvalflow_errors(store, submitted, flagship, value):
    """cases, due, events, workflow, transition, Workflow.state/regions and open_store's
    durability: an odd value is an ApprovalflowError, never OverflowError or TypeError."""
    calls = [lambda: store.cases(workflow=value), lambda: store.cases(state=value),
             lambda: store.due(on="2022-01-01", workflow=value),
             lambda: list(store.events(value)), lambda: store.workflow(value, 1),
             lambda: store.workflow(FLAGSHIP, value), lambda: submitted.transition(value),
             lambda: flagship.state(value), lambda: flagship.regions(value),
             lambda: af.open_store(":memory:", durability=value)]
    for call in calls:
        try:
            call()
        except af.ApprovalflowError:
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{type(e).__name__}: {e}")
    assert flagship.label_of(value) == value
    assert store.verify().ok


def in_thread(func: Any) -> BaseException | None:
    """Run ``func`` in another thread; return what it raised (None if nothing)."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            func()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            raised.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    return raised[0] if raised else None


def test_a_store_used_from_another_thread_says_to_open_one_per_thread(store, submitted):
    """verify, verify(heads=), schema_version, case, fire, heads, backup and close from
    another thread: a StoreError saying a store belongs to the thread that opened it."""
    heads = store.heads()
    calls = {
        "verify": store.verify, "verify heads": lambda: store.verify(heads=heads),
        "schema_version": lambda: store.schema_version, "case": lambda: store.case(submitted.id),
        "heads": store.heads, "cases": store.cases,
        "fire": lambda: submitted.fire("tmu.approve", actor="tmu", on="2021-11-02"),
        "close": store.close, "exit": lambda: store.__exit__(None, None, None),
    }
    for name, call in calls.items():
        error = in_thread(call)
        assert isinstance(error, af.StoreError), (name, error)
        assert "belongs to the thread that opened it" in str(error), name
        assert "one store per thread" in str(error), name
    # close() from the other thread left the store open and usable here
    assert store.schema_version >= 2
    submitted.fire("tmu.approve", actor="tmu", on="2021-11-02")
    assert store.case(submitted.id).version == 3 and store.verify().ok
    store.close()
    with pytest.raises(af.StoreError, match="closed"):
        store.case(submitted.id)
    with pytest.raises(af.StoreError, match="closed"):
        _ = store.schema_version


def test_one_store_per_thread_works(store_url, submitted):
    """Each thread opening its own store on the same file reads and writes normally."""
    def work() -> None:
        with af.open_store(store_url) as own:
            case = own.case(submitted.id)
            case.fire("aab.approve", actor="aab", on="2021-11-03")
            assert own.verify().ok

    assert in_thread(work) is None
    with af.open_store(store_url) as again:
        assert again.case(submitted.id).version == 3


# --------------------------------------------------------------------------- 12: read-only


def unprivileged(args: list[str]) -> list[str]:
    """``args`` run without root's power over file permissions (root: in a user namespace
    where it owns its files but can't override their modes), so chmod means what it says."""
    if os.geteuid() != 0:
        return args
    probe = subprocess.run(["unshare", "--map-user=1000", "--map-group=1000", "true"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("running as root and can't drop the power over file modes (unshare)")
    return ["unshare", "--map-user=1000", "--map-group=1000", *args]


def cli_process(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("approvalflow")
    return subprocess.run(unprivileged([str(exe), "--db", str(db), *args]),
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "APPROVALFLOW_DB": ""})


@pytest.fixture
def readonly_db(tmp_path: Path, seed_data: dict[str, Any]):
    """The flagship case in a chmod 444 file inside a chmod 555 folder (closed cleanly)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "cases.db"
    with af.open_store(path) as store:
        case = store.create_case(FLAGSHIP, "mimerskvarteret", actor="tmf", on="2021-12-06",
                                 data=seed_data)
        case.fire("submit", actor="tmf", on="2021-12-06")
        case.expect("3b.approve", "2021-12", actor="tmf", said_on="2021-12-06")
    path.chmod(0o444)
    folder.chmod(0o555)
    yield path
    folder.chmod(0o755)
    path.chmod(0o644)


READ_COMMANDS = [["show", "mimerskvarteret"], ["history", "mimerskvarteret"], ["cases"],
                 ["allowed", "mimerskvarteret"], ["due", "--on", "2022-01-15"], ["verify"],
                 ["heads"], ["diagram", FLAGSHIP, "--case", "mimerskvarteret"],
                 ["show", "mimerskvarteret", "--json"]]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_read_only_database_can_be_inspected(readonly_db, args):
    """Every command that only reads works on a read-only file in a read-only folder."""
    before = readonly_db.read_bytes()
    result = cli_process(readonly_db, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and not result.stderr
    assert readonly_db.read_bytes() == before
    assert sorted(p.name for p in readonly_db.parent.iterdir()) == ["cases.db"]


def test_backup_of_a_read_only_database(readonly_db, tmp_path):
    """backup reads a read-only source, and its copy verifies."""
    dest = tmp_path / "copy.db"
    result = cli_process(readonly_db, "backup", str(dest))
    assert result.returncode == 0, result.stderr
    assert "verified ok" in result.stdout
    with af.open_store(dest, readonly=True) as copy:
        assert copy.verify().ok and copy.case("mimerskvarteret").version == 3


def test_a_write_to_a_read_only_database_is_one_clear_error(readonly_db):
    """fire on a read-only database: exit 1, one Error line saying it is read-only."""
    before = readonly_db.read_bytes()
    result = cli_process(readonly_db, "fire", "mimerskvarteret", "tmu.approve", "--actor",
                         "tmu", "--on", "2021-12-07")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "read" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert readonly_db.read_bytes() == before


def test_an_unreadable_database_exits_1(tmp_path, case_db_path):
    """A database file nobody may read: exit 1 (a database that can't be used), one Error."""
    case_db_path.chmod(0o000)
    try:
        result = cli_process(case_db_path, "show", "mimerskvarteret")
    finally:
        case_db_path.chmod(0o644)
    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Usage" not in result.stderr, result.stderr
    assert "permission denied" in errors[0]


def test_a_wal_without_its_shm_in_a_read_only_folder_is_explained(tmp_path, seed_data):
    """A copied -wal without -shm in a read-only folder: one clear error, not a wrong read."""
    live = tmp_path / "live.db"
    folder = tmp_path / "copied"
    folder.mkdir()
    with af.open_store(live) as store:
        store.create_case(FLAGSHIP, "c", actor="tmf", on="2021-12-06", data=seed_data)
        (folder / "live.db").write_bytes(live.read_bytes())
        (folder / "live.db-wal").write_bytes(Path(f"{live}-wal").read_bytes())
    folder.chmod(0o555)
    try:
        result = cli_process(folder / "live.db", "cases")
    finally:
        folder.chmod(0o755)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "-wal" in result.stderr and "-shm" in result.stderr


def test_a_read_only_store_refuses_writes(store_url, submitted, flagship):
    """open_store(readonly=True): reads work; create, fire, expect, bulk and import raise
    StoreError and write nothing."""
    with af.open_store(store_url, readonly=True) as ro:
        assert ro.readonly and ro.verify().ok
        case = ro.case(submitted.id)
        assert case.state == submitted.state
        for write in (
            lambda: ro.create_case(flagship, "new", actor="tmf", on="2021-11-02"),
            lambda: case.fire("tmu.approve", actor="tmu", on="2021-11-02"),
            lambda: case.expect("3b.approve", "2021-12", actor="tmf", said_on="2021-11-02"),
            lambda: ro.import_events([{"case_id": "i", "trigger": "create",
                                       "workflow": flagship, "actor": "tmf",
                                       "on": "2021-11-02"}]),
        ):
            with pytest.raises(af.StoreError, match="read"):
                write()
        with pytest.raises(af.StoreError), ro.bulk():
            ro.create_case(flagship, "new", actor="tmf", on="2021-11-02")
    with af.open_store(store_url) as rw:
        assert [c.case_id for c in rw.cases()] == [submitted.id]
        assert rw.case(submitted.id).version == 2


def test_read_only_open_refuses_what_is_not_a_database(tmp_path):
    """readonly=True never creates a file: a missing file or another SQLite file is refused."""
    with pytest.raises(af.StoreError, match="no database"):
        af.open_store(tmp_path / "missing.db", readonly=True)
    assert list(tmp_path.iterdir()) == []
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(af.StoreError, match="not an approvalflow database"):
        af.open_store(other, readonly=True)


@pytest.mark.parametrize("case_id", ["a\x85b", "a\x9bb", "\u202eevil", "a\u200bb", "a\u200db",
                                     "\ufeffx", "a\u2066b", "a\u2028b", "a\x00b", "a\x7fb"])
def test_case_ids_with_hidden_characters_are_refused(store, flagship, case_id):
    """C1 controls, bidi controls, zero-width characters and separators in a case id are
    refused with an error naming the character."""
    with pytest.raises(af.InvalidInputError, match=r"U\+[0-9A-F]{4}"):
        store.create_case(flagship, case_id, actor="tmf", on="2021-11-01")
    assert store.cases() == []


def test_a_decomposed_case_id_is_refused_naming_its_nfc_form(store, flagship):
    """'Nørrebro' with a combining accent is refused; the error shows the NFC id to use,
    and the NFC id works."""
    decomposed = "cafe\u0301-2024"
    with pytest.raises(af.InvalidInputError, match="NFC") as info:
        store.create_case(flagship, decomposed, actor="tmf", on="2021-11-01")
    assert repr("caf\u00e9-2024") in str(info.value)
    case = store.create_case(flagship, "caf\u00e9-2024", actor="tmf", on="2021-11-01")
    assert store.case("caf\u00e9-2024").id == case.id
    with pytest.raises(af.InvalidInputError, match="NFC"):
        store.case(decomposed)


def test_notes_and_data_stay_verbatim(store):
    """Notes and data keep C1, bidi and zero-width characters and decomposed text exactly."""
    odd = "a\x85b \u202eevil\u202c z\u200bw cafe\u0301 \x1b[1m"
    case = store.create_case(af.loads_workflow(FREE_DATA), "verbatim", actor="clerk",
                             on="2021-11-01", note=odd, data={odd: odd})
    reloaded = store.case("verbatim")
    assert reloaded.history[0].note == odd and reloaded.data == {odd: odd} == case.data


def test_the_cli_refuses_a_c1_case_id(runner, tmp_path):
    """approvalflow new with a C1 control in the id: exit 1, no database left behind."""
    result = run(runner, tmp_path / "n.db", "new", FLAGSHIP, "a\x85b", "--actor", "tmf")
    assert result.exit_code == 1
    assert "U+0085" in result.stderr and "\x85" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 13: backup


@pytest.mark.sqlite_only  # backup copies a SQLite file
def test_backup_copies_a_live_log_and_verifies(store, submitted, tmp_path):
    """store.backup while the store is open: the copy verifies and holds every event."""
    approve_all(submitted)
    dest = store.backup(tmp_path / "copy.db")
    with af.open_store(dest, readonly=True) as copy:
        assert copy.verify().ok
        assert [e.hash for e in copy.events()] == [e.hash for e in store.events()]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("copy", ".copy"))) \
        == ["copy.db"]


@pytest.mark.sqlite_only  # backup copies a SQLite file
def test_backup_refuses_an_existing_destination_unless_forced(store, submitted, tmp_path,
                                                              runner, db_path):
    """An existing DEST is refused (exit 1, file untouched) unless --force replaces it."""
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"keep me")
    with pytest.raises(af.StoreError, match="already exists"):
        store.backup(dest)
    store.close()
    result = run(runner, db_path, "backup", str(dest))
    assert result.exit_code == 1 and len(error_lines(result)) == 1
    assert dest.read_bytes() == b"keep me"
    result = run(runner, db_path, "backup", str(dest), "--force")
    assert result.exit_code == 0, result.stderr
    assert "1 cases, 2 events, verified ok" in result.stdout
    with af.open_store(dest, readonly=True) as copy:
        assert copy.case(submitted.id).version == 2


@pytest.mark.sqlite_only  # backup copies a SQLite file
def test_backup_refuses_its_own_file_and_a_folder(store, db_path, tmp_path):
    """Backing a store up onto itself or onto a directory is refused."""
    with pytest.raises(af.InvalidInputError, match="itself"):
        store.backup(db_path, force=True)
    with pytest.raises(af.InvalidInputError, match="directory"):
        store.backup(tmp_path)
    assert store.verify().ok


def special_backup_targets(tmp_path: Path) -> dict[str, Path]:
    """A FIFO and, where this process may make one, a character device (/dev/null's own
    numbers) inside tmp_path: never the system's /dev/null, in case the refusal breaks."""
    targets = {"FIFO": tmp_path / "fifo.db"}
    os.mkfifo(targets["FIFO"])
    with contextlib.suppress(OSError):
        os.mknod(tmp_path / "null.db", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets["character device"] = tmp_path / "null.db"
    return targets


@pytest.mark.sqlite_only  # backup copies a SQLite file
def test_backup_never_replaces_a_fifo_or_a_device(store, tmp_path, runner, case_db_path):
    """backup onto a FIFO or a device, even with force (--force): refused naming what it is,
    and the FIFO or device is still there (it was replaced by a regular file: as root,
    'approvalflow backup /dev/null --force' replaced /dev/null)."""
    for kind, path in special_backup_targets(tmp_path).items():
        mode = path.lstat().st_mode
        with pytest.raises(af.InvalidInputError, match=kind):
            store.backup(path, force=True)
        result = run(runner, case_db_path, "backup", str(path), "--force")
        assert result.exit_code == 1 and len(error_lines(result)) == 1, result.stderr
        assert kind in error_lines(result)[0]
        assert path.lstat().st_mode == mode and not stat.S_ISREG(mode)


WRITER = ROOT / "tests" / "writer_process.py"


def read_acks(proc: subprocess.Popen[str], at_least: int) -> list[tuple[int, str]]:
    """Read the writer's 'ack SEQ HASH RETRIED' lines until it has acknowledged ``at_least``."""
    acks: list[tuple[int, str]] = []
    assert proc.stdout is not None
    while len(acks) < at_least:
        line = proc.stdout.readline()
        assert line, f"the writer stopped: {proc.stderr.read() if proc.stderr else ''}"
        _, seq, digest, _ = line.split()
        acks.append((int(seq), digest))
    return acks


def test_backup_while_writers_keep_appending(tmp_path):
    """Two writer processes keep appending while another process runs 'approvalflow backup':
    the copy verifies, holds a prefix of every case, and every event acknowledged before
    the backup started."""
    db = tmp_path / "live.db"
    dest = tmp_path / "backup.db"
    writers = [subprocess.Popen([sys.executable, str(WRITER), "crash", str(db), f"w{i}", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT)
               for i in range(2)]
    try:
        before = [read_acks(w, 30) for w in writers]
        exe = Path(sys.executable).with_name("approvalflow")
        backup = subprocess.run([str(exe), "--db", str(db), "backup", str(dest)],
                                capture_output=True, text=True, check=False)
        after = [read_acks(w, 10) for w in writers]  # they kept going
    finally:
        for w in writers:
            w.kill()
            w.wait()
    assert backup.returncode == 0, backup.stderr
    assert "verified ok" in backup.stdout
    assert all(a[-1][0] > b[-1][0] for a, b in zip(after, before, strict=True))
    with af.open_store(db) as live, af.open_store(dest, readonly=True) as copy:
        assert copy.verify().ok and live.verify().ok
        for i, acked in enumerate(before):
            copied = [(e.seq, e.hash) for e in copy.events(f"w{i}")]
            stored = [(e.seq, e.hash) for e in live.events(f"w{i}")]
            assert copied == stored[:len(copied)]  # a prefix of the live case
            assert copied[:len(acked)] == acked  # with all acknowledged before the backup


def test_data_json_cannot_hold_is_a_usage_error_on_fire(runner, case_db_path):
    """fire --data '{"a": 1e999}': exit 2 (bad --data, as docs/cli.md says), nothing stored."""
    result = run(runner, case_db_path, "fire", "mimerskvarteret", "tmu.approve", "--actor",
                 "tmu", "--data", '{"a": 1e999}')
    assert result.exit_code == 2, result.stderr
    assert "inf" in error_lines(result)[0]
    with af.open_store(case_db_path, readonly=True) as store:
        assert store.case("mimerskvarteret").version == 2


def test_read_only_needs_a_file():
    """open_store(":memory:", readonly=True) is refused: there is nothing to read."""
    with pytest.raises(af.InvalidInputError, match="readonly"):
        af.open_store(":memory:", readonly=True)


def test_an_older_file_is_migrated_by_a_reading_command_but_not_by_a_read_only_store(tmp_path,
                                                                                     runner):
    """open_store(readonly=True) on a schema-1 file refuses to migrate it (the file is
    unchanged); the CLI's reading commands then open it writable and migrate, as before."""
    from approvalflow.store import SCHEMA_VERSION, MigrationNeededError

    path = tmp_path / "v1.db"
    path.write_bytes((ROOT / "tests" / "fixtures" / "schema-1.db").read_bytes())
    before = path.read_bytes()
    with pytest.raises(MigrationNeededError, match="migrate"):
        af.open_store(path, readonly=True)
    assert path.read_bytes() == before
    result = run(runner, path, "cases")
    assert result.exit_code == 0, result.stderr
    with af.open_store(path, readonly=True) as store:
        assert store.schema_version == SCHEMA_VERSION and store.verify().ok


def test_a_refusal_does_not_echo_huge_data_keys(submitted):
    """Data keys a step may not set are named in the refusal, each cut to 60 characters and
    at most ten of them: a 100,000-character key is not echoed back in full."""
    data = {"k" * 100_000: 1, **{f"x{n:02d}": n for n in range(15)}}
    with pytest.raises(af.TransitionRefusedError) as info:
        submitted.fire("tmu.approve", actor="tmu", on="2021-12-06", data=data)
    message = str(info.value)
    assert "may not set the data 'k" in message and "(cut; 100000 characters)" in message
    assert "and 6 more" in message and len(message) < 2_000, len(message)
