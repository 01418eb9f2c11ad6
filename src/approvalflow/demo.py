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
from .definition import load_workflow
from .engine import engine_for
from .errors import ApprovalflowError, StoreError
from .forecast import Forecast, forecast
from .replay import replay
from .rules import financing_problems, kroner
from .store import Store, open_store

__all__ = ["CASE_ID", "DEFAULT_DB", "SEED_DATA", "build_demo", "describe", "run_demo"]

CASE_ID = "mimerskvarteret"
DEFAULT_DB = "mimerskvarteret-demo.db"
WORKFLOW = "boligsocial-helhedsplan"
TMU_MEETING = dt.date(2021, 12, 6)

SEED_DATA: dict[str, Any] = {
    "title": "Videreførelse af boligsocial indsats i Mimerskvarteret, Nørrebro",
    "plan": "Nørrebrobyggerne",
    "period": "2022-2024",
    "budget": {"total": 4_000_000, "lbf": 3_000_000, "municipality": 500_000,
               "housing": 500_000, "earmarked": 1_100_000},
    "expires": "2022-02-28",
    "planned_start": "2022-03-01",
    "organisations": ["AAB", "3B (KAB)", "VIBO"],
    "departments": 6,
}

#: Expected dates the seed gives, as written there (a month, not a day).
SEED_EXPECTATIONS = {"3b": ("2021-11", "3B forventer godkendelse i november"),
                     "vibo": ("2022-01", "VIBO's afdelinger forventes at godkende endeligt "
                                         "i januar 2022")}


def build_demo(store: Store) -> Case:
    """Record the Mimerskvarteret case's known facts in ``store`` and return the case."""
    wf = load_workflow(WORKFLOW)
    case = store.create_case(
        wf, CASE_ID, actor="tmf", on=TMU_MEETING, data=SEED_DATA,
        note="Indstilling fra Teknik- og Miljøforvaltningen til Teknik- og Miljøudvalget. "
             "The date it was written is unknown; recorded on the date of TMU's meeting.")
    case.fire("submit", actor="tmf", on=TMU_MEETING,
              note="Forelagt Teknik- og Miljøudvalget og beboerdemokratiet.")
    case.fire("aab.approve", actor="aab", on=TMU_MEETING,
              data={"dates": {"aab.approve": {"decided_on": "unknown",
                                              "known_by": TMU_MEETING.isoformat()}}},
              note="AAB's afdeling har godkendt (seed). The date of the residents' meeting is "
                   "unknown; recorded on the latest date it is known by.")
    for region, (month, text) in SEED_EXPECTATIONS.items():
        case.expect(f"{region}.approve", month, actor="tmf", said_on=TMU_MEETING,
                    note=f"Indstillingen: \"{text}\".")
    case.fire("tmu.approve", actor="tmu", on=TMU_MEETING,
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
    """The forecast as of the recommendation (before TMU's decision), and as the case stands.

    Every event is recorded on TMU's meeting day (the recommendation's own date is
    unknown), so "as of the recommendation" is the log up to the event before TMU's
    approval, not a date.
    """
    history = list(case.history)
    last = history[-1].on
    out = []
    tmu = next((i for i, e in enumerate(history) if e.trigger == "tmu.approve"), None)
    if tmu is not None:
        before = history[:tmu]
        state = replay(engine_for(case.definition), before)
        out.append(("As of the recommendation (before the committee's decision)",
                    forecast(case.definition, state, before, case_id=case.id,
                             on=before[-1].on)))
        title = f"After the committee's approval on {history[tmu].on.isoformat()}"
    else:
        title = f"As the case stands on {last.isoformat()}"
    out.append((title, case.forecast(on=last)))
    return out


def describe(case: Case, *, width: int = 80) -> str:
    """A plain-text account of where the Mimerskvarteret case stands."""
    wf = case.definition
    last = case.history[-1].on
    lines = [f"{case.data.get('title', case.id)}",
             f"Case {case.id!r} on workflow {wf.name!r} v{wf.version}, "
             f"{len(case.history)} events, last dated {last.isoformat()}.", ""]
    entered_by = case.entered_by()
    lines.append("Who has decided, who is awaited:")
    for region in case.regions(on=last):
        event = entered_by.get(region.state)
        if region.done and event is not None:
            when = event.on.isoformat() if event.date_known else \
                f"date unknown, known by {event.on.isoformat()}"
            status = f"{wf.actors[event.actor]} ({event.trigger}, {when})"
        else:
            who = sorted(a for a, ts in region.awaiting.items() if not set(ts) <= _SIDE_STEPS)
            expected = SEED_EXPECTATIONS.get(region.id or "")
            status = "awaited: " + (", ".join(who) if who else "-")
            if expected:
                status += f"; expected {expected[0]} (seed: \"{expected[1]}\")"
        lines.append(f"  {region.label}")
        lines.append(f"    {region.state_label} [{region.state}]")
        lines.append(f"    {status}")
    for vote, ballots in case.ballots().items():
        vg = wf.votes[vote]
        lines.append(f"  Vote {vote!r}: {len(ballots)} of {len(vg.voters)} departments have "
                     f"voted.")
    lines.append("")
    budget = case.data.get("budget", {})
    problems = financing_problems(budget)
    lines.append("Financing (LBF at most 75 %, local share at least 25 %, municipality at most "
                 "the housing organisations' share and the earmarked amount):")
    if problems:
        lines.extend(f"  - {p}" for p in problems)
    else:
        lines.append(f"  keeps the rules: total {kroner(budget['total'])} = LBF "
                     f"{kroner(budget['lbf'])} + municipality {kroner(budget['municipality'])} + "
                     f"housing organisations {kroner(budget['housing'])} "
                     f"(earmarked {kroner(budget['earmarked'])}).")
    lines.append("")
    lines.append("What must happen before Landsbyggefonden can decide (send_to_lbf):")
    reasons = case.why_not("send_to_lbf", actor="tmf", on=last)
    lines.extend(f"  - {r}" for r in reasons) if reasons else lines.append("  nothing: it can "
                                                                            "be sent now.")
    lines.append("")
    lines.append(f"The start on {case.data.get('planned_start')}: it needs Landsbyggefonden's "
                 f"grant (tilsagn) on or before {case.data.get('expires')}, when the old plan "
                 f"expires; without it the area has a gap.")
    for timer in case.timers(on=last):
        lines.append(f"  By itself: {timer.describe()}.")
    if case.is_final:
        lines.append(f"  The case has ended: {', '.join(sorted(case.state))}.")
    else:
        lines.append("  Not yet possible: " + "; ".join(case.why_not("start", actor="tmf",
                                                                       on=last)) + ".")
    lines.append("")
    lines.append("Forecast (docs/forecast.md): will the effort start on the planned date?")
    for title, fc in forecasts(case):
        lines.append(f"{title}:")
        lines.extend(f"  {line}" for line in fc.describe().splitlines())
    return "\n".join(wrapped for line in lines for wrapped in _wrap(line, width))


def _wrap(line: str, width: int) -> list[str]:
    """``line`` folded to ``width`` columns, continuation lines indented under it."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.wrap(line, width=width, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False)
