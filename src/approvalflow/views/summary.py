"""The case summary behind ``approvalflow show``: a JSON-ready document and its text.

:func:`case_summary` answers, for one case, everything a person following it asks:
its regions and their states, who has decided and when, who is awaited, open votes,
the steps allowed now and by whom, deadlines, the forecast and the last events.
:func:`summary_text` renders that document at 80 columns. Each section is one
:class:`SummaryPart` in :data:`PARTS`: one key of the document and one block of text,
so a new section is one more entry.

Only the standard library is imported at module level, so the command line starts fast.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ..case import Case, Event
    from ..definition import Workflow

__all__ = ["PARTS", "SummaryPart", "case_summary", "summary_text", "terminal_safe",
           "json_safe", "BIDI_CONTROLS"]

#: Unicode's bidirectional formatting characters: they reorder what a terminal shows.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7f, 0xa0)] if c != 0x0a}
#: Unicode's line and paragraph separators: a line break to many readers (Python's
#: splitlines, some terminals and editors), so stored text could make up a line.
LINE_SEPARATORS = frozenset("\u2028\u2029")
_UNSAFE.update({ord(c): f"\\u{ord(c):04x}" for c in BIDI_CONTROLS | LINE_SEPARATORS})
_JSON_UNSAFE = {c: f"\\u{c:04x}" for c in [*range(0x7f, 0xa0),
                                           *map(ord, BIDI_CONTROLS | LINE_SEPARATORS)]}


def terminal_safe(text: str) -> str:
    """``text`` as it may be written to a terminal: control characters (C0 except the
    newline, DEL, C1) and bidi controls shown as visible escapes (``\\x1b``, ``\\u202e``),
    and anything UTF-8 can't hold (a lone surrogate) as ``\\udcxx``. Every text output
    of the command line passes through here, so stored text can't drive the terminal."""
    safe = text.translate(_UNSAFE)
    try:
        safe.encode("utf-8")
    except UnicodeEncodeError:
        safe = safe.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe


def json_safe(text: str) -> str:
    """JSON text with DEL, C1 and bidi controls also written as ``\\uXXXX`` escapes (JSON
    escapes C0 itself): the same JSON value, but nothing in it can drive a terminal."""
    return terminal_safe(text.translate(_JSON_UNSAFE))

WIDTH = 80
#: How many of the last events the text shows (the document has them all).
LAST_EVENTS = 5


def wrap(text: str, indent: int = 2, hang: int = 4) -> list[str]:
    """``text`` wrapped at 80 columns; continuation lines indented by ``hang``."""
    return textwrap.wrap(text, width=WIDTH, initial_indent=" " * indent,
                         subsequent_indent=" " * hang, break_on_hyphens=False,
                         break_long_words=True) or [" " * indent]


def ids(items: Iterable[str]) -> str:
    return ", ".join(sorted(items)) or "-"


def by_trigger(awaiting: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """actor -> triggers turned into trigger -> actors, both sorted."""
    out: dict[str, list[str]] = {}
    for actor, triggers in sorted(awaiting.items()):
        for trigger in triggers:
            out.setdefault(trigger, []).append(actor)
    return dict(sorted(out.items()))


def step_label(wf: Workflow, trigger: str, case: Case | None = None) -> str:
    """The label of the transition ``trigger`` takes now (or its first one)."""
    if case is not None:
        t = case.transition(trigger)
        if t is not None:
            return t.label
    found = wf.transitions_for(trigger)
    return found[0].label if found else ""


def allowed_line(case: Case, awaiting: Mapping[str, Sequence[str]]) -> str:
    """'Allowed now: a (by x), b (by y, z).' in one line, for messages."""
    steps = by_trigger(awaiting)
    if case.is_final:
        return "The case has ended; nothing more can happen."
    if not steps:
        return "Nothing is allowed now (see 'approvalflow allowed ID')."
    shown = [f"{t} (by {', '.join(a)})" for t, a in steps.items()]
    return "Allowed now: " + "; ".join(shown) + "."


def event_lines(e: dict[str, Any], *, indent: int = 2) -> list[str]:
    """An event (as ``Event.to_dict`` gives it) as text: head line, change of state, note."""
    kind = "" if e["kind"] == "fire" else f"[{e['kind']}] "
    person = f" ({e['by']})" if e.get("by") else ""
    lines = wrap(f"{e['seq']:>3}  {e['on']}  {kind}{e['trigger']} by {e['actor']}{person}",
                  indent, indent + 7)
    pad = indent + 7
    source, target = set(e["source"]), set(e["target"])
    if e["kind"] == "create":
        lines += wrap(f"in {ids(target)}", pad, pad + 2)
    elif source != target:
        lines += wrap(f"left {ids(source - target)}; now in {ids(target - source)}",
                       pad, pad + 2)
    elif e["kind"] == "fire":
        lines += wrap("ballot recorded, no change of state", pad, pad + 2)
    if e["data"] and e["kind"] != "create":  # the creation's data is the case's: see --json
        lines += wrap(f"data: {json.dumps(e['data'], ensure_ascii=False)}", pad, pad + 2)
    if e["note"]:
        lines += wrap(f"note: {e['note']}", pad, pad + 2)
    return lines




class SummaryContext(NamedTuple):
    """What every part of ``show`` may use."""

    case: Case  # the case as loaded (perhaps a view as of a date)
    on: dt.date  # the date steps are evaluated on
    awaiting: dict[str, list[str]]  # actor -> triggers allowed on ``on``


class SummaryPart(NamedTuple):
    """One part of ``show``: a key of its JSON object and a section of its text."""

    key: str
    build: Callable[[SummaryContext], Any]  # the JSON-ready value under ``key``
    render: Callable[[Any, dict[str, Any]], list[str]]  # (value, whole object) -> lines


def _show_head(ctx: SummaryContext) -> dict[str, Any]:
    case, wf = ctx.case, ctx.case.definition
    return {
        "case_id": case.id, "workflow": case.workflow,
        "workflow_version": case.workflow_version, "workflow_title": wf.title,
        "workflow_label": wf.label, "title": case.data.get("title"),
        "state": sorted(case.state), "version": case.version,
        "last_on": case.last_on.isoformat() if case.last_on else None,
        "is_final": case.is_final,
        "as_of": case.as_of.isoformat() if case.as_of else None,
        "on": ctx.on.isoformat(),
    }


def _head_lines(doc: dict[str, Any]) -> list[str]:
    lines = wrap(f"Case {doc['case_id']!r}" + (f": {doc['title']}" if doc["title"] else ""),
                  0, 2)
    lines += wrap(f"Workflow: {doc['workflow']} v{doc['workflow_version']} "
                   f"({doc['workflow_label']})", 0, 2)
    end = "; the case has ended" if doc["is_final"] else ""
    lines += wrap(f"Events: {doc['version']}, the last dated {doc['last_on']}{end}", 0, 2)
    if doc["as_of"]:
        lines += wrap(f"As of {doc['as_of']}: only events dated on or before it are "
                       f"counted.", 0, 2)
    return lines


def _event_ref(e: Event | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"seq": e.seq, "trigger": e.trigger, "actor": e.actor, "on": e.on.isoformat(),
            "date_known": e.date_known}


def _build_regions(ctx: SummaryContext) -> list[dict[str, Any]]:
    wf = ctx.case.definition
    entered = ctx.case.entered_by()
    out = []
    for r in ctx.case.regions(on=ctx.on):
        out.append({
            "id": r.id, "label": r.label, "state": r.state, "state_label": r.state_label,
            "done": r.done and (r.id is None or ctx.case.region_outcome(r.id) != "not done"),
            "outcome": ctx.case.region_outcome(r.id) if r.id else None,
            "entered_by": _event_ref(entered.get(r.state)),
            "awaiting": {a: list(ts) for a, ts in sorted(r.awaiting.items())},
            "actor_labels": {a: wf.actors.get(a, a) for a in sorted(r.awaiting)},
        })
    return out


def _group_actors(awaiting: Mapping[str, Sequence[str]]) -> list[tuple[list[str], list[str]]]:
    """Actors that may take the same steps, together: [(actors, triggers)]."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for actor, triggers in sorted(awaiting.items()):
        groups.setdefault(tuple(triggers), []).append(actor)
    return [(actors, list(triggers)) for triggers, actors in groups.items()]


def _region_lines(regions: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    lines = ["Regions"]
    for r in regions:
        lines += wrap(r["label"] + (f" [{r['id']}]" if r["id"] else ""), 2, 4)
        ended = ", done" if r["done"] else \
            ", ended without taking part (not done)" if r["outcome"] == "not done" else ""
        lines += wrap(f"{r['state_label']} [{r['state']}]{ended}", 4, 6)
        by = r["entered_by"]
        if by and r["done"]:
            when = (f"on {by['on']}" if by["date_known"]
                    else f"on an unknown date, by {by['on']}")
            lines += wrap(f"decided by {by['actor']} {when} ({by['trigger']}, event "
                           f"{by['seq']})", 4, 6)
        elif by:
            lines += wrap(f"since {by['on']} ({by['trigger']} by {by['actor']}, event "
                           f"{by['seq']})", 4, 6)
        for actors, triggers in _group_actors(r["awaiting"]):
            lines += wrap(f"awaited: {', '.join(actors)} ({', '.join(triggers)})", 4, 6)
    return lines


def _build_decided(ctx: SummaryContext) -> list[dict[str, Any]]:
    wf = ctx.case.definition
    return [{"seq": e.seq, "on": e.on.isoformat(), "date_known": e.date_known,
             "actor": e.actor, "actor_label": wf.actors.get(e.actor, e.actor), "by": e.by,
             "trigger": e.trigger, "moved": e.moved} for e in ctx.case.decisions()]


def _decided_lines(decided: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    lines = ["Decided"]
    if not decided:
        return lines + ["  nobody yet"]
    for d in decided:
        unknown = "" if d["date_known"] else " (exact date unknown)"
        person = f", {d['by']}" if d.get("by") else ""
        lines += wrap(f"{d['on']}  {d['actor']} ({d['actor_label']}{person}): "
                      f"{d['trigger']}{unknown}", 2, 14)
    return lines


def _build_awaited(ctx: SummaryContext) -> list[dict[str, Any]]:
    wf = ctx.case.definition
    return [{"actor": a, "actor_label": wf.actors.get(a, a), "triggers": list(ts)}
            for a, ts in sorted(ctx.awaiting.items())]


def _awaited_lines(awaited: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    if doc["is_final"]:
        return ["Awaited", "  nobody: the case has ended"]
    lines = [f"Awaited on {doc['on']}"]
    if not awaited:
        return lines + wrap("nobody may take a step on this date; 'approvalflow allowed "
                             f"{doc['case_id']}' says why", 2, 4)
    for a in awaited:
        lines += wrap(f"{a['actor']} ({a['actor_label']})", 2, 4)
    return lines


def _build_votes(ctx: SummaryContext) -> list[dict[str, Any]]:
    case = ctx.case
    wf = case.definition
    active = case.active_states
    ballots = case.ballots()
    withdrawn = case.withdrawn()
    out = []
    for vg in wf.votes.values():
        if vg.state not in active:
            continue
        cast = dict(ballots.get(vg.id, {}))
        gone = sorted(withdrawn.get(vg.id, frozenset()))
        electorate = [v for v in vg.voters if v not in gone]
        out.append({
            "id": vg.id, "label": vg.label, "voters": list(vg.voters),
            "need": vg.required(len(electorate)),
            "ballots": {v: cast[v] for v in vg.voters if v in cast},
            "withdrawn": gone,
            "awaited": [v for v in electorate if v not in cast],
        })
    return out


def _vote_lines(votes: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    if not votes:
        return []
    lines = ["Open votes"]
    for v in votes:
        yes = sum(1 for b in v["ballots"].values() if b == "yes")
        lines += wrap(f"{v['label']} [{v['id']}]: {yes} yes of {v['need']} needed", 2, 4)
        for voter, ballot in v["ballots"].items():
            lines += wrap(f"{voter}: {ballot}", 4, 6)
        for voter in v["withdrawn"]:
            lines += wrap(f"{voter}: withdrew", 4, 6)
        if v["awaited"]:
            lines += wrap(f"not yet voted: {', '.join(v['awaited'])}", 4, 6)
    return lines


def _build_allowed(ctx: SummaryContext) -> list[dict[str, Any]]:
    wf = ctx.case.definition
    # every step that may be taken, also those nobody is awaited for (awaited = false)
    return [{"trigger": t, "label": step_label(wf, t, ctx.case), "actors": actors}
            for t, actors in by_trigger(ctx.case.permitted(on=ctx.on)).items()]


def _allowed_lines(allowed: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    if doc["is_final"]:
        return []
    lines = [f"Allowed on {doc['on']}"]
    if not allowed:
        return lines + ["  nothing"]
    for a in allowed:
        label = f": {a['label']}" if a["label"] else ""
        lines += wrap(f"{a['trigger']} by {', '.join(a['actors'])}{label}", 2, 6)
    return lines


def _build_history(ctx: SummaryContext) -> list[dict[str, Any]]:
    return [e.to_dict() for e in ctx.case.history]


def _history_lines(history: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    shown = history[-LAST_EVENTS:]
    title = "Last events" if len(history) > len(shown) else "Events"
    lines = wrap(f"{title} ({len(shown)} of {len(history)}; all: approvalflow history "
                  f"{doc['case_id']})", 0, 2)
    for e in shown:
        lines += event_lines(e)
    return lines


def _build_deadlines(ctx: SummaryContext) -> list[dict[str, Any]]:
    return [d.to_dict() for d in ctx.case.deadlines(on=ctx.on)]


def _deadline_lines(deadlines: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    if not deadlines:
        return []
    lines = [f"Deadlines on {doc['on']}"]
    for d in deadlines:
        when = d["due"] or "unknown"
        days = "" if d["days_left"] is None else f", {d['days_left']} days left" \
            if d["taken_on"] is None else f", taken {d['taken_on']}"
        forecast = f", forecast {d['forecast']}" if d["forecast"] else ""
        lines += wrap(f"{d['status']:<7}  {d['step']} by {when} ({d['rule']}{days}"
                       f"{forecast})" + (f"; {d['note']}" if d["note"] else ""), 2, 11)
    return lines


def _build_timers(ctx: SummaryContext) -> list[dict[str, Any]]:
    return [t.to_dict() for t in ctx.case.timers(on=ctx.on)]


def _timer_lines(timers: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    """The timed steps armed now: what the clock does by itself (approvalflow tick)."""
    if not timers:
        return []
    lines = [f"Timers on {doc['on']} (taken by the clock: approvalflow tick)"]
    for t in timers:
        where = "reminder, no change of state" if t["target"] is None else \
            f"{t['source']} -> {t['target']}"
        # an escalation's rule already says whose deadline is missed
        lines += wrap(f"{t['status']:<8} {t['due']}  {t['step']} ({where}; {t['rule']})",
                      2, 22)
    return lines


def _build_forecast(ctx: SummaryContext) -> dict[str, Any]:
    return ctx.case.forecast(on=ctx.on).to_dict()


def _forecast_lines(fc: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """The forecast section (docs/forecast.md)."""
    if fc["goal"] is None:
        return []
    goal = f"{fc['goal_label']} [{fc['goal']}]"
    target = f", target {fc['target']} ({fc['target_rule']})" if fc["target"] else ""
    lines = [f"Forecast on {fc['on']}"]
    if fc["reached"]:
        return lines + wrap(f"reached {goal} on {fc['date']}{target}", 2, 4)
    if not fc["reachable"]:
        return lines + wrap(f"{goal} can no longer be reached{target}", 2, 4)
    verdict = "" if fc["on_time"] is None else ": on time" if fc["on_time"] else ": LATE"
    days = fc["slack_days"]
    slack = "" if days is None else f", slack {days} day{'' if abs(days) == 1 else 's'}"
    lines += wrap(f"{goal} expected {fc['date']}{target}{verdict}{slack}", 2, 4)
    if fc["critical_path"]:
        lines += wrap(f"critical path: {' -> '.join(fc['critical_path'])}", 2, 4)
    groups: dict[tuple[str, str, bool], list[str]] = {}
    for p in fc["holding_up"]:
        groups.setdefault((p["step"], p["date"], p["late"]), []).append(p["actor"])
    for (step, date, late), actors in groups.items():
        lines += wrap(f"waiting for: {', '.join(actors)} on {step} (expected {date}"
                       f"{', date passed' if late else ''})", 2, 4)
    for s in fc["steps"]:
        mark = "*" if s["critical"] else " "
        lines += wrap(f"{mark} {s['date']}  {s['step']} ({s['basis']}, set by {s['set_by']})",
                       2, 17)
    if any(s["basis"] == "none" and s["set_by"] != "earliest" for s in fc["steps"]):
        lines += wrap("ASSUMPTION: a step marked 'none' has no expected date and no duration; "
                      "it is assumed taken as soon as it can be (see the latest dates for "
                      "an answer that assumes no duration)", 2, 4)
    return lines


def _build_latest(ctx: SummaryContext) -> dict[str, Any]:
    return ctx.case.latest_dates(on=ctx.on).to_dict()


def _latest_lines(latest: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """Working backwards from the target: by when each awaited step must be taken."""
    if not latest["steps"]:
        return []
    lines = [f"Latest dates for the target {latest['target']} ({latest['target_rule']})"]
    for s in latest["steps"]:
        late = ", PASSED" if s["passed"] else ""
        lines += wrap(f"{s['step']} by {s['latest']} ({', '.join(s['actors'])}; "
                      f"{s['set_by']}{late})", 2, 4)
    lines += [w for n in latest["notes"] for w in wrap(f"note: {n}", 2, 4)]
    return lines


def _build_coverage(ctx: SummaryContext) -> dict[str, Any]:
    return {region: {"in": list(inside), "left": list(left)}
            for region, (inside, left) in ctx.case.coverage().items()}


def _coverage_lines(coverage: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    if not coverage:
        return []
    lines = ["Covered by the plan"]
    for region, c in coverage.items():
        left = f"; left: {', '.join(c['left'])}" if c["left"] else ""
        lines += wrap(f"{region}: {', '.join(c['in']) or 'nobody'}{left}", 2, 4)
    return lines


def _build_assumptions(ctx: SummaryContext) -> dict[str, str]:
    found = ctx.case.data.get("assumptions")
    if not isinstance(found, Mapping):
        return {}
    return {str(k): str(v) for k, v in found.items()}


def _assumption_lines(assumptions: dict[str, str], doc: dict[str, Any]) -> list[str]:
    if not assumptions:
        return []
    lines = ["Assumptions (not facts of the case; see the case data's 'assumptions')"]
    for key, text in assumptions.items():
        lines += wrap(f"ASSUMPTION ({key}): {text}", 2, 4)
    return lines


#: The parts of ``show``, in order. Each adds ``key`` to the JSON object and renders
#: one section of the text (an empty list of lines leaves the section out).
PARTS: list[SummaryPart] = [
    SummaryPart("regions", _build_regions, _region_lines),
    SummaryPart("decided", _build_decided, _decided_lines),
    SummaryPart("awaited", _build_awaited, _awaited_lines),
    SummaryPart("votes", _build_votes, _vote_lines),
    SummaryPart("allowed", _build_allowed, _allowed_lines),
    SummaryPart("coverage", _build_coverage, _coverage_lines),
    SummaryPart("deadlines", _build_deadlines, _deadline_lines),
    SummaryPart("latest_dates", _build_latest, _latest_lines),
    SummaryPart("timers", _build_timers, _timer_lines),
    SummaryPart("forecast", _build_forecast, _forecast_lines),
    SummaryPart("assumptions", _build_assumptions, _assumption_lines),
    SummaryPart("history", _build_history, _history_lines),
]


def case_summary(case: Case, *, on: dt.date | None = None) -> dict[str, Any]:
    """The JSON object of ``approvalflow show`` (documented in docs/cli.md)."""
    when = on or case.as_of or dt.date.today()
    ctx = SummaryContext(case=case, on=when, awaiting=case.awaiting(on=when))
    doc = _show_head(ctx)
    for part in PARTS:
        doc[part.key] = part.build(ctx)
    return doc


def section_lines(case: Case, keys: Sequence[str], *, on: dt.date | None = None
                  ) -> dict[str, list[str]]:
    """The text of some sections of ``show`` (by their key in :data:`PARTS`), so other
    views (the notebook HTML) say exactly what ``show`` says."""
    when = on or case.as_of or dt.date.today()
    ctx = SummaryContext(case=case, on=when, awaiting=case.awaiting(on=when))
    doc = _show_head(ctx)
    out = {}
    for part in PARTS:
        if part.key in keys:
            doc[part.key] = part.build(ctx)
            out[part.key] = part.render(doc[part.key], doc)
    return out


def summary_text(doc: dict[str, Any]) -> str:
    """The text of ``approvalflow show``, rendered from its JSON object."""
    sections = [_head_lines(doc)]
    sections += [part.render(doc[part.key], doc) for part in PARTS]
    return "\n\n".join("\n".join(lines) for lines in sections if lines)
