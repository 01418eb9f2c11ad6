"""A case as a story in time: an SVG timeline written by the library itself.

Plain SVG, no JavaScript and nothing fetched: it opens in any browser, embeds in HTML
and Markdown, and shows inline in a notebook. One row per step: the steps decided (a
filled dot on their date; a hollow one at the date they are known by when their own
date is unknown), the steps still awaited (a diamond on their forecast date, with the
deadline as a red tick), and across all rows the target date and a "today" line.

``portfolio_svg`` draws one row per case: from its creation to its last event, its
decided steps as dots, and its target date.

Every text is escaped for XML and control characters are shown as ``\\x..``: stored
text can't change the picture's structure. Plain SVG was chosen over a plotting
library: the picture is small, must escape hostile text exactly, and a library would
be a heavy optional dependency for one figure.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import attrs

if TYPE_CHECKING:
    from ..case import Case
    from ..store import Store

__all__ = ["Svg", "case_svg", "portfolio_svg"]

_WIDTH = 960
_LABEL_W = 300
_ROW_H = 26
_TOP = 72
_RIGHT = 30
_FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
_COLOURS = {"decided": "#1d4ed8", "awaited": "#b45309", "late": "#b91c1c",
            "target": "#15803d", "today": "#6b7280", "axis": "#9ca3af"}


@attrs.frozen
class Svg:
    """An SVG picture: ``text`` is the document; shows inline in Jupyter."""

    text: str

    def _repr_svg_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text

    def save(self, path: Any) -> None:
        """Write the SVG to ``path`` (UTF-8)."""
        from pathlib import Path

        Path(path).write_text(self.text, encoding="utf-8")


def _text(value: object, limit: int = 60) -> str:
    """Printable, XML-escaped text: control and format characters shown as \\x.. codes."""
    out = []
    for ch in str(value):
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in "\n":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(" " if ch == "\n" else ch)
    text = "".join(out)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text, {'"': "&quot;", "'": "&apos;"})


@attrs.frozen
class _Mark:
    day: dt.date
    shape: str  # "dot", "hollow", "diamond", "tick"
    colour: str
    title: str


@attrs.frozen
class _Row:
    label: str
    marks: tuple[_Mark, ...]
    span: tuple[dt.date, dt.date] | None = None


class _Axis:
    def __init__(self, days: Iterable[dt.date], width: int) -> None:
        known = sorted(days)
        start = known[0] if known else dt.date.today()
        end = known[-1] if known else start
        pad = max(7, (end - start).days // 20)
        self.start = start - dt.timedelta(days=pad)
        self.end = end + dt.timedelta(days=pad)
        self.x0 = _LABEL_W
        self.x1 = width - _RIGHT

    def x(self, day: dt.date) -> float:
        span = max(1, (self.end - self.start).days)
        return round(self.x0 + (self.x1 - self.x0) * (day - self.start).days / span, 1)

    def ticks(self) -> list[dt.date]:
        months = (self.end.year - self.start.year) * 12 + self.end.month - self.start.month
        step = max(1, months // 10 + (1 if months % 10 else 0))
        out: list[dt.date] = []
        year, month = self.start.year, self.start.month + 1
        while True:
            if month > 12:
                year, month = year + 1, month - 12
            day = dt.date(year, month, 1)
            if day > self.end:
                return out
            out.append(day)
            month += step


def _shape(m: _Mark, x: float, y: float) -> str:
    title = f"<title>{_text(m.title, 200)}</title>"
    if m.shape == "dot":
        return f"<circle cx='{x}' cy='{y}' r='5' fill='{m.colour}'>{title}</circle>"
    if m.shape == "hollow":
        return (f"<circle cx='{x}' cy='{y}' r='5' fill='white' stroke='{m.colour}' "
                f"stroke-width='2'>{title}</circle>")
    if m.shape == "diamond":
        return (f"<polygon points='{x},{y - 6} {x + 6},{y} {x},{y + 6} {x - 6},{y}' "
                f"fill='{m.colour}'>{title}</polygon>")
    return (f"<line x1='{x}' y1='{y - 8}' x2='{x}' y2='{y + 8}' stroke='{m.colour}' "
            f"stroke-width='3'>{title}</line>")


def _render(title: str, subtitle: str, rows: Sequence[_Row], lines: Sequence[tuple[dt.date,
            str, str]], *, footnote: str = "") -> Svg:
    days = [m.day for r in rows for m in r.marks] + [d for d, _, _ in lines]
    days += [d for r in rows if r.span for d in r.span]
    axis = _Axis(days, _WIDTH)
    height = _TOP + _ROW_H * max(1, len(rows)) + 40 + (16 if footnote else 0)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{_WIDTH}' height='{height}' "
           f"viewBox='0 0 {_WIDTH} {height}' role='img'>",
           f"<title>{_text(title, 200)}</title>",
           f"<rect width='{_WIDTH}' height='{height}' fill='white'/>",
           f"<text x='10' y='20' {_FONT} font-size='15' font-weight='bold'>"
           f"{_text(title, 110)}</text>",
           f"<text x='10' y='38' {_FONT} font-size='12' fill='#374151'>"
           f"{_text(subtitle, 140)}</text>"]
    bottom = _TOP + _ROW_H * max(1, len(rows))
    for day in axis.ticks():
        x = axis.x(day)
        out.append(f"<line x1='{x}' y1='{_TOP - 6}' x2='{x}' y2='{bottom}' "
                   f"stroke='{_COLOURS['axis']}' stroke-width='0.5'/>")
        out.append(f"<text x='{x}' y='{bottom + 14}' {_FONT} font-size='10' "
                   f"text-anchor='middle' fill='#4b5563'>{day.strftime('%Y-%m')}</text>")
    for i, row in enumerate(rows):
        y = _TOP + _ROW_H * i + _ROW_H / 2
        if i % 2:
            out.append(f"<rect x='0' y='{y - _ROW_H / 2}' width='{_WIDTH}' height='{_ROW_H}' "
                       f"fill='#f3f4f6'/>")
        out.append(f"<text x='10' y='{y + 4}' {_FONT} font-size='12'>"
                   f"{_text(row.label, 44)}</text>")
        if row.span:
            a, b = (axis.x(d) for d in row.span)
            out.append(f"<line x1='{a}' y1='{y}' x2='{b}' y2='{y}' stroke='#93c5fd' "
                       f"stroke-width='6' stroke-linecap='round'/>")
        out.extend(_shape(m, axis.x(m.day), y) for m in row.marks)
    for day, label, colour in lines:
        x = axis.x(day)
        out.append(f"<line x1='{x}' y1='{_TOP - 12}' x2='{x}' y2='{bottom}' stroke='{colour}' "
                   f"stroke-width='1.5' stroke-dasharray='5,3'/>")
        right = x > axis.x1 - 120  # near the right edge: the label goes to the left
        out.append(f"<text x='{x - 3 if right else x + 3}' y='{_TOP - 14}' {_FONT} "
                   f"font-size='10' text-anchor='{'end' if right else 'start'}' "
                   f"fill='{colour}'>{_text(label, 40)} {day.isoformat()}</text>")
    if footnote:
        out.append(f"<text x='10' y='{bottom + 30}' {_FONT} font-size='10' fill='#374151'>"
                   f"{_text(footnote, 170)}</text>")
    legend = [("dot", "decided", _COLOURS["decided"]),
              ("hollow", "decided, date unknown", _COLOURS["decided"]),
              ("diamond", "awaited (forecast)", _COLOURS["awaited"]),
              ("tick", "deadline", _COLOURS["late"])]
    x = 10.0
    for shape, text, colour in legend:
        out.append(_shape(_Mark(dt.date.min, shape, colour, text), x + 6, height - 12))
        out.append(f"<text x='{x + 16}' y='{height - 8}' {_FONT} font-size='10'>{text}</text>")
        x += 30 + 7 * len(text)
    out.append("</svg>")
    return Svg("\n".join(out) + "\n")


def case_svg(case: Case, *, on: dt.date) -> Svg:
    """The timeline of one case, as it stands on ``on``."""
    wf = case.definition
    rows: list[_Row] = []
    for e in case.decisions():
        shape = "dot" if e.date_known else "hollow"
        when = e.on.isoformat() if e.date_known else f"date unknown, known by {e.on.isoformat()}"
        label = wf.transitions_for(e.trigger)[0].label if wf.transitions_for(e.trigger) else ""
        rows.append(_Row(f"{e.trigger} ({e.actor})", (_Mark(
            e.on, shape, _COLOURS["decided"],
            f"{e.trigger} by {e.actor}, {when}" + (f": {label}" if label else "")
            + (f". Note: {e.note}" if e.note else "")),)))
    fc = case.forecast(on=on)
    deadlines = {d.step: d for d in case.deadlines(on=on) if d.taken_on is None}
    for s in fc.steps if not fc.reached else ():
        marks = [_Mark(s.date, "diamond", _COLOURS["late"] if s.late else _COLOURS["awaited"],
                       f"{s.step}: forecast {s.date.isoformat()} ({s.basis}"
                       + (", an assumed duration" if s.basis == "duration" else "")
                       + (", assumed taken as soon as it can be" if s.basis == "none"
                          else "") + ")")]
        d = deadlines.pop(s.step, None)
        if d is not None and d.due is not None:
            marks.append(_Mark(d.due, "tick", _COLOURS["late"],
                               f"{s.step}: due {d.due.isoformat()} ({d.rule}), {d.status}"))
        rows.append(_Row(f"{s.step} ({', '.join(s.actors)}) awaited", tuple(marks)))
    for d in deadlines.values():
        if d.due is not None:
            rows.append(_Row(f"{d.step} ({', '.join(d.actors)}) due", (_Mark(
                d.due, "tick", _COLOURS["late"], f"{d.step}: due {d.due.isoformat()} "
                f"({d.rule}), {d.status}"),)))
    lines = [(on, "today", _COLOURS["today"])]
    if fc.target is not None:
        lines.append((fc.target, "target", _COLOURS["target"]))
    verdict = ("" if fc.on_time is None else ", on time" if fc.on_time else ", late")
    goal = f"goal {fc.goal_label}: " + (f"reached {fc.date.isoformat()}" if fc.reached and fc.date
                                         else f"forecast {fc.date.isoformat()}{verdict}"
                                         if fc.date else "not reachable") if fc.goal else ""
    notes = []
    if any(s.basis == "none" for s in fc.steps) and not fc.reached:
        notes.append("ASSUMPTION: a forecast marked 'none' is the step taken as soon as it "
                     "can be")
    assumed = case.data.get("assumptions")
    if isinstance(assumed, dict) and assumed:
        notes.append(f"ASSUMPTIONS in the case data, not facts: {', '.join(sorted(assumed))}")
    return _render(f"{case.id} - {wf.label or wf.name}",
                   f"as of {on.isoformat()}; state {', '.join(sorted(case.state))}; {goal}",
                   rows, lines, footnote="; ".join(notes))


def portfolio_svg(store: Store, *, cases: Iterable[str] | None, on: dt.date) -> Svg:
    """One row per case: its life from creation to its last event, decided steps as dots,
    its target date as a green tick."""
    ids = [c.case_id for c in store.cases()] if cases is None else list(cases)
    rows = []
    for case_id in ids:
        case = store.case(case_id)
        history = case.history
        marks = [_Mark(e.on, "dot" if e.date_known else "hollow", _COLOURS["decided"],
                       f"{e.trigger} by {e.actor} on {e.on_text}") for e in case.decisions()]
        fc = case.forecast(on=on)
        if fc.target is not None:
            marks.append(_Mark(fc.target, "tick", _COLOURS["target"],
                               f"target {fc.target.isoformat()}"))
        end = history[-1].on if case.is_final else max(on, history[-1].on)
        state = ", ".join(sorted(case.state))
        rows.append(_Row(f"{case_id} [{state}]", tuple(marks), span=(history[0].on, end)))
    return _render(f"{len(rows)} case(s)", f"as of {on.isoformat()}", rows,
                   [(on, "today", _COLOURS["today"])])
