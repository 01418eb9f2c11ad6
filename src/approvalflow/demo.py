"""The Mimerskvarteret case, built from the seed's facts, and a plain-text account of it.

The facts (DOMAIN.md, the seed recommendation, TMU's public minutes):

- the plan: Mimerskvarteret folded into Nørrebrobyggerne, 4.0 mio. kr. for 2022-2024,
  LBF 3.0, the municipality 0.5, the housing organisations 0.5, 1.1 earmarked;
- AAB's department has approved (the date of its meeting is unknown: it is recorded on
  the latest date it is known by, TMU's meeting, and marked as such);
- TMU approved the content on 6 December 2021 (public minutes);
- 3B expects its residents' approval in November 2021, VIBO's departments in January
  2022: expectations, not decisions, so those regions are still awaited;
- the old plan expires on 28 February 2022; the effort is to start on 1 March 2022.

The expectations are recorded as such (``case.expect``), said by the administration on
the date the recommendation is recorded on; the account shows the forecast as of the
recommendation (before TMU's decision) and again after TMU's approval.
"""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from pathlib import Path
from typing import Any

from .case import Case
from .definition import Workflow
from .errors import ApprovalflowError, StoreError
from .forecast import Forecast
from .loading import load_workflow
from .rules import financing_problems, kroner
from .store import Store, open_store

__all__ = ["ASSUMPTIONS", "CASE_ID", "COMMITMENT", "DEFAULT_DB", "GOALS", "SEED_DATA",
           "build_demo", "describe", "run_demo"]

CASE_ID = "mimerskvarteret"
DEFAULT_DB = "mimerskvarteret-demo.db"
WORKFLOW = "boligsocial-helhedsplan"
TMU_MEETING = dt.date(2021, 12, 6)

#: The seed's words on the commitment already given, and on what TMU's approval means.
COMMITMENT = ("Landsbyggefonden og Københavns Kommune har givet tilsagn til boligafdelingerne "
              "til at modtage økonomisk støtte til en boligsocial indsats for "
              "Mimerskvarteret.")
GOALS = ("At der skal ske et fagligt løft af børn og unge, så flere bliver skoleparate og "
         "tager en uddannelse",
         "At flere bliver tilknyttet arbejdsmarkedet",
         "At børn og unge støttes i et liv uden kriminalitet, og at områderne opleves trygge",
         "At flere bliver en del af fællesskabet og deltager aktivt i samfundet")
GOALS_COMMITMENT = ("Med godkendelse af indsatsen tilkendegiver kommunen, at den på lige fod med "
                    "boligorganisationerne støtter op om og arbejder for at indfri indsatsens "
                    "specifikke målsætninger")

#: What the model assumes where the seed is silent: shown wherever the case is shown.
ASSUMPTIONS: dict[str, str] = {
    "budget": "the split LBF 3.0 / municipality 0.5 / housing organisations 0.5 mio. kr. is "
              "derived (it fits 75 / 12.5 / 12.5 %); the budget attachment (bilag 4) is not "
              "in the seed",
    "departments": "the split of the six departments (AAB 1, 3B 1, VIBO 4) is an assumption; "
                   "the seed says only that there are six and that VIBO has several",
    "dates": "the recommendation's own date and the date of AAB's approval are unknown: "
             "both are recorded on 2021-12-06 (TMU's meeting, public minutes), the latest "
             "date they are known by",
    "lbf": "no duration of Landsbyggefonden's final treatment is given anywhere: none is "
           "assumed; its deadline is the old plan's expiry (2022-02-28) so that the start "
           "on 2022-03-01 follows without a gap",
}

SEED_DATA: dict[str, Any] = {
    "title": "Videreførelse af boligsocial indsats i Mimerskvarteret, Nørrebro",
    "plan": "Nørrebrobyggerne",
    "period": "2022-2024",
    # whole kroner; total (4.0 mio.) and earmarked (1.1 mio.) and the municipality's 0.5
    # mio. are the seed's; the LBF / housing organisations split is derived (ASSUMPTIONS)
    "budget": {"total": 4_000_000, "lbf": 3_000_000, "municipality": 500_000,
               "housing": 500_000, "earmarked": 1_100_000},
    "expires": "2022-02-28",
    "planned_start": "2022-03-01",
    "organisations": ["AAB", "3B (KAB)", "VIBO"],
    "departments": 6,
    "commitment": {"given_by": ["Landsbyggefonden", "Københavns Kommune"],
                   "to": "boligafdelingerne", "seed": COMMITMENT,
                   "remaining": "Landsbyggefondens endelige behandling"},
    "assumptions": ASSUMPTIONS,
}

#: Decisions whose date the seed does not give, and where the date comes from instead.
OUTSIDE_SEED = {"tmu.approve": "public minutes, not in the seed"}

#: Expected dates the seed gives, as written there (a month, not a day).
SEED_EXPECTATIONS = {"3b": ("2021-11", "3B forventer godkendelse i november"),
                     "vibo": ("2022-01", "VIBO's afdelinger forventes at godkende endeligt "
                                         "i januar 2022")}


def build_demo(store: Store, *, workflow: Workflow | None = None) -> Case:
    """Record the Mimerskvarteret case's known facts in ``store`` and return the case
    (on the bundled flagship workflow, or on ``workflow``, a variant of it)."""
    wf = workflow or load_workflow(WORKFLOW)
    case = store.create_case(
        wf, CASE_ID, actor="tmf", on=TMU_MEETING, data=SEED_DATA,
        note="Indstilling fra Teknik- og Miljøforvaltningen til Teknik- og Miljøudvalget. "
             "The date it was written is unknown; recorded on the date of TMU's meeting.")
    case.fire("submit", actor="tmf", on=TMU_MEETING,
              data={"dates": {"submit": {"decided_on": "unknown",
                                         "known_by": TMU_MEETING.isoformat()}}},
              note="Forelagt Teknik- og Miljøudvalget og beboerdemokratiet. The date of the "
                   "recommendation is unknown; recorded on the latest date it is known by.")
    case.fire("aab.approve", actor="aab", on=TMU_MEETING,
              data={"dates": {"aab.approve": {"decided_on": "unknown",
                                              "known_by": TMU_MEETING.isoformat()}}},
              note="AAB's afdeling har godkendt (seed). The date of the residents' meeting is "
                   "unknown; recorded on the latest date it is known by.")
    for region, (month, text) in SEED_EXPECTATIONS.items():
        case.expect(f"{region}.approve", month, actor="tmf", said_on=TMU_MEETING,
                    note=f"Indstillingen: \"{text}\". Said in the recommendation, whose "
                         f"date is unknown; recorded on TMU's meeting date.")
    case.fire("tmu.approve", actor="tmu", on=TMU_MEETING,
              data={"goals_commitment": {"seed": GOALS_COMMITMENT, "goals": list(GOALS)}},
              note="Teknik- og Miljøudvalget godkender indholdet og anbefaler det over for "
                   "Landsbyggefonden (public minutes, 6 December 2021).")
    return case


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        target = Path(f"{path}{suffix}")
        if target.exists():
            target.unlink()


def run_demo(path: str | os.PathLike[str] = DEFAULT_DB) -> Case:
    """(Re)build the demo database at ``path``; refuse a database that holds other cases."""
    target = Path(path)
    if target.exists():
        try:
            with open_store(target, create=False) as existing:
                others = [c.case_id for c in existing.cases() if c.case_id != CASE_ID]
        except ApprovalflowError as e:
            raise StoreError(f"{str(target)!r} exists and is not a demo database ({e}); "
                             f"the demo only rebuilds its own file. Pass --db with another "
                             f"path.") from e
        if others:
            shown = ", ".join(repr(o) for o in others[:5])
            raise StoreError(f"{str(target)!r} holds other cases ({shown}); the demo only "
                             f"rebuilds its own file. Pass --db with another path.")
        _remove_database(target)
    store = open_store(target)
    try:
        case = build_demo(store)
    except BaseException:
        store.close()
        raise
    return case


#: Steps that are not the awaited decision itself (a department leaving the vote).
_SIDE_STEPS = {"vibo.withdraw"}


def forecasts(case: Case) -> list[tuple[str, Forecast]]:
    """The forward forecast as the case stands (as of its last event).

    The recommendation's own date is unknown, so no forecast is shown "as of the
    recommendation": the expectations it states are recorded on TMU's meeting day, the
    first date the case is known by.
    """
    last = case.history[-1].on
    return [(f"As the case stands on {last.isoformat()}", case.forecast(on=last))]


def describe(case: Case, *, width: int = 80) -> str:
    """A plain-text account of where the Mimerskvarteret case stands; every assumption is
    marked ASSUMPTION, every seed fact is quoted or named as the seed's."""
    wf = case.definition
    last = case.history[-1].on
    lines = [f"{case.data.get('title', case.id)}",
             f"Case {case.id!r} on workflow {wf.name!r} v{wf.version}, "
             f"{len(case.history)} events, last dated {last.isoformat()}.", ""]
    latest = case.latest_dates(on=last)
    lines.append(f"For the start on {case.data.get('planned_start')} to hold, working "
                 f"backwards (no duration assumed):")
    for step in latest.steps:
        names = ", ".join(step.actors)
        lines.append(f"  {step.step} ({names}) must be taken by {step.latest.isoformat()} "
                     f"[{step.set_by}]" + (" - PASSED" if step.passed else ""))
    lines.extend(f"  Note: {n}" for n in latest.notes)
    lines.append("  ASSUMPTION: that LBF's final treatment is due by the old plan's expiry "
                 "(so the start follows without a gap) links two seed dates; the seed states "
                 "no such deadline.")
    lines.append("  ASSUMPTION: the seed names no one who sends the case to Landsbyggefonden "
                 "or records the start; the model gives both steps to the administration "
                 "(tmf).")
    lines.append("")
    commitment = case.data.get("commitment", {})
    if isinstance(commitment, dict) and commitment.get("seed"):
        lines.append(f"Already given (seed): \"{commitment['seed']}\"")
        lines.append("  What remains is Landsbyggefonden's final treatment (endelig "
                     "behandling): approve, send back, or refuse.")
        lines.append("")
    entered_by = case.entered_by()
    lines.append("Who has decided, who is awaited:")
    for region in case.regions(on=last):
        event = entered_by.get(region.state)
        outcome = case.region_outcome(region.id) if region.id else "open"
        if region.done and event is not None:
            when = event.on.isoformat() if event.date_known else \
                f"date unknown, known by {event.on.isoformat()}"
            if event.trigger in OUTSIDE_SEED:
                when += f": {OUTSIDE_SEED[event.trigger]}"
            gone = " - withdrew, not covered" if outcome == "not done" else ""
            status = f"{wf.actors[event.actor]} ({event.trigger}, {when}){gone}"
        else:
            who = sorted(a for a, ts in region.awaiting.items() if not set(ts) <= _SIDE_STEPS)
            expected = SEED_EXPECTATIONS.get(region.id or "")
            status = "awaited: " + (", ".join(who) if who else "-")
            if region.id == "old_plan":
                status = (f"runs until {case.data.get('expires')} (seed); the clock "
                          f"takes its expiry on that date by itself (a timed step)")
            if expected:
                inferred = "" if expected[0][:4] in expected[1] else "; the year is inferred"
                status += f"; expected {expected[0]} (seed: \"{expected[1]}\"{inferred})"
        lines.append(f"  {region.label}")
        lines.append(f"    {region.state_label} [{region.state}]")
        lines.append(f"    {status}")
    for vote, ballots in case.ballots().items():
        vg = wf.votes[vote]
        lines.append(f"  Vote {vote!r}: {len(ballots)} of {len(vg.voters)} departments have "
                     f"voted.")
    coverage = case.coverage()
    if coverage:
        covered = [p for inside, _ in coverage.values() for p in inside]
        left = [p for _, out in coverage.values() for p in out]
        lines.append(f"  Departments in the plan: {', '.join(covered) or 'none'}"
                     + (f"; withdrawn: {', '.join(left)}" if left else "") + ".")
        lines.append("  ASSUMPTION: the split of the six departments (AAB 1, 3B 1, VIBO 4) is "
                     "not in the seed; it says there are six, and that VIBO has several.")
    lines.append("")
    budget = case.data.get("budget", {})
    problems = financing_problems(budget)
    lines.append("Financing (LBF at most 75 %, local share at least 25 %, municipality at most "
                 "12.5 % of the total, at most the housing organisations' share and at most the "
                 "earmarked amount; whole kroner):")
    if problems:
        lines.extend(f"  - {p}" for p in problems)
    else:
        lines.append(f"  keeps the rules: total {kroner(budget['total'])} = LBF "
                     f"{kroner(budget['lbf'])} + municipality {kroner(budget['municipality'])} + "
                     f"housing organisations {kroner(budget['housing'])} "
                     f"(earmarked {kroner(budget['earmarked'])}).")
        lines.append("  Seed: total 4 mio. kr.; 1.1 mio. kr. earmarked, of which the "
                     "municipality uses 0.5 mio. kr.")
        lines.append("  ASSUMPTION: the split LBF 3.0 / housing organisations 0.5 mio. kr. is "
                     "derived (it fits 75 / 12.5 / 12.5 %); the budget attachment (bilag 4) is "
                     "not in the seed.")
    lines.append("")
    lines.append("What must happen before Landsbyggefonden's final treatment (send_to_lbf):")
    reasons = case.why_not("send_to_lbf", actor="tmf", on=last)
    lines.extend(f"  - {r}" for r in reasons) if reasons else lines.append("  nothing: it can "
                                                                            "be sent now.")
    lines.append("")
    lines.append(f"The start on {case.data.get('planned_start')} (seed) follows LBF's final "
                 f"treatment. The old plan expires on {case.data.get('expires')} (seed); "
                 f"without LBF's approval by then the area has a gap (inferred, not in the "
                 f"seed).")
    for timer in case.timers(on=last):
        lines.append(f"  By itself: {timer.describe()}.")
    if case.is_final:
        lines.append(f"  The case has ended: {', '.join(sorted(case.state))}.")
    else:
        lines.append("  Not yet possible: " + "; ".join(case.why_not("start", actor="tmf",
                                                                       on=last)) + ".")
    lines.append("")
    lines.append("Forward forecast (docs/forecast.md). ASSUMPTION: a step with no expected "
                 "date is assumed taken as soon as it can be, so its answer is the earliest "
                 "possible, not a prediction:")
    for title, fc in forecasts(case):
        lines.append(f"{title}:")
        # the seed's expectations were said in the recommendation, whose date is unknown
        said = f"(said on {TMU_MEETING.isoformat()})"
        honest = f"(said in the recommendation, date unknown; recorded on " \
                 f"{TMU_MEETING.isoformat()})"
        lines.extend(f"  {line.replace(said, honest)}" for line in fc.describe().splitlines())
    return "\n".join(wrapped for line in lines for wrapped in _wrap(line, width))


def _wrap(line: str, width: int) -> list[str]:
    """``line`` folded to ``width`` columns, continuation lines indented under it."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.wrap(line, width=width, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False)
