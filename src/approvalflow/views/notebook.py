"""Events as pandas DataFrames, for analysis in a notebook.

:meth:`Case.history_frame() <approvalflow.Case.history_frame>` and
:meth:`Store.events_frame() <approvalflow.Store.events_frame>` call
:func:`events_frame`. pandas is optional: install it with the ``notebook`` extra
(``pip install 'approvalflow[notebook]'``); without it these raise
:class:`~approvalflow.MissingDependencyError` saying so.

A frame has one row per event and these columns:

============== ==================== ===========================================
column         dtype                meaning
============== ==================== ===========================================
case_id        string               the case
seq            int64                the event's number in its case (1: creation)
kind           string               "create", "fire" or "expect"
trigger        string               the step fired
actor          string               who fired it
on             datetime64 (a date)  the date the step took effect
recorded_at    datetime64, UTC      when the event was written
entered        object (tuple)       leaf states the step entered, sorted
left           object (tuple)       leaf states the step left, sorted
state          object (tuple)       the active leaf states after the step, sorted
moved          bool                 False for a ballot that did not move the case
note           string               the note (``<NA>`` when there is none)
data           object (dict)        the data recorded with the step
workflow       string               the workflow's name
workflow_vers. int64                the workflow version the case runs on
key            string               the idempotency key (``<NA>`` when none)
hash           string               the event's SHA-256 in the hash chain
============== ==================== ===========================================

The library never imports this module; it is loaded when a frame is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError

if TYPE_CHECKING:
    import pandas

    from ..case import Event

__all__ = ["COLUMNS", "events_frame"]

COLUMNS = ("case_id", "seq", "kind", "trigger", "actor", "on", "recorded_at", "entered",
           "left", "state", "moved", "note", "data", "workflow", "workflow_version", "key",
           "hash")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:
        raise MissingDependencyError(
            "DataFrames of events need pandas, which is not installed: install the "
            "notebook extra with pip install 'approvalflow[notebook]' (or pip install "
            "pandas).") from e
    return pandas


def events_frame(events: Iterable[Event]) -> pandas.DataFrame:
    """One row per event, with ``on`` as a datetime64 date and ``recorded_at`` in UTC."""
    pd = _pandas()
    rows = [{
        "case_id": e.case_id, "seq": e.seq, "kind": e.kind, "trigger": e.trigger,
        "actor": e.actor, "on": e.on, "recorded_at": e.recorded_at,
        "entered": tuple(sorted(e.target - e.source)), "left": tuple(sorted(e.source - e.target)),
        "state": tuple(sorted(e.target)), "moved": e.moved, "note": e.note,
        "data": dict(e.data), "workflow": e.workflow, "workflow_version": e.workflow_version,
        "key": e.key, "hash": e.hash,
    } for e in events]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["on"] = pd.to_datetime(frame["on"]).astype("datetime64[ns]")
    frame["recorded_at"] = pd.to_datetime(frame["recorded_at"], utc=True).astype(
        "datetime64[ns, UTC]")
    for column in ("seq", "workflow_version"):
        frame[column] = frame[column].astype("int64")
    frame["moved"] = frame["moved"].astype("bool")
    for column in ("case_id", "kind", "trigger", "actor", "note", "workflow", "key", "hash"):
        frame[column] = frame[column].astype("string")
    return frame
