"""Deadlines, expected dates and the forecast: will a case reach its goal in time, and if
not, who is holding it up?

Three kinds of knowledge feed the answers, each documented in ``docs/forecast.md``:

- the workflow file: a step's ``deadline`` and ``earliest`` date, its typical
  ``duration_days``, and the workflow's ``goal`` state and ``target`` date;
- the case's recorded events: what was taken, and when;
- expectations: events of kind ``"expect"`` in the same log, in which someone said
  when a pending step is expected (``case.expect``). They change no state and are
  kept out of the case's data; the latest one said about a step counts, and one said
  before the step was last taken is spent.

The forecast follows the *route*: the shortest sequence of steps (fewest steps, file
order breaking ties) from where the case stands to its goal, taking only "yes"
ballots, counting a vote as one step. Each step on the route gets a date: its
expected date, or the date it can be taken plus its typical duration, or (with
neither) the date it can be taken; never earlier than its ``earliest`` date, than
the steps it waits for (a join waits for its latest region, a vote for its slowest
needed voter), than the day asked about, or than the case's last recorded event.

Everything here is computed from a workflow, a case's state and its events: no SQL,
no writing. ``Case.forecast`` / ``Case.deadlines`` and ``Store.due`` call it.
"""

from .due import deadlines, due_items, sort_due, timers
from .expected import expectations, parse_expected
from .latest import latest_dates
from .outlook import forecast
from .results import (
    DEADLINE_STATUSES,
    Deadline,
    DueItem,
    Expectation,
    Forecast,
    LatestDate,
    LatestDates,
    Party,
    StepForecast,
    Timer,
    VoterForecast,
)
from .route import MAX_ROUTE_SEARCH

__all__ = [
    "DEADLINE_STATUSES",
    "MAX_ROUTE_SEARCH",
    "Deadline",
    "DueItem",
    "Expectation",
    "Forecast",
    "LatestDate",
    "LatestDates",
    "Party",
    "StepForecast",
    "Timer",
    "VoterForecast",
    "deadlines",
    "due_items",
    "expectations",
    "forecast",
    "latest_dates",
    "parse_expected",
    "sort_due",
    "timers",
]
