"""Expectations: what someone said about when a pending step is expected (events of kind
"expect"), and the dates they are given in."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..canonical import to_date
from ..errors import InvalidInputError
from .results import Expectation

if TYPE_CHECKING:
    from ..case import Event


def parse_expected(value: object) -> tuple[dt.date, str]:
    """An expected date and the text it was given as: a date, 'YYYY-MM-DD', or 'YYYY-MM'.

    A month means the end of that month: ``'2021-11'`` is 30 November 2021.
    """
    if isinstance(value, str) and len(value) == 7 and value[4] == "-":
        try:
            year, month = int(value[:4]), int(value[5:])
            if value[:4].isdigit() and value[5:].isdigit() and 1 <= month <= 12 and year >= 1:
                return dt.date(year, month, calendar.monthrange(year, month)[1]), value
        except ValueError:
            pass
        raise InvalidInputError(f"the expected date {value!r} is not a month 'YYYY-MM' "
                                f"(e.g. '2021-11') nor a date 'YYYY-MM-DD'.")
    try:
        date = to_date(value, "the expected date")
    except InvalidInputError as e:
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
        voter = body.get("voter")
        latest[(step, voter if isinstance(voter, str) else None)] = Expectation(
            step=step, date=date, given=str(body.get("given", date.isoformat())),
            said_on=e.on, actor=e.actor, seq=e.seq,
            voter=voter if isinstance(voter, str) else None, note=e.note)
    current = [x for x in latest.values() if x.seq > taken.get(x.step, (0, None))[0]]
    return sorted(current, key=lambda x: (x.date, x.step, x.voter or ""))
