"""Timers: the ``timers`` table, kept with each event, and ``tick``, which lets the clock
take every timed step that has fallen due.

The table holds one row per armed timed step of each open case: ``(case_id, trigger,
due_on)``, where ``due_on`` is the date the clock's event will carry. It is written in
the same transaction as the event that armed, moved or spent the timer, so finding what
is due is one indexed range query, never a replay of every case; ``verify`` checks it
row for row against what replay computes.

``tick`` takes the due steps case by case, each in its own ``BEGIN IMMEDIATE``
transaction through :meth:`Case.fire` (actor ``clock``, dated with the timer's own
date), so the log it writes is the one a punctual tick would have written. Several
tickers may run at once, in several processes: the head-hash check lets only the
first write a step; the others find the case moved on, reload it, and find nothing
left to do.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..definition import CLOCK
from ..engine import CaseState, Engine, engine_for
from ..errors import ConcurrencyError, TransitionRefusedError
from .rows import translate

if TYPE_CHECKING:
    import sqlite_utils

    from . import Store

__all__ = ["TickReport", "TimerStep", "timer_rows", "sync_timers", "tick", "rebuild_timers",
           "MAX_STEPS_PER_CASE"]

#: A tick takes at most this many timed steps in one case (a loop of timed steps that
#: all fall due on the same day would otherwise never end); the rest wait for the next.
MAX_STEPS_PER_CASE = 100

CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS timers (case_id TEXT NOT NULL, trigger TEXT NOT "
                "NULL, due_on TEXT NOT NULL, PRIMARY KEY (case_id, trigger))")
CREATE_INDEX = "CREATE INDEX IF NOT EXISTS timers_due ON timers (due_on)"


def timer_rows(engine: Engine, state: CaseState) -> list[tuple[str, str]]:
    """``(trigger, due_on)`` of every armed timed step of a case in ``state``."""
    return [(t.trigger, day.isoformat()) for day, t in engine.timers(state)]


def sync_timers(conn: sqlite3.Connection, case_id: str, engine: Engine,
                state: CaseState, *, before: list[tuple[str, str]] | None = None) -> None:
    """Make the case's rows in ``timers`` those of ``state`` (inside the caller's
    transaction); ``before`` is what the table holds for the case, when known (else it is
    read). A workflow without timed steps has no rows and costs nothing."""
    if not engine.timed:
        return
    rows = timer_rows(engine, state)
    stored = before if before is not None else [tuple(r) for r in conn.execute(
        "SELECT trigger, due_on FROM timers WHERE case_id = ?", (case_id,))]
    if sorted(stored) == sorted(rows):
        return  # most steps leave the timers as they were: no write
    if stored:
        conn.execute("DELETE FROM timers WHERE case_id = ?", (case_id,))
    if rows:
        conn.executemany("INSERT INTO timers (case_id, trigger, due_on) VALUES (?, ?, ?)",
                         [(case_id, trigger, due) for trigger, due in rows])


INSERT_TIMER = "INSERT INTO timers (case_id, trigger, due_on) VALUES (?, ?, ?)"


def write_timer_rows(conn: sqlite3.Connection,
                     cases: Mapping[str, list[tuple[str, str]]], *, new: bool = False) -> None:
    """Replace the rows of several cases at once (the batched import); ``new``: the cases
    were created in this transaction, so they have no rows to delete."""
    if not cases:
        return
    if not new:
        conn.executemany("DELETE FROM timers WHERE case_id = ?", [(c,) for c in cases])
    conn.executemany(INSERT_TIMER,
                     [(c, trigger, due) for c, rows in cases.items() for trigger, due in rows])


def migrate_5_to_6(db: sqlite_utils.Database) -> None:
    """Schema 5: the ``timers`` table. A file of schema 4 or older was written by a version
    that knew no timed steps, so none of its cases has a timer and the table starts empty
    (``rebuild_timers`` recomputes it from the log whenever wanted)."""
    db.execute(CREATE_TABLE)
    db.execute(CREATE_INDEX)


def rebuild_timers(store: Store) -> int:
    """Recompute the whole ``timers`` table from the log, in one transaction; returns the
    number of rows. Only cases whose workflow has timed steps are replayed."""
    conn = store._conn
    count = 0
    with store._write("rebuild the timers table"):
        store._hold_every_case()  # a step meanwhile would leave the rows of its case stale
        conn.execute("DELETE FROM timers")
        open_cases = conn.execute("SELECT case_id, workflow, workflow_version FROM cases "
                                  "WHERE is_final = 0 ORDER BY case_id").fetchall()
        for case_id, name, version in open_cases:
            if not engine_for(store.workflow(name, version)).timed:
                continue
            case = store.case(case_id)
            rows = timer_rows(engine_for(case.definition), case.engine_state)
            write_timer_rows(conn, {case_id: rows})
            count += len(rows)
    return count


def read_timer_table(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """case_id -> {trigger: due_on} as the table holds them (for verify)."""
    out: dict[str, dict[str, Any]] = {}
    for case_id, trigger, due in conn.execute("SELECT case_id, trigger, due_on FROM timers"):
        out.setdefault(case_id, {})[trigger] = due
    return out


@attrs.frozen
class TimerStep:
    """A timed step: taken by a tick, or waiting (due, but a guard or the join refuses)."""

    case_id: str
    trigger: str
    label: str
    on: dt.date
    source: frozenset[str]
    target: frozenset[str]
    seq: int | None = None  # the event's sequence number, when taken
    reasons: tuple[str, ...] = ()  # why it waits, when not taken

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "trigger": self.trigger, "label": self.label,
                "on": self.on.isoformat(), "source": sorted(self.source),
                "target": sorted(self.target), "seq": self.seq, "reasons": list(self.reasons)}


@attrs.frozen
class TickReport:
    """What one tick did: the steps it took (in date order), how many another ticker took
    first, and the due steps that wait because a condition refuses them."""

    on: dt.date
    taken: tuple[TimerStep, ...]
    already_taken: int
    waiting: tuple[TimerStep, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"on": self.on.isoformat(), "taken": [s.to_dict() for s in self.taken],
                "already_taken": self.already_taken,
                "waiting": [s.to_dict() for s in self.waiting]}

    def describe(self) -> str:
        """The report in a few plain-text lines."""
        lines = [f"Tick on {self.on.isoformat()}: {len(self.taken)} timed step(s) taken"
                 + (f", {self.already_taken} already taken by another ticker"
                    if self.already_taken else "")
                 + (f", {len(self.waiting)} waiting" if self.waiting else "") + "."]
        for s in self.taken:
            lines.append(f"  {s.on.isoformat()}  {s.case_id}: {s.trigger} "
                         f"({', '.join(sorted(s.source))} -> {', '.join(sorted(s.target))})")
        for s in self.waiting:
            lines.append(f"  waiting {s.on.isoformat()}  {s.case_id}: {s.trigger}: "
                         + "; ".join(s.reasons))
        return "\n".join(lines)


def due_cases(conn: sqlite3.Connection, on: dt.date) -> list[str]:
    """The cases with a timer due on or before ``on``, the earliest due first."""
    with translate("find the due timers"):
        # the range on the due_on index alone (a GROUP BY would make SQLite walk the
        # primary key, every row of the table, to avoid a sort)
        rows = conn.execute("SELECT case_id FROM timers INDEXED BY timers_due "
                            "WHERE due_on <= ? ORDER BY due_on, case_id",
                            (on.isoformat(),)).fetchall()
    return list(dict.fromkeys(r[0] for r in rows))


def tick(store: Store, on: dt.date) -> TickReport:
    """The body of :meth:`Store.tick` (see there)."""
    taken: list[TimerStep] = []
    waiting: list[TimerStep] = []
    already = 0
    for case_id in due_cases(store._conn, on):
        steps, lost, waits = _tick_case(store, case_id, on)
        taken.extend(steps)
        waiting.extend(waits)
        already += lost
    taken.sort(key=lambda s: (s.on, s.case_id, s.seq or 0))
    return TickReport(on=on, taken=tuple(taken), already_taken=already,
                      waiting=tuple(waiting))


def _tick_case(store: Store, case_id: str,
               on: dt.date) -> tuple[list[TimerStep], int, list[TimerStep]]:
    taken: list[TimerStep] = []
    lost = 0
    case = store.case(case_id)
    for _ in range(MAX_STEPS_PER_CASE):
        engine = engine_for(case.definition)
        found = _next_due(engine, case.engine_state, case_id, on)
        if isinstance(found, list):
            return taken, lost, found
        day, t = found
        source = case.state
        try:
            event = case.fire(t.trigger, actor=CLOCK, on=day)
        except ConcurrencyError:
            # another ticker (or a person) wrote first: look again at what the log says
            lost += 1
            case = store.case(case_id)
            continue
        except TransitionRefusedError:  # decided anew on a fresh copy next round
            case = store.case(case_id)
            continue
        taken.append(TimerStep(case_id=case_id, trigger=t.trigger, label=t.label or t.trigger,
                               on=day, source=source, target=event.target, seq=event.seq))
    return taken, lost, []


def _next_due(engine: Engine, state: CaseState, case_id: str,
              on: dt.date) -> tuple[dt.date, Any] | list[TimerStep]:
    """The first due timed step the clock may take now, or the due ones that wait."""
    waits: list[TimerStep] = []
    for day, t in engine.timers(state):
        if day > on:
            break
        decision = engine.evaluate(state, t.trigger, actor=CLOCK, on=day, case_id=case_id)
        if decision.ok:
            return day, t
        waits.append(TimerStep(case_id=case_id, trigger=t.trigger, label=t.label or t.trigger,
                               on=day, source=state.config, target=state.config,
                               reasons=decision.reasons))
    return waits
