"""The timeline picture: valid SVG, the case's facts in it, hostile text escaped, rendered."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from approvalflow.cli import cli

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE_NOTE = "\x1b]0;pwned\x07 <script>alert(1)</script> & \u202eevil"


@pytest.fixture
def case(store, seed_data):
    """A fictional flagship case: submitted, AAB on an unknown date, TMU, 3B expected."""
    case = store.create_case("boligsocial-helhedsplan", "fictional <b>&\"x", actor="tmf",
                             on="2021-11-01", data=seed_data)
    case.fire("submit", actor="tmf", on="2021-11-01", note=HOSTILE_NOTE)
    case.fire("aab.approve", actor="aab", on="2021-11-05",
              data={"dates": {"aab.approve": {"decided_on": "unknown"}}})
    case.fire("tmu.approve", actor="tmu", on="2021-12-06")
    case.expect("3b.approve", "2021-11", actor="3b", said_on="2021-12-06")
    return case


def _texts(svg: str) -> str:
    root = ET.fromstring(svg)
    return "\n".join("".join(el.itertext()) for el in root.iter()
                     if el.tag in (f"{SVG}text", f"{SVG}title"))


def test_case_timeline_is_svg_with_the_case_facts(case) -> None:
    """The SVG parses as XML and names the steps, the actors, the dates and the target."""
    svg = case.timeline(on="2021-12-06")
    assert svg._repr_svg_() == str(svg) == svg.text
    root = ET.fromstring(svg.text)
    assert root.tag == f"{SVG}svg"
    texts = _texts(svg.text)
    for fact in ("tmu.approve (tmu)", "aab.approve (aab)", "submit (tmf)",
                 "date unknown, known by 2021-11-05", "today 2021-12-06",
                 "target 2022-03-01", "3b.approve"):
        assert fact in texts, fact
    assert "<script" not in svg.text and "\x1b" not in svg.text and "\u202e" not in svg.text


def test_hostile_text_is_escaped_not_interpreted(case) -> None:
    """A case id and a note with markup and control characters come out as plain text."""
    svg = case.timeline(on="2021-12-06").text
    texts = _texts(svg)
    assert 'fictional <b>&"x' in texts  # parsed back: it was escaped, not markup
    assert "\\x1b]0;pwned\\x07 <script>alert(1)</script>" in texts
    assert "\\u202eevil" in texts
    assert not [el for el in ET.fromstring(svg).iter() if el.tag.endswith("script")]


def test_portfolio_has_one_row_per_case(store, case, seed_data) -> None:
    """store.timeline() draws one labelled row per case."""
    other = store.create_case("medfinansiering-restbeloeb", "rest-fictional", actor="tmf",
                              on="2022-01-10", data={"amount": 600_000})
    other.fire("propose", actor="tmf", on="2022-01-12")
    svg = store.timeline(on="2022-01-15").text
    texts = _texts(svg)
    assert "fictional <b>&\"x [" in texts and "rest-fictional [tmu_review]" in texts
    assert "2 case(s)" in texts


def test_cli_timeline_writes_a_file(tmp_path: Path, case) -> None:
    """approvalflow timeline CASE -o FILE writes the same SVG; --all draws the portfolio."""
    out = tmp_path / "case.svg"
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", case._store.path, "timeline", case.id, "-o", str(out),
                                 "--on", "2021-12-06"])
    assert result.exit_code == 0, result.output
    assert ET.parse(out).getroot().tag == f"{SVG}svg"
    every = runner.invoke(cli, ["--db", case._store.path, "timeline", "--all"])
    assert every.exit_code == 0 and every.output.startswith("<svg")
    neither = runner.invoke(cli, ["--db", case._store.path, "timeline"])
    assert neither.exit_code == 2 and "Name a case" in neither.output


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed "
                    "(Debian: apt-get install chromium); .ci/run installs it")
def test_timeline_renders_in_headless_chromium(tmp_path: Path, case) -> None:
    """Chromium draws the SVG to a PNG that is not blank."""
    svg = tmp_path / "timeline.svg"
    case.timeline(on="2021-12-06").save(svg)
    png = tmp_path / "timeline.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={png}", "--window-size=960,340",
                    svg.as_uri()], check=True, timeout=120, capture_output=True)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
