"""When a date reference falls, from what a case's log has established so far.

A timed step (``at``, ``after``, ``escalates``) and a state's deadline count from facts:
a fixed date, a date in the case data, the latest event of a step, the day the case
last entered a state, the day every region of a parallel state was done, or the day
after another deadline was missed. :func:`resolve` turns a :class:`DateRef` into a
date from those facts alone (no forecast), or says why it has none yet. The engine
uses it to decide when the clock may take a step; the forecast and the store use it
to list timers. No SQL, no writing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from .canonical import date_range_problem
from .definition import DateRef

__all__ = ["lookup", "resolve", "Facts"]

#: (seq, date) of the event that established a fact.
Facts = Mapping[str, tuple[int, dt.date]]


def lookup(data: Mapping[str, Any], key: str) -> Any:
    """``data[key]``, or, for a dotted key, the value reached through nested objects."""
    if key in data:
        return data[key]
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _shift(day: dt.date, days: int) -> dt.date | None:
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return None


def resolve(ref: DateRef, *, data: Mapping[str, Any], taken: Facts, entered: Facts,
            joined: Facts, deadline_of: Callable[[str], DateRef | None],
            depth: int = 0) -> tuple[dt.date | None, str]:
    """The date ``ref`` names given these facts, or ``(None, why it has none yet)``."""
    base: dt.date | None
    if ref.kind == "date":
        base = ref.date
    elif ref.kind == "data":
        value = lookup(data, ref.key or "")
        if not isinstance(value, str):
            return None, f"the case data has no date {ref.key!r} (as 'YYYY-MM-DD')"
        try:
            base = dt.date.fromisoformat(value) if len(value) == 10 else None
        except ValueError:
            base = None
        if base is None:
            return None, f"the case data's {ref.key!r} is {value!r}, not a date"
        problem = date_range_problem(base, f"the case data's {ref.key!r}")
        if problem:
            return None, problem
    elif ref.kind == "after":
        found = taken.get(ref.step or "")
        if found is None:
            return None, f"{ref.step!r} has not been taken"
        base = found[1]
    elif ref.kind == "state":
        found = entered.get(ref.state or "")
        if found is None:
            return None, f"the case is not in {ref.state!r}"
        base = found[1]
    elif ref.kind == "join":
        found = joined.get(ref.state or "")
        if found is None:
            return None, f"not every region of {ref.state!r} is done"
        base = found[1]
    else:  # "missed": the day after another deadline
        inner = deadline_of(ref.step or "")
        if inner is None or inner.kind == "missed" or depth > 4:
            return None, f"{ref.step!r} has no deadline"
        base, why = resolve(inner, data=data, taken=taken, entered=entered, joined=joined,
                            deadline_of=deadline_of, depth=depth + 1)
        if base is None:
            return None, f"the deadline of {ref.step!r} is not known: {why}"
    if base is None:
        return None, "no date"
    day = _shift(base, ref.days)
    return (day, "") if day is not None else (None, "the date is out of range")
