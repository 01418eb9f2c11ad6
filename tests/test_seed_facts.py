"""The seed's facts, each checked against the workflow, the demo and docs/flagship.md.

Each row: a quote from the seed (the 2021 recommendation, in Danish), the fact in English,
where the model holds it, and a check against the bundled workflow, the demo case and the
demo's text. docs/flagship.md carries the same table (its quotes and places are checked
here) and the list of every assumption.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import approvalflow as af
from approvalflow.demo import ASSUMPTIONS, build_demo, describe

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP_DOC = (ROOT / "docs" / "flagship.md").read_text(encoding="utf-8")


class Seen(NamedTuple):
    wf: af.Workflow
    case: af.Case
    text: str  # the demo's account, unwrapped


class Fact(NamedTuple):
    quote: str
    fact: str
    where: str
    check: Callable[[Seen], bool]


def _labels(wf: af.Workflow, trigger: str) -> str:
    return " ".join(t.label for t in wf.transitions_for(trigger))


FACTS = [
    Fact("Den nuværende helhedsplan udløber 28. februar 2022",
         "the old plan expires on 28 February 2022",
         "case data `expires`; the region `old_plan` and the step `old_plan_expires`",
         lambda s: s.case.data["expires"] == "2022-02-28"
         and s.wf.transitions_for("old_plan_expires")[0].target == "old_expired"
         and "expires on 2022-02-28 (seed)" in s.text),
    Fact("med henblik på igangsættelse af indsatserne fra 1. marts 2022",
         "the effort is to start on 1 March 2022",
         "case data `planned_start`; the goal `started` and its target",
         lambda s: s.case.data["planned_start"] == "2022-03-01" and s.wf.goal == "started"
         and "The start on 2022-03-01 (seed)" in s.text),
    Fact("Når Teknik- og Miljøudvalget har godkendt og det er godkendt beboerdemokratisk, "
         "vil sagen blive endeligt behandlet i Landsbyggefonden",
         "the committee and the residents approve, in any order, then LBF's final treatment",
         "the parallel state `approval`, its join `send_to_lbf`, then `lbf_review`",
         lambda s: s.wf.state("approval").kind == "parallel"
         and s.wf.transitions_for("send_to_lbf")[0].join
         and "Endelig behandling" in s.wf.label_of("lbf_review")),
    Fact("Effektuering af den boligsociale indsats og den medfølgende kommunale "
         "medfinansiering afhænger af en godkendelse i det almene beboerdemokrati",
         "the effort depends on the residents' approval",
         "the `quorum` of `approval`: at least one organisation's departments done; "
         "`no_departments_left`",
         lambda s: s.wf.state("approval").quorum is not None
         and s.wf.state("approval").quorum.at_least == 1  # type: ignore[union-attr]
         and s.wf.transitions_for("no_departments_left")[0].quorum_lost),
    Fact("Landsbyggefonden og Københavns Kommune har givet tilsagn til boligafdelingerne",
         "LBF and the municipality have already given the departments a commitment",
         "case data `commitment` (the seed's words); LBF's step is its final treatment",
         lambda s: "har givet tilsagn til boligafdelingerne" in s.case.data["commitment"]["seed"]
         and "endelige behandling" in _labels(s.wf, "lbf.approve")
         and "Already given (seed)" in s.text),
    Fact("AAB’s afdeling har godkendt",
         "AAB's department has approved (date unknown)",
         "the demo's `aab.approve`, dated by the latest date it is known by",
         lambda s: any(e.trigger == "aab.approve" and not e.date_known for e in s.case.history)
         and "date unknown, known by 2021-12-06" in s.text),
    Fact("3B forventer godkendelse i november",
         "3B expects its approval in November (the year, 2021, is inferred: the seed names "
         "the month only)",
         "an expectation of `3b.approve`, not a decision",
         lambda s: any(x.step == "3b.approve" and x.given == "2021-11"
                       for x in s.case.expectations())
         and "3b_pending" in s.case.state),
    Fact("VIBO’s afdelinger forventes at godkende endeligt i januar 2022",
         "VIBO's departments (plural) expect final approval in January 2022",
         "an expectation of `vibo.approve`; VIBO's departments are a vote group",
         lambda s: any(x.step == "vibo.approve" and x.given == "2022-01"
                       for x in s.case.expectations())
         and len(s.wf.votes["vibo"].voters) > 1 and "vibo_voting" in s.case.state),
    Fact("Seks boligafdelinger omkring Mimersgade på Nørrebro",
         "six departments are covered",
         "case data `departments`; the regions' `covers` (the split is an assumption)",
         lambda s: s.case.data["departments"] == 6
         and sum(len(d.covers) for d in s.wf.state_defs.values()) == 6
         and "ASSUMPTION: the split of the six departments" in s.text),
    Fact("Samlet set tilføres der dermed 4 mio. kr. til Nørrebrobyggernes budget for "
         "perioden 2022-2024",
         "4 mio. kr. for 2022-2024",
         "case data `budget.total` (whole kroner) and `period`",
         lambda s: s.case.data["budget"]["total"] == 4_000_000
         and s.case.data["period"] == "2022-2024"),
    Fact("forpligtet sig til at medfinansiere 12,5 % af de boligsociale helhedsplaners "
         "samlede budget",
         "the municipality co-finances 12.5 % of the total",
         "the guard `financing_ok`: the municipality's share at most 12.5 %",
         lambda s: any("12.5 %" in p for p in af.rules.financing_problems(
             {**s.case.data["budget"], "municipality": 600_000, "housing": 600_000,
              "lbf": 2_800_000}))),
    Fact("Boligorganisationernes og Københavns Kommunes medfinansiering udgør jævnfør "
         "gældende regulativ 25 % og Landsbyggefondens støtte udgør de resterende 75 %",
         "local co-financing at least 25 %, LBF at most 75 %",
         "the guard `financing_ok` on `send_to_lbf`",
         lambda s: "financing_ok" in s.wf.transitions_for("send_to_lbf")[0].guards
         and any("75 %" in p for p in af.rules.financing_problems(
             {**s.case.data["budget"], "lbf": 3_100_000, "housing": 400_000}))),
    Fact("Heraf blev 1,1 mio. kr. afsat til helhedsplan i Mimerskvarteret",
         "1.1 mio. kr. earmarked",
         "case data `budget.earmarked`; no step may set it",
         lambda s: s.case.data["budget"]["earmarked"] == 1_100_000
         and not any("budget.earmarked" in (t.sets or ()) or "budget" in (t.sets or ())
                     for t in s.wf.transitions)),
    Fact("Kommunen bruger derfor kun 0,5 mio. kr. af de mulige 1,1 mio. kr.",
         "the municipality uses 0.5 mio. kr.",
         "case data `budget.municipality`",
         lambda s: s.case.data["budget"]["municipality"] == 500_000),
    Fact("De resterende 0,6 mio. kr. vil blive brugt på andre indsatser",
         "the remaining 0.6 mio. kr. goes to other efforts, approved by TMU and BR",
         "the workflow `medfinansiering-restbeloeb`; its amount at most 0.6 mio. kr.",
         lambda s: af.rules.remainder_problems({"amount": 600_000}) == []
         and af.rules.remainder_problems({"amount": 600_001}) != []),
    Fact("tilkendegiver kommunen, at den på lige fod med boligorganisationerne støtter op om",
         "with TMU's approval the municipality commits to the effort's four goals",
         "`tmu.approve` records `goals_commitment` (the four goals, in the seed's words)",
         lambda s: len(next(e for e in s.case.history if e.trigger == "tmu.approve")
                       .data["goals_commitment"]["goals"]) == 4),
]


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seen]:
    with af.open_store(tmp_path_factory.mktemp("seed") / "demo.db") as store:
        case = build_demo(store)
        yield Seen(case.definition, case, describe(case, width=10_000))


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f.fact[:40])
def test_the_model_holds_the_seed_fact(seen: Seen, fact: Fact) -> None:
    """The workflow, the demo case and its text hold the fact where the table says."""
    assert fact.check(seen), fact


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f.fact[:40])
def test_flagship_doc_carries_the_same_row(fact: Fact) -> None:
    """docs/flagship.md's table quotes the seed and names where the model holds the fact."""
    assert fact.quote in FLAGSHIP_DOC, fact.quote
    assert fact.where in FLAGSHIP_DOC, fact.where


def test_the_public_tmu_date_is_the_only_outside_fact(seen: Seen) -> None:
    """The demo's only dated decision is TMU's public 6 December 2021; no LBF or later step."""
    fired = [(e.trigger, e.on.isoformat()) for e in seen.case.history if e.kind == "fire"]
    assert ("tmu.approve", "2021-12-06") in fired
    assert all(on == "2021-12-06" for _, on in fired)
    assert not any(t.startswith(("lbf.", "3b.", "vibo.", "start")) for t, _ in fired)


@pytest.mark.parametrize("key", sorted(ASSUMPTIONS))
def test_every_assumption_is_listed_and_labelled(seen: Seen, key: str) -> None:
    """Each assumption the demo records is in the doc's assumption list and in `show`."""
    from approvalflow.views.summary import case_summary, summary_text

    assert f"**{key}**" in FLAGSHIP_DOC
    assert f"ASSUMPTION ({key})" in summary_text(case_summary(seen.case))


def test_no_invented_duration_anywhere(seen: Seen) -> None:
    """No step of the flagship has a duration; the docs do not present one as fact."""
    assert not any(t.duration_days for t in seen.wf.transitions)
    assert "typically 28 days" not in seen.text
    for page in ("flagship.md", "tutorial.md", "index.md", "forecast.md"):
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        assert "typically 28 days" not in text, page


def _words(value: Any) -> str:
    return " ".join(value) if isinstance(value, list | tuple) else str(value)


def test_the_four_department_split_is_never_stated_as_fact() -> None:
    """'VIBO has four departments' appears nowhere without being called an assumption."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             ROOT / "docs" / "notebooks" / "mimerskvarteret.ipynb"]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for phrase in ("VIBO has four", "VIBO's four departments", "four VIBO departments"):
            at = text.find(phrase)
            while at != -1:
                window = text[max(0, at - 300): at + 300].lower()
                assert "assum" in window, (page.name, phrase)
                at = text.find(phrase, at + 1)


def _paragraph(text: str, phrase: str) -> str:
    at = text.index(phrase)
    start = text.rfind("\n\n", 0, at)
    end = text.find("\n\n", at)
    return text[start: end if end != -1 else len(text)]


def test_lbfs_deadline_is_called_an_assumption_where_the_docs_derive_from_it() -> None:
    """The pages that give LBF's 28 February 2022 as the latest date say it is assumed."""
    flagship = _paragraph(FLAGSHIP_DOC, "needs LBF's final treatment by 28 February 2022")
    assert "assumption" in flagship.lower()
    forecast = (ROOT / "docs" / "forecast.md").read_text(encoding="utf-8")
    backwards = _paragraph(forecast, "LBF must finish by 2022-02-28")
    assert "assumes nothing." not in backwards
    assert "itself an assumption" in backwards


def test_show_does_not_call_the_latest_dates_assumption_free(seen: Seen) -> None:
    """`show` points to the latest dates as assuming no duration, not as assuming nothing:
    in the flagship they rest on LBF's assumed deadline."""
    from approvalflow.views.summary import case_summary, summary_text

    text = summary_text(case_summary(seen.case, on=dt.date(2021, 12, 6)))
    assert "ASSUMPTION: a step marked 'none'" in text
    assert "assumes nothing" not in text
    assert "ASSUMPTION (lbf)" in text


def test_the_doc_names_every_unstated_choice_of_the_model() -> None:
    """Who sends the case to LBF and records the start, and the no-outcomes, are listed as
    the model's choices; the year of 3B's November is marked inferred."""
    assumed = FLAGSHIP_DOC[FLAGSHIP_DOC.index("## What the model assumes"):]
    assert "**who takes the administrative steps**" in assumed
    assert "`send_to_lbf`, `start`" in assumed and "(`tmf`)" in assumed
    assert "**the other outcomes**" in assumed
    assert "November (the year, 2021, is inferred" in FLAGSHIP_DOC


def test_no_page_puts_invented_dates_on_the_seed_case() -> None:
    """Only the demo creates 'mimerskvarteret'; examples with made-up steps use other ids."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert '"mimerskvarteret", actor=' not in text, page.name
        assert "case 'mimerskvarteret' event" not in text, page.name


def test_the_cli_page_shows_the_demo_on_the_bundled_flagship() -> None:
    """docs/cli.md's outputs of the demo case (and of `workflows`) name the flagship's
    current version and the old plan's region among its states."""
    version = af.load_workflow("boligsocial-helhedsplan").version
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"boligsocial-helhedsplan'?\s+v(\d+)", text))  # `workflows` pads
    shown |= set(re.findall(r'"workflow_version": (\d+)', text))
    assert shown == {str(version)}, shown
    assert "3b_pending, aab_approved, tmu_approved" not in text
    assert '"3b_pending", "aab_approved", "tmu_approved"' not in text


def test_the_timeline_labels_what_the_case_assumes(seen: Seen) -> None:
    """The demo's SVG timeline marks its as-soon-as-possible forecast and names every
    assumption the case data records."""
    from approvalflow.views.timeline import case_svg

    svg = str(case_svg(seen.case, on=dt.date(2021, 12, 6)))
    assert "lbf.approve: forecast 2022-01-31 (none, assumed taken as soon as it can be)" in svg
    assert "ASSUMPTION: a forecast marked &apos;none&apos; is the step taken as soon as it " \
        "can be" in svg
    assert f"ASSUMPTIONS in the case data, not facts: {', '.join(sorted(ASSUMPTIONS))}" in svg
