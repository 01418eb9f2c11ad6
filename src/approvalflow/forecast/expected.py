"""Expectations: what someone said about when a pending step is expected (events of kind
"expect"), and the dates they are given in."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..canonical import DATE_RANGE, date_range_problem, to_date
from ..errors import InvalidInputError
from .results import Expectation

if TYPE_CHECKING:
    from ..case import Event


def parse_expected(value: object) -> tuple[dt.date, str]:
    """An expected date and the text it was given as: a date, 'YYYY-MM-DD', or 'YYYY-MM'.

    A month means the end of that month: ``'2021-11'`` is 30 November 2021. The date
    must lie in the range every date keeps to (``canonical.DATE_RANGE``).
    """
    if isinstance(value, str) and len(value) == 7 and value[4] == "-":
        month_end: dt.date | None = None
        if value[:4].isdigit() and value[5:].isdigit() and 1 <= int(value[5:]) <= 12 \
                and int(value[:4]) >= 1:
            year, month = int(value[:4]), int(value[5:])
            month_end = dt.date(year, month, calendar.monthrange(year, month)[1])
        if month_end is None:
            raise InvalidInputError(f"the expected date {value!r} is not a month 'YYYY-MM' "
                                    f"(e.g. '2021-11') nor a date 'YYYY-MM-DD'.")
        problem = date_range_problem(month_end, f"the end of the expected month {value!r},")
        if problem:
            raise InvalidInputError(f"{problem}.")
        return month_end, value
    try:
        date = to_date(value, "the expected date")
    except InvalidInputError as e:
        if DATE_RANGE in str(e):  # a real date, outside the range: the hint would mislead
            raise
        raise InvalidInputError(f"{e} A month 'YYYY-MM' (e.g. '2021-11') is also accepted: "
                                f"it means the end of that month.") from None
    return date, date.isoformat()


def _expect_payload(e: Event) -> Mapping[str, Any] | None:
    body = e.data.get("expect") if isinstance(e.data, Mapping) else None
    return body if isinstance(body, Mapping) else None


def _taken(history: Sequence[Event]) -> dict[str, tuple[int, dt.date]]:
    """Each step's last firing that moved the case: trigger -> (seq, date)."""
    out: dict[str, tuple[int, dt.date]] = {}
    for e in history:
        if e.kind == "fire" and e.source != e.target:
            out[e.trigger] = (e.seq, e.on)
    return out


def expectations(history: Sequence[Event]) -> list[Expectation]:
    """The expectations that still count: the latest said about each step (and voter),
    unless the step was taken after it was said. Sorted by date."""
    taken = _taken(history)
    latest: dict[tuple[str, str | None], Expectation] = {}
    for e in history:
        if e.kind != "expect":
            continue
        body = _expect_payload(e)
        if body is None:
            continue
        try:
            date = dt.date.fromisoformat(str(body["on"]))
            step = str(body["step"])
        except (KeyError, ValueError):
            continue
        if date_range_problem(date):
            continue  # not written by Case.expect, which keeps to the range
        voter = body.get("voter")
        latest[(step, voter if isinstance(voter, str) else None)] = Expectation(
            step=step, date=date, given=str(body.get("given", date.isoformat())),
            said_on=e.on, actor=e.actor, seq=e.seq,
            voter=voter if isinstance(voter, str) else None, note=e.note)
    current = [x for x in latest.values() if x.seq > taken.get(x.step, (0, None))[0]]
    return sorted(current, key=lambda x: (x.date, x.step, x.voter or ""))
