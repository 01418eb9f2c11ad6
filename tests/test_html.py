"""Notebook HTML: workflows, cases and histories render as escaped, script-free HTML."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest

import approvalflow as af
from approvalflow.demo import build_demo
from approvalflow.views.html import HistoryTable, case_html, history_html, workflow_html

from .conftest import approve_all
from .test_diagram import TRICKY

VOID = {"br", "hr", "img", "input", "meta", "link", "wbr"}


class _Checker(HTMLParser):
    """Checks that tags nest and close, and collects tags, attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs.extend(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_html(markup: str) -> _Checker:
    """Parse ``markup``; fail on unbalanced tags, scripts, styles blocks or fetched resources."""
    checker = _Checker()
    checker.feed(markup)
    checker.close()
    assert not checker.errors, checker.errors[:3]
    assert not checker.stack, checker.stack
    assert not checker.tags & {"script", "style", "img", "iframe", "link", "object"}
    names = {name for name, _ in checker.attrs}
    assert not names & {"src", "href"} and not any(n.startswith("on") for n in names)
    return checker


@pytest.fixture
def demo_case(store) -> af.Case:
    return build_demo(store)


def _active_codes(markup: str) -> set[str]:
    """State ids whose box carries the active (highlighted) style."""
    return set(re.findall(r'<div style="border:2px solid #b45309;[^"]*">[^<]*<code[^>]*>([^<]+)'
                          r"</code>", markup))


@pytest.mark.parametrize("name", af.bundled_workflows())
def test_workflow_html_shows_every_state_and_step(name: str) -> None:
    """A workflow's HTML names every state (label and id), actor and trigger, and is clean."""
    wf = af.load_workflow(name)
    checker = check_html(wf._repr_html_())
    text = " ".join(checker.text)
    for sid, d in wf.state_defs.items():
        assert sid in text and d.label in text
    for t in wf.transitions:
        assert t.trigger in text
    for actor in wf.actors.values():
        assert actor in text


def test_workflow_html_escapes_labels() -> None:
    """A label holding <script> is shown as text, never as a tag."""
    wf = af.loads_workflow(TRICKY)
    markup = workflow_html(wf)
    checker = check_html(markup)
    assert "<script>alert(1)</script>" in " ".join(checker.text)
    assert "&lt;script&gt;" in markup and "<script" not in markup


def test_workflow_html_marks_regions_of_the_parallel_state(flagship: af.Workflow) -> None:
    """The parallel approval state is marked, and each region is a dashed box."""
    markup = workflow_html(flagship)
    assert "parallel: all regions at once" in markup
    parallel = [s for s, d in flagship.state_defs.items() if d.kind == "parallel"]
    assert markup.count("border:1px dashed") == sum(len(flagship.regions(s)) for s in parallel)


def test_case_html_highlights_active_states(demo_case: af.Case) -> None:
    """The case's active leaves, and only they, are highlighted in the state tree."""
    markup = demo_case._repr_html_()
    check_html(markup)
    assert _active_codes(markup) & demo_case.definition.leaves == set(demo_case.state)


def test_case_html_shows_decided_and_awaited(store, demo_case: af.Case) -> None:
    """Done regions name who decided; open ones name who is awaited and on what (asked
    before the old plan expires: after it, only the clock may act)."""
    view = store.case(demo_case.id, as_of="2022-01-15")
    text = " ".join(check_html(case_html(view)).text)
    assert "aab.approve" in text and "tmu.approve" in text
    assert "awaiting" in text
    assert "3B's afdelingsmøde (3B v. KAB)" in text
    for n in range(1, 5):
        assert f"vibo_afd_{n}" in text


def test_case_html_escapes_notes_and_data(demo_case: af.Case) -> None:
    """A note and data holding markup are shown as text."""
    demo_case.fire("3b.approve", actor="3b", on="2021-12-10",
                   note="<script>alert('x')</script> & <b>bold</b>",
                   data={"dates": {"3b.approve": {"<img src=x onerror=alert(1)>": "<i>"}}})
    markup = demo_case._repr_html_()
    checker = check_html(markup)
    text = " ".join(checker.text)
    assert "<script>alert('x')</script> & <b>bold</b>" in text
    assert "<img src=x onerror=alert(1)>" in text
    assert "<script" not in markup and "<b>" not in markup


def test_case_html_shows_ballots(demo_case: af.Case) -> None:
    """An open vote shows how many have voted and each voter's ballot."""
    demo_case.fire("vibo.approve", actor="vibo_afd_1", on="2022-01-10")
    demo_case.fire("vibo.approve", actor="vibo_afd_2", on="2022-01-11")
    text = " ".join(check_html(case_html(demo_case)).text)
    assert "2 of 4 have voted" in text
    assert "not yet" in text and "yes" in text


def test_case_html_of_a_past_view_and_an_ended_case(store, demo_case: af.Case) -> None:
    """An as_of view says so; an ended case is marked as ended."""
    past = store.case(demo_case.id, as_of="2021-12-06")
    assert "as of 2021-12-06" in case_html(past)
    ended = store.create_case("boligsocial-helhedsplan", "ended", actor="tmf", on="2021-11-01")
    ended.fire("submit", actor="tmf", on="2021-11-01")
    ended.fire("tmu.reject", actor="tmu", on="2021-11-02")
    assert ended.is_final
    assert ">ended<" in case_html(ended)


def test_history_table_is_a_sequence_that_renders(demo_case: af.Case) -> None:
    """history_table() holds the case's events and renders one row per event."""
    table = demo_case.history_table()
    assert isinstance(table, HistoryTable)
    assert len(table) == len(demo_case.history) and table[0].kind == "create"
    assert list(table) == list(demo_case.history)
    assert repr(table).splitlines()[0] == f"<HistoryTable: {len(demo_case.history)} events>"
    markup = table._repr_html_()
    check_html(markup)
    assert markup.count("<tr>") == len(demo_case.history) + 1


def test_history_html_without_workflow_shows_ids(submitted: af.Case) -> None:
    """Without a workflow the table shows state ids rather than labels."""
    approve_all(submitted)
    markup = history_html(submitted.history)
    check_html(markup)
    assert "vibo_approved" in markup and "Godkendt af VIBO" not in markup
    assert "(ballot)" in markup


def test_case_html_has_the_deadlines_and_forecast_of_show(store, seed_data) -> None:
    """The case HTML carries the same deadline and forecast lines as 'approvalflow show'."""
    from approvalflow.views.summary import section_lines

    case = store.create_case("boligsocial-helhedsplan", "fictional-html", actor="tmf",
                             on="2021-11-01", data=seed_data)
    case.fire("submit", actor="tmf", on="2021-11-01")
    page = case._repr_html_()
    sections = section_lines(case, ("deadlines", "forecast"))
    assert sections["forecast"], "the flagship names a goal, so show has a forecast"
    for lines in sections.values():
        for line in lines:
            assert html.escape(line) in page, line
def test_case_html_marks_assumptions_and_coverage(demo_case: af.Case) -> None:
    """The demo case's HTML lists each assumption marked ASSUMPTION, and who is covered."""
    text = " ".join(check_html(case_html(demo_case)).text)
    assert "Assumptions (not facts of the case)" in text
    # every assumption of the case data is marked (the forecast section, from 'show', may
    # mark more of its own)
    assert text.count("ASSUMPTION") >= len(demo_case.data["assumptions"])
    page = case_html(demo_case)
    for value in demo_case.data["assumptions"].values():
        assert f"ASSUMPTION</span>: {html.escape(value)}" in page
    assert "Covered by the plan" in text and "vibo_afd_4" in text
