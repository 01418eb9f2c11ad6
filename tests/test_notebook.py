"""DataFrames of events, the missing-pandas error, and the flagship notebook run by a kernel."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.demo import build_demo
from approvalflow.views.notebook import COLUMNS

from .conftest import approve_all

pd = pytest.importorskip("pandas")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "mimerskvarteret.ipynb"


def test_history_frame_has_one_row_per_event_with_proper_dtypes(submitted: af.Case) -> None:
    """history_frame(): a row per event, 'on' a datetime64 date, 'recorded_at' tz-aware UTC."""
    approve_all(submitted)
    frame = submitted.history_frame()
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == len(submitted.history)
    assert pd.api.types.is_datetime64_dtype(frame["on"])
    assert not isinstance(frame["on"].dtype, pd.DatetimeTZDtype)
    assert (frame["on"] == frame["on"].dt.normalize()).all()
    assert isinstance(frame["recorded_at"].dtype, pd.DatetimeTZDtype)
    assert str(frame["recorded_at"].dt.tz) == "UTC"
    assert frame["seq"].dtype == "int64" and frame["moved"].dtype == bool
    assert frame["on"].iloc[-1] == pd.Timestamp("2022-01-31")
    first = submitted.history[0].recorded_at
    assert frame["recorded_at"].iloc[0].to_pydatetime() == first.astimezone(dt.UTC)


def test_history_frame_values_match_the_events(submitted: af.Case) -> None:
    """Entered and left states, ballots and notes carry over from the events."""
    submitted.fire("vibo.approve", actor="vibo_afd_1", on="2021-12-01", note="første ja")
    frame = submitted.history_frame().set_index("seq")
    last = submitted.history[-1]
    assert frame.loc[last.seq, "note"] == "første ja"
    assert not frame.loc[last.seq, "moved"]  # a ballot that did not complete the vote
    submit = frame.loc[2]
    assert submit["trigger"] == "submit" and submit["left"] == ("draft",)
    assert set(submit["entered"]) == {"tmu_pending", "aab_pending", "3b_pending", "vibo_voting"}
    assert pd.isna(frame.loc[1, "note"])


def test_events_frame_of_a_store(store) -> None:
    """store.events_frame() covers every case; with a case id, only that case."""
    build_demo(store)
    other = store.create_case("boligsocial-helhedsplan", "other", actor="tmf", on="2022-01-02")
    other.fire("submit", actor="tmf", on="2022-01-03")
    everything = store.events_frame()
    assert set(everything["case_id"]) == {"mimerskvarteret", "other"}
    assert len(everything) == len(list(store.events()))
    assert len(store.events_frame("other")) == 2
    assert pd.api.types.is_datetime64_dtype(everything["on"])


def test_events_frame_of_an_empty_store_keeps_dtypes(store) -> None:
    """An empty store gives an empty frame with the same columns and dtypes."""
    frame = store.events_frame()
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    assert pd.api.types.is_datetime64_dtype(frame["on"])
    assert isinstance(frame["recorded_at"].dtype, pd.DatetimeTZDtype)


def test_frames_without_pandas_name_the_notebook_extra(tmp_path: Path) -> None:
    """With pandas unimportable, history_frame() and events_frame() name the 'notebook' extra."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pandas"] = None  # as if pandas were not installed
        import approvalflow as af
        from approvalflow.demo import build_demo
        with af.open_store({str(tmp_path / "x.db")!r}) as store:
            case = build_demo(store)
            for call in (case.history_frame, store.events_frame):
                try:
                    call()
                except af.ApprovalflowError as e:
                    print(type(e).__name__, isinstance(e, ImportError), "|", e)
            print(repr(case.history_table()).splitlines()[0]
                  == f"<HistoryTable: {{len(case.history)}} events>")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    for line in lines[:2]:
        assert line.startswith("MissingDependencyError True |")
        assert "approvalflow[notebook]" in line and "pandas" in line
    assert lines[2] == "True"  # the table needs no pandas


def test_saved_notebook_has_its_outputs() -> None:
    """The flagship notebook is stored executed: every code cell ran and shows output."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 15
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    shown = [c for c in code if c.outputs]
    assert len(shown) >= len(code) - 2  # only the closing cells print nothing
    html = [o for c in code for o in c.outputs if "text/html" in o.get("data", {})]
    assert html, "the case and workflow displays are saved as HTML"


def test_notebook_runs_in_a_real_kernel(tmp_path: Path) -> None:
    """docs/notebooks/mimerskvarteret.ipynb runs top to bottom in an IPython kernel, no errors."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                   for o in outputs)
    assert "<Case 'mimerskvarteret'" in text and "started" in text
    assert "'old_expired'" in text  # the gap, entered while the approval goes on
    assert "ASSUMPTION (departments)" in text and "lbf.approve (lbf) must be taken by 2022-02-28" \
        in text
    assert list(tmp_path.iterdir()) == []  # the notebook cleans up after itself


def test_saved_notebook_shows_the_bundled_flagship() -> None:
    """The saved outputs show the flagship's current version and its clock-taken expiry, and
    the text does not say timed steps are still to come."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    version = af.load_workflow("boligsocial-helhedsplan").version
    shown = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                    for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    versions = set(re.findall(r"boligsocial-helhedsplan'? v(\d+)", shown))
    assert versions == {str(version)}, versions
    assert "old_plan_expires" in shown  # the clock's step, in the saved history table
    prose = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "once timed steps exist" not in prose
