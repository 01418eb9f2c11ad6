"""Rich HTML for notebooks: a workflow, a case, and a case's history.

Jupyter shows these when a :class:`~approvalflow.Workflow`, a :class:`~approvalflow.Case`
or a :class:`HistoryTable` is the last expression of a cell (their ``_repr_html_``).

The HTML is plain: inline styles only (notebook viewers strip ``<style>`` blocks and
scripts), no JavaScript, nothing fetched from the network, and every piece of text
that comes from a workflow file or a case (labels, notes, data, ids) goes through
:func:`html.escape`, so a note containing ``<script>`` shows as text.

The library never imports this module except when something is displayed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, overload

import attrs

from .summary import section_lines

if TYPE_CHECKING:
    from ..case import Case, Event
    from ..definition import Workflow

__all__ = ["HistoryTable", "case_html", "history_html", "workflow_html"]

# ----------------------------------------------------------------- styles (inline only)

_FONT = "font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
_ROOT = (_FONT + "font-size:13px;line-height:1.4;color:#1f2937;background:#ffffff;"
         "padding:10px;border:1px solid #d1d5db;border-radius:8px;max-width:100%;")
_H = "font-size:14px;font-weight:600;margin:10px 0 4px 0;"
_MUTED = "color:#6b7280;"
_CODE = ("font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:11px;"
         "color:#374151;background:#f3f4f6;border-radius:3px;padding:0 3px;")
_ROW = "display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start;"
_LEAF = ("border:1px solid #9ca3af;border-radius:10px;padding:3px 8px;background:#ffffff;"
         "color:#1f2937;")
_ACTIVE = ("border:2px solid #b45309;border-radius:10px;padding:2px 7px;background:#fde68a;"
           "color:#1f2937;font-weight:600;")
_BOX = "border:1px solid #6b7280;border-radius:8px;padding:6px;background:#f9fafb;"
_BOX_ACTIVE = "border:2px solid #b45309;border-radius:8px;padding:5px;background:#fffbeb;"
_REGION = "border:1px dashed #6b7280;border-radius:8px;padding:6px;background:#ffffff;"
_REGION_ACTIVE = "border:2px dashed #b45309;border-radius:8px;padding:5px;background:#ffffff;"
_BADGE = ("display:inline-block;font-size:10px;border-radius:6px;padding:0 5px;"
          "margin-left:4px;vertical-align:middle;")
_TABLE = "border-collapse:collapse;margin:4px 0;font-size:12px;"
_TH = ("text-align:left;border-bottom:2px solid #d1d5db;padding:3px 8px;vertical-align:bottom;"
       "background:#f3f4f6;color:#1f2937;")
_TD = "text-align:left;border-bottom:1px solid #e5e7eb;padding:3px 8px;vertical-align:top;"

_DONE = "color:#166534;"
_WAIT = "color:#9a3412;"


def _e(value: object) -> str:
    """Any value as escaped HTML text."""
    return escape(str(value), quote=True)


def _code(value: object) -> str:
    return f'<code style="{_CODE}">{_e(value)}</code>'


def _badge(text: str, colours: str) -> str:
    return f'<span style="{_BADGE}{colours}">{_e(text)}</span>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; ``rows`` hold HTML that is already escaped."""
    head = "".join(f'<th style="{_TH}">{_e(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_TD}">{cell}</td>' for cell in row) + "</tr>"
                   for row in rows)
    return f'<table style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _details(summary: str, body: str, *, open_: bool = False) -> str:
    return (f'<details{" open" if open_ else ""} style="margin:6px 0;">'
            f'<summary style="cursor:pointer;{_H}display:list-item;">{_e(summary)}</summary>'
            f"{body}</details>")


# ----------------------------------------------------------------- the state tree


def _state_title(wf: Workflow, sid: str) -> str:
    d = wf.state_defs[sid]
    marks = ""
    parent = wf.state_defs.get(d.parent) if d.parent else None
    is_initial = sid == wf.initial if d.parent is None else (
        parent is not None and parent.initial == sid)
    if is_initial:
        marks += _badge("start", "background:#dbeafe;color:#1e3a8a;")
    if d.final:
        marks += _badge("final", "background:#dcfce7;color:#14532d;")
    if d.kind == "parallel":
        marks += _badge("parallel: all regions at once", "background:#ede9fe;color:#4c1d95;")
    return f"{_e(d.label or sid)} {_code(sid)}{marks}"


def _state_html(wf: Workflow, sid: str, active: frozenset[str], *, region: bool = False) -> str:
    d = wf.state_defs[sid]
    on = sid in active
    tip = f' title="{_e(d.description)}"' if d.description else ""
    if d.kind == "atomic":
        return f'<div style="{_ACTIVE if on else _LEAF}"{tip}>{_state_title(wf, sid)}</div>'
    style = (_REGION_ACTIVE if on else _REGION) if region else (_BOX_ACTIVE if on else _BOX)
    inner_style = _ROW + ("flex-wrap:nowrap;overflow-x:auto;" if d.kind == "parallel" else "")
    children = "".join(
        f'<div style="flex:1 1 0;min-width:150px;">'
        f'{_state_html(wf, c, active, region=True)}</div>' if d.kind == "parallel"
        else _state_html(wf, c, active) for c in d.children)
    return (f'<div style="{style}flex-basis:100%;"{tip}>'
            f'<div style="margin-bottom:4px;font-weight:600;">{_state_title(wf, sid)}</div>'
            f'<div style="{inner_style}">{children}</div></div>')


def _tree_html(wf: Workflow, active: frozenset[str]) -> str:
    top = [s for s, d in wf.state_defs.items() if d.parent is None]
    return f'<div style="{_ROW}">' + "".join(_state_html(wf, s, active) for s in top) + "</div>"


def _actor(wf: Workflow, actor: str) -> str:
    name = wf.actors.get(actor)
    return f"{_e(name)} {_code(actor)}" if name else _code(actor)


def _transitions_html(wf: Workflow) -> str:
    rows = []
    for t in wf.transitions:
        vote = f"{_e(t.vote)}: {_e(t.ballot)}" if t.vote else ""
        rows.append([_code(t.trigger), _e(wf.label_of(t.source)), _e(wf.label_of(t.target)),
                     ", ".join(_code(a) for a in t.actors),
                     ", ".join(_code(g) for g in t.guards) + (" (join)" if t.join else ""),
                     vote, _e(t.label)])
    return _table(["trigger", "from", "to", "who", "guards", "vote", "step"], rows)


def workflow_html(wf: Workflow) -> str:
    """A workflow as HTML: its states and regions with their labels, then its steps."""
    head = (f'<div style="font-size:15px;font-weight:600;">{_e(wf.label or wf.name)}</div>'
            f'<div style="{_MUTED}">{_code(wf.name)} version {_e(wf.version)} · '
            f"{len(wf.state_defs)} states · {len(wf.transitions)} transitions · "
            f"{len(wf.actors)} actors</div>")
    if wf.title:
        head += f"<div>{_e(wf.title)}</div>"
    if wf.description:
        head += f'<div style="{_MUTED}margin-top:4px;">{_e(wf.description.strip())}</div>'
    actors = _table(["actor", "name"], [[_code(a), _e(n)] for a, n in wf.actors.items()])
    votes = ""
    if wf.votes:
        votes = _details(f"Vote groups ({len(wf.votes)})", _table(
            ["vote", "label", "while in", "voters", "yes-votes needed"],
            [[_code(v.id), _e(v.label), _code(v.state), ", ".join(_code(x) for x in v.voters),
              _e("all still taking part" if v.need is None else v.need)]
             for v in wf.votes.values()]))
    return (f'<div style="{_ROOT}">{head}<div style="{_H}">States</div>'
            f"{_tree_html(wf, frozenset())}"
            + _details(f"Transitions ({len(wf.transitions)})", _transitions_html(wf))
            + _details(f"Actors ({len(wf.actors)})", actors) + votes + "</div>")


# ----------------------------------------------------------------- a case


def _standing_html(case: Case) -> str:
    wf = case.definition
    entered = case.entered_by()
    rows = []
    for region in case.regions():
        event = entered.get(region.state)
        if region.done and region.id and case.region_outcome(region.id) == "not done":
            status = f'<span style="{_MUTED}">ended without taking part (withdrawn)</span>'
        elif region.done:
            status = f'<span style="{_DONE}">done</span>'
            if event is not None and event.kind == "fire":
                person = f" ({_e(event.by)})" if event.by else ""
                status += (f" · {_actor(wf, event.actor)}{person} fired "
                           f"{_code(event.trigger)} on {_e(event.on.isoformat())}")
        elif region.awaiting:
            who = "; ".join(f"{_actor(wf, a)}: {', '.join(_code(t) for t in ts)}"
                            for a, ts in region.awaiting.items())
            status = f'<span style="{_WAIT}">awaiting</span> {who}'
        elif case.as_of is not None:
            status = f'<span style="{_MUTED}">a view as of {_e(case.as_of.isoformat())}</span>'
        else:
            status = f'<span style="{_MUTED}">no step is open now</span>'
        rows.append([_e(region.label), f"{_e(region.state_label)} {_code(region.state)}",
                     status])
    out = _table(["region", "state", "decided / awaited"], rows)
    for vote, ballots in case.ballots().items():
        vg = wf.votes[vote]
        left = case.withdrawn().get(vote, frozenset())
        cells = []
        for voter in vg.voters:
            cast = ballots.get(voter)
            text = "withdrawn" if voter in left else (cast or "not yet")
            cells.append([_actor(wf, voter), _e(text)])
        out += (f'<div style="margin-top:6px;">Vote {_code(vote)} ({_e(vg.label)}): '
                f"{len(ballots)} of {len(vg.voters)} have voted</div>"
                + _table(["voter", "ballot this round"], cells))
    return out


def _assumptions_html(case: Case) -> str:
    """The case data's 'assumptions' (what the seed does not say), each marked as such."""
    found = case.data.get("assumptions")
    if not isinstance(found, Mapping) or not found:
        return ""
    mark = '<span style="font-weight:600;">ASSUMPTION</span>'
    rows = [[_e(k), f"{mark}: {_e(v)}"] for k, v in found.items()]
    return (f'<div style="{_H}">Assumptions (not facts of the case)</div>'
            + _table(["about", "assumption"], rows))


def _coverage_html(case: Case) -> str:
    """Who the plan still covers, region by region (for regions that declare 'covers')."""
    coverage = case.coverage()
    if not coverage:
        return ""
    rows = [[_e(r), ", ".join(_code(p) for p in inside) or "nobody",
             ", ".join(_code(p) for p in left) or "-"] for r, (inside, left) in coverage.items()]
    return (f'<div style="{_H}">Covered by the plan</div>'
            + _table(["region", "in the plan", "withdrawn"], rows))


def case_html(case: Case) -> str:
    """A case as HTML: where it stands, its states highlighted, and its events."""
    wf = case.definition
    title = case.data.get("title")
    badges = ""
    if case.as_of is not None:
        badges += _badge(f"as of {case.as_of.isoformat()}", "background:#e0e7ff;color:#312e81;")
    if case.is_final:
        badges += _badge("ended", "background:#dcfce7;color:#14532d;")
    head = f'<div style="font-size:15px;font-weight:600;">Case {_e(case.id)}{badges}</div>'
    if isinstance(title, str):
        head += f"<div>{_e(title)}</div>"
    last = case.last_on.isoformat() if case.last_on else "-"
    head += (f'<div style="{_MUTED}">{_e(wf.label or wf.name)} ({_code(wf.name)} '
             f"v{_e(wf.version)}) · {len(case.history)} events · last dated {_e(last)} · "
             f"active: {', '.join(_code(s) for s in sorted(case.state))}</div>")
    return (f'<div style="{_ROOT}">{head}'
            f'<div style="{_H}">Who has decided, who is awaited</div>{_standing_html(case)}'
            + _coverage_html(case) + _assumptions_html(case) +
            f'<div style="{_H}">States</div>{_tree_html(wf, case.active_states)}'
            + _plan_html(case)
            + _details(f"Events ({len(case.history)})", history_html(case.history, wf),
                       open_=True)
            + "</div>")


def _plan_html(case: Case) -> str:
    """The deadlines and the forecast, in the words of ``approvalflow show``."""
    out = ""
    for lines in section_lines(case, ("deadlines", "forecast")).values():
        if not lines:
            continue
        title, body = lines[0], lines[1:]
        out += (f'<div style="{_H}">{_e(title)}</div><div style="font-family:monospace;'
                f'white-space:pre-wrap;">' + "<br>".join(_e(line) for line in body)
                + "</div>")
    return out


# ----------------------------------------------------------------- history


def _states(wf: Workflow | None, states: frozenset[str]) -> str:
    return "<br>".join(
        (f"{_e(wf.label_of(s))} {_code(s)}" if wf is not None else _code(s))
        for s in sorted(states))


def history_html(events: Sequence[Event], workflow: Workflow | None = None) -> str:
    """Events as an HTML table: when, what, who, which states were entered and left, notes."""
    rows = []
    for e in events:
        who = _actor(workflow, e.actor) if workflow is not None else _code(e.actor)
        if e.by:
            who += f' <span style="{_MUTED}">({_e(e.by)})</span>'
        data = ""
        if e.data:
            text = json.dumps(dict(e.data), ensure_ascii=False, sort_keys=True)
            data = f'<div style="{_MUTED}margin-top:2px;">data: {_code(text)}</div>'
        rows.append([_e(e.seq), _e(e.on_text),
                     _code(e.trigger) + ("" if e.moved or e.kind != "fire"
                                         else f' <span style="{_MUTED}">(ballot)</span>'),
                     who, _states(workflow, e.target - e.source),
                     _states(workflow, e.source - e.target),
                     (_e(e.note) if e.note else "") + data,
                     f'<span style="{_MUTED}">{_e(e.recorded_at.isoformat(timespec="seconds"))}'
                     "</span>"])
    return _table(["#", "on", "step", "by", "entered", "left", "note", "recorded at"], rows)


@attrs.frozen
class HistoryTable(Sequence["Event"]):
    """A case's events that display as a table in a notebook; otherwise a tuple of events."""

    events: tuple[Event, ...]
    workflow: Workflow | None = None

    def __len__(self) -> int:
        return len(self.events)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self.events[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __repr__(self) -> str:
        lines = [f"<HistoryTable: {len(self.events)} events>"]
        for e in self.events:
            moved = ", ".join(sorted(e.target - e.source)) or "-"
            lines.append(f"  {e.seq:>3}  {e.on.isoformat()}  {e.trigger:<20} {e.actor:<12} "
                         f"-> {moved}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f'<div style="{_ROOT}">{history_html(self.events, self.workflow)}</div>'

