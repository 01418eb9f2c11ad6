"""The demo: the Mimerskvarteret case built from the seed's facts, rebuilt on every run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.demo import CASE_ID, describe, run_demo


def test_demo_records_only_known_facts(tmp_path: Path) -> None:
    """TMU (6 Dec 2021) and AAB have approved; 3B and VIBO are awaited; nothing is invented."""
    case = run_demo(tmp_path / "demo.db")
    try:
        assert {"tmu_approved", "aab_approved", "3b_pending", "vibo_voting",
                "old_running"} == case.state
        tmu = next(e for e in case.history if e.trigger == "tmu.approve")
        assert tmu.on.isoformat() == "2021-12-06"
        aab = next(e for e in case.history if e.trigger == "aab.approve")
        assert aab.data["dates"]["aab.approve"]["decided_on"] == "unknown"
        assert not aab.date_known and aab.on_text == "by 2021-12-06 (date unknown)"
        assert tmu.date_known and tmu.on_text == "2021-12-06"
        assert not any(e.trigger.startswith(("3b.", "vibo.", "lbf.")) for e in case.history)
        assert tmu.data["goals_commitment"]["goals"][1] == \
            "At flere bliver tilknyttet arbejdsmarkedet"
        assert "har givet tilsagn til boligafdelingerne" in case.data["commitment"]["seed"]
        assert set(case.data["assumptions"]) == {"budget", "departments", "dates", "lbf"}
        assert case._store.verify().ok
    finally:
        case._store.close()


def test_demo_text_says_who_is_awaited(tmp_path: Path) -> None:
    """The account names the approvals, the awaited parties, the financing and the start."""
    case = run_demo(tmp_path / "demo.db")
    try:
        text = describe(case)
    finally:
        case._store.close()
    assert "Godkendt af udvalget" in text and "tmu.approve, 2021-12-06" in text
    assert "date unknown, known by 2021-12-06" in text
    assert "awaited: 3b; expected 2021-11" in text
    assert "awaited: vibo_afd_1, vibo_afd_2, vibo_afd_3, vibo_afd_4" in text
    assert "keeps the rules: total 4.000.000 kr." in text
    assert "waiting for '3b'" in text and "'vibo'" in text
    assert "2022-03-01" in text and "2022-02-28" in text


def test_demo_answers_backwards_first_and_marks_every_assumption(tmp_path: Path) -> None:
    """The latest dates come first; the budget split, the department split, LBF's deadline
    and the forward forecast's as-soon-as-possible steps are each marked ASSUMPTION."""
    case = run_demo(tmp_path / "demo.db")
    try:
        text = describe(case, width=1000)
    finally:
        case._store.close()
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if "must be taken by" in line)
    assert first < next(i for i, line in enumerate(lines) if line.startswith("Who has"))
    assert "lbf.approve (lbf) must be taken by 2022-02-28" in text
    assert "vibo.approve (vibo_afd_1, vibo_afd_2, vibo_afd_3, vibo_afd_4) must be taken by " \
           "2022-02-28" in text
    assert "typically" not in text and "28 days" not in text
    for marked in ["ASSUMPTION: the split LBF 3.0 / housing organisations 0.5 mio. kr. is "
                   "derived", "ASSUMPTION: the split of the six departments (AAB 1, 3B 1, "
                   "VIBO 4) is not in the seed", "ASSUMPTION: that LBF's final treatment is "
                   "due by the old plan's expiry", "ASSUMPTION: a step with no expected date "
                   "is assumed taken as soon as it can be"]:
        assert marked in text, marked
    assert "VIBO has four" not in text and "four departments" not in text
    assert "said on 2021-12-06" not in text
    assert "(said in the recommendation, date unknown; recorded on 2021-12-06)" in text
    assert 'Already given (seed): "Landsbyggefonden og Københavns Kommune har givet tilsagn' \
        in text


def test_demo_rebuilds_its_own_file(tmp_path: Path) -> None:
    """Running the demo twice gives one case with the same events, not two or a doubled log."""
    path = tmp_path / "demo.db"
    run_demo(path)._store.close()
    case = run_demo(path)
    case._store.close()
    with af.open_store(path) as store:
        assert [c.case_id for c in store.cases()] == [CASE_ID]
        assert len(list(store.events(CASE_ID))) == len(case.history)


def test_demo_refuses_a_database_with_other_cases(tmp_path: Path, flagship) -> None:
    """The demo won't delete a database that holds someone's cases."""
    path = tmp_path / "work.db"
    with af.open_store(path) as store:
        store.create_case(flagship, "real-case", actor="tmf", on="2022-01-01")
    with pytest.raises(af.StoreError, match="holds other cases \\('real-case'\\)"):
        run_demo(path)
    with af.open_store(path) as store:
        assert [c.case_id for c in store.cases()] == ["real-case"]


def test_demo_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    """The demo won't overwrite a file that is not an approvalflow database."""
    path = tmp_path / "notes.txt"
    path.write_text("my notes", encoding="utf-8")
    with pytest.raises(af.StoreError, match="not a demo database"):
        run_demo(path)
    assert path.read_text(encoding="utf-8") == "my notes"


def test_demo_command_in_a_real_process(tmp_path: Path) -> None:
    """The installed console script runs the demo in the current folder and exits 0."""
    exe = shutil.which("approvalflow", path=os.path.dirname(sys.executable)) or \
        shutil.which("approvalflow")
    assert exe, "the approvalflow console script is not installed"
    result = subprocess.run([exe, "demo"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Teknik- og Miljøudvalget" in result.stdout
    assert (tmp_path / "mimerskvarteret-demo.db").is_file()
    assert "Traceback" not in result.stderr


def test_demo_says_the_clock_takes_the_old_plans_expiry(tmp_path: Path) -> None:
    """The old plan's line says the clock takes the expiry, not that timers are still to come."""
    case = run_demo(tmp_path / "demo.db")
    try:
        text = describe(case, width=1000)
    finally:
        case._store.close()
    assert "once timed steps exist" not in text
    assert "runs until 2022-02-28 (seed); the clock takes its expiry on that date by itself" \
        in text


def test_demo_names_the_source_of_tmus_date(tmp_path: Path) -> None:
    """TMU's 6 December 2021 is not in the seed: where the account shows it, it says so."""
    case = run_demo(tmp_path / "demo.db")
    try:
        text = describe(case, width=1000)
    finally:
        case._store.close()
    [line] = [ln for ln in text.splitlines() if "(tmu.approve, " in ln]
    assert "2021-12-06: public minutes, not in the seed" in line


def test_demo_marks_what_it_adds_to_the_seeds_words(tmp_path: Path) -> None:
    """The year of 3B's 'i november' and the administration as sender to LBF and starter
    of the effort are not in the seed: the account marks both."""
    case = run_demo(tmp_path / "demo.db")
    try:
        text = describe(case, width=1000)
    finally:
        case._store.close()
    assert 'expected 2021-11 (seed: "3B forventer godkendelse i november"; the year is ' \
        'inferred)' in text
    assert 'expected 2022-01 (seed: "VIBO\'s afdelinger forventes at godkende endeligt i ' \
        'januar 2022")' in text
    assert "ASSUMPTION: the seed names no one who sends the case to Landsbyggefonden or " \
        "records the start; the model gives both steps to the administration (tmf)." in text


def test_demo_does_not_date_the_submission(tmp_path: Path) -> None:
    """The seed gives no date for the recommendation: its submission is recorded with an
    unknown date, known by TMU's meeting, as AAB's approval is."""
    case = run_demo(tmp_path / "demo.db")
    try:
        submit = next(e for e in case.history if e.trigger == "submit")
        assert not submit.date_known
        assert submit.on_text == "by 2021-12-06 (date unknown)"
        assert case._store.verify().ok
    finally:
        case._store.close()


def test_demo_suggests_show_as_of_the_record(tmp_path: Path) -> None:
    """The suggested 'show' asks as of the record's last date, where the seed's forecast
    holds; asked as of today, every 2022 date has long passed."""
    db = tmp_path / "demo.db"
    done = subprocess.run([sys.executable, "-m", "approvalflow", "--db", str(db), "demo"],
                          capture_output=True, text=True, check=True)
    assert f"approvalflow --db {db} show mimerskvarteret --on 2021-12-06\n" in done.stdout
