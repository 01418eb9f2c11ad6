"""A case: one plan on its way through a workflow, and the events that record each step.

A :class:`Case` is what the store hands out. Its state is what its events say;
asking questions (``allowed``, ``why_not``, ``awaiting``) never writes, and
``fire`` asks the store to append one event, atomically, or raises and writes
nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from .canonical import check_data, check_text, date_or_today
from .definition import TransitionDef, Workflow
from .engine import CaseState, Decision, Engine, engine_for
from .errors import ConcurrencyError, InvalidInputError, TransitionRefusedError
from .forecast import Deadline, Expectation, Forecast, LatestDates, Timer, parse_expected
from .forecast import deadlines as _deadlines
from .forecast import expectations as _expectations
from .forecast import forecast as _forecast
from .forecast import latest_dates as _latest_dates
from .forecast import timers as _timers
from .versioning import migrated_state

if TYPE_CHECKING:
    import pandas

    from .views import HistoryTable, Svg

__all__ = ["Case", "Event", "Region", "MAX_NOTE_LENGTH", "check_actor"]

MAX_NOTE_LENGTH = 10_000
MAX_ID_LENGTH = 200
#: The most times ``fire(..., retries=N)`` decides a step anew after a conflict.
MAX_RETRIES = 1000


@attrs.frozen(weakref_slot=False)
class Event:
    """One recorded step. ``source`` and ``target`` are frozensets of active leaf state ids."""

    case_id: str
    seq: int
    trigger: str
    actor: str
    on: dt.date
    recorded_at: dt.datetime
    source: frozenset[str]
    target: frozenset[str]
    note: str | None
    data: Mapping[str, Any] = attrs.field(hash=False)
    workflow: str
    workflow_version: int
    kind: str = "fire"  # "create", "fire" or "expect"
    key: str | None = None
    prev_hash: str = attrs.field(default="", repr=False)
    hash: str = attrs.field(default="", repr=False)
    #: a creation's commitment to its workflow's text (SHA-256 of it); None otherwise
    workflow_digest: str | None = attrs.field(default=None, repr=False)
    #: the person who acted for the actor, as the application said (hashed); or None
    by: str | None = None
    #: the event's place in the store's feed (gap-free, in commit order; not hashed)
    position: int | None = attrs.field(default=None, repr=False)

    @property
    def date_known(self) -> bool:
        """False when the step's own date is unknown and ``on`` is only the latest date it
        is known by: recorded as ``data={"dates": {trigger: {"decided_on": "unknown"}}}``."""
        dates = self.data.get("dates")
        if not isinstance(dates, Mapping):
            return True
        mine = dates.get(self.trigger)
        return not (isinstance(mine, Mapping) and mine.get("decided_on") == "unknown")

    @property
    def on_text(self) -> str:
        """``on`` as ISO text, or 'by YYYY-MM-DD (date unknown)' when the date is unknown."""
        day = self.on.isoformat()
        return day if self.date_known else f"by {day} (date unknown)"

    @property
    def moved(self) -> bool:
        """True when the event changed the case's state (a recorded ballot may not)."""
        return self.source != self.target

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready values (dates as ISO strings, states as sorted lists)."""
        return {
            "case_id": self.case_id, "seq": self.seq, "kind": self.kind,
            "trigger": self.trigger, "actor": self.actor, "on": self.on.isoformat(),
            "recorded_at": self.recorded_at.isoformat(), "source": sorted(self.source),
            "target": sorted(self.target), "note": self.note, "data": dict(self.data),
            "workflow": self.workflow, "workflow_version": self.workflow_version,
            "key": self.key, "prev_hash": self.prev_hash, "hash": self.hash,
            "workflow_digest": self.workflow_digest, "by": self.by, "position": self.position,
        }


@attrs.frozen
class Region:
    """A part of the workflow that moves on its own: the top level, or a parallel region."""

    id: str | None  # None for the top level
    label: str
    state: str  # the active leaf
    state_label: str
    done: bool
    awaiting: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)  # actor -> triggers


class _Appender(Protocol):
    def _append(self, case: Case, decision: Decision, *, note: str | None,
                data: dict[str, Any], key: str | None, by: str | None = None,
                dated: bool = True) -> Event: ...

    def case(self, case_id: str) -> Case: ...

    def _append_expect(self, case: Case, *, actor: str, on: dt.date, note: str | None,
                       data: dict[str, Any], key: str | None, dated: bool = True) -> Event: ...

    def _find_key(self, case: Case, key: str) -> Event | None: ...

    def _keep_for_rollback(self, case: Case) -> None: ...

    def _check_retry(self, stored: Event, *, trigger: str, actor: str, on: dt.date | None,
                     note: str | None, data: Mapping[str, Any],
                     by: str | None = None) -> None: ...


def reasons_text(reasons: Sequence[str]) -> str:
    """Reasons joined into one sentence, ending with exactly one full stop."""
    text = "; ".join(reasons)
    return text if text.endswith(".") else text + "."


def check_person(by: object) -> str:
    """The person who acts for an actor (``by``): printable text, 1 to 200 characters."""
    text = check_text(by, "by", max_length=MAX_ID_LENGTH)
    if not text.strip() or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInputError(f"by {text!r} must name a person: printable text, not empty "
                                f"or blank.")
    return text


def check_actor(actor: object) -> str:
    text = check_text(actor, "actor", max_length=MAX_ID_LENGTH)
    if not text:
        raise InvalidInputError("actor must not be empty; name who takes the step.")
    return text


class Case:
    """A case as its events left it. Created and loaded by a Store; ``fire`` moves it on."""

    def __init__(self, store: _Appender | None, workflow: Workflow, case_id: str,
                 state: CaseState, history: tuple[Event, ...], *,
                 as_of: dt.date | None = None) -> None:
        self._store = store
        self._workflow = workflow
        self._engine: Engine = engine_for(workflow)
        self._id = case_id
        self._state = state
        self._history = history
        self._as_of = as_of

    # -- what the case is ---------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def workflow(self) -> str:
        """The workflow's name."""
        return self._workflow.name

    @property
    def definition(self) -> Workflow:
        """The workflow definition this case runs on (the version it was created with)."""
        return self._workflow

    @property
    def workflow_version(self) -> int:
        return self._workflow.version

    @property
    def version(self) -> int:
        """The sequence number of the case's last event (its creation is 1)."""
        return self._state.version

    @property
    def state(self) -> frozenset[str]:
        """The active leaf state ids."""
        return self._state.config

    @property
    def active_states(self) -> frozenset[str]:
        """Every active state: the leaves and the states that contain them."""
        return self._engine.active(self._state.config)

    @property
    def is_final(self) -> bool:
        """True when the case has ended in a final state: nothing more can happen."""
        return self._engine.is_final(self._state.config)

    @property
    def history(self) -> tuple[Event, ...]:
        return self._history

    def history_table(self) -> HistoryTable:
        """The events as a sequence that shows as a table in a notebook."""
        table: HistoryTable = _views().HistoryTable(self._history, self._workflow)
        return table

    def history_frame(self) -> pandas.DataFrame:
        """The events as a pandas DataFrame (needs the ``notebook`` extra)."""
        return _views().events_frame(self._history)

    @property
    def data(self) -> Mapping[str, Any]:
        """Creation data merged with every step's data, in order (expectations stay out)."""
        return MappingProxyType(dict(self._state.data))

    @property
    def as_of(self) -> dt.date | None:
        """The date this view was taken as of, or None for the case as it is now."""
        return self._as_of

    @property
    def last_on(self) -> dt.date | None:
        return self._state.last_on

    @property
    def engine_state(self) -> CaseState:
        return self._state

    def __repr__(self) -> str:
        when = f" as of {self._as_of.isoformat()}" if self._as_of else ""
        return (f"<Case {self._id!r} ({self.workflow} v{self.workflow_version}) "
                f"v{self.version}{when}: {', '.join(sorted(self.state))}>")

    def _repr_html_(self) -> str:
        html: str = _views().case_html(self)
        return html

    # -- questions ----------------------------------------------------------------------

    def _on(self, on: object) -> dt.date:
        """The date a question is asked on: ``on``, else the view's date, else today."""
        if on is None and self._as_of is not None:
            return self._as_of
        return date_or_today(on)

    def allowed(self, actor: str | None = None, on: object = None) -> list[str]:
        """Triggers that may fire now: by ``actor``, or by anyone when ``actor`` is None."""
        if self._as_of is not None:
            return []
        if actor is not None:
            actor = check_actor(actor)
        return self._engine.allowed(self._state, actor=actor, on=self._on(on), case_id=self._id)

    def why_not(self, trigger: str, *, actor: str, on: object = None,
                data: Mapping[str, Any] | None = None, by: str | None = None) -> list[str]:
        """Every reason ``actor`` firing ``trigger`` would be refused; [] if it would fire.

        With ``by`` (the person), four-eyes rules (``not_by``) are asked too; without it
        they are left out, as no particular person is meant.
        """
        return list(self._decide(trigger, actor=actor, on=on, data=data, by=by,
                                 check_persons=by is not None).reasons)

    def _decide(self, trigger: str, *, actor: str, on: object,
                data: Mapping[str, Any] | None, checked: bool = False,
                by: str | None = None, check_persons: bool = True) -> Decision:
        trigger = check_text(trigger, "trigger", max_length=MAX_ID_LENGTH)
        actor = check_actor(actor)
        if by is not None:
            by = check_person(by)
        when = self._on(on)
        decision = self._engine.evaluate(self._state, trigger, actor=actor, on=when,
                                         data=data if checked else check_data(data),
                                         case_id=self._id, by=by,
                                         check_persons=check_persons)
        if self._as_of is not None:
            reason = (f"this is a view of the case as of {self._as_of.isoformat()}; "
                      f"load the case without as_of to take a step")
            decision = attrs.evolve(decision, reasons=(reason, *decision.reasons))
        return decision

    def awaiting(self, on: object = None) -> dict[str, list[str]]:
        """Who may act and on what: actor id -> triggers, for every actor of the workflow.
        Steps marked ``awaited = false`` (one anyone may take at any time) are left out:
        nobody is waiting for them (:meth:`permitted` includes them).

        On a view taken ``as_of`` a date, this describes who was awaited then (``on``
        defaults to that date); the view itself still refuses to take steps.
        """
        when = self._on(on)
        out: dict[str, list[str]] = {}
        for actor in self._workflow.actors:
            triggers = [t for t in self._engine.allowed(self._state, actor=actor, on=when,
                                                        case_id=self._id)
                        if self._awaited(t)]
            if triggers:
                out[actor] = triggers
        return out

    def permitted(self, on: object = None) -> dict[str, list[str]]:
        """Who may take a step now and which: actor id -> triggers, like :meth:`awaiting`
        but with the steps marked ``awaited = false`` too (a withdrawal anyone may make)."""
        when = self._on(on)
        out: dict[str, list[str]] = {}
        for actor in self._workflow.actors:
            triggers = self._engine.allowed(self._state, actor=actor, on=when, case_id=self._id)
            if triggers:
                out[actor] = triggers
        return out

    def _awaited(self, trigger: str) -> bool:
        """False for a step marked ``awaited = false`` (one anyone may take at any time)."""
        t = self._engine.enabled_transition(self._state.config, trigger)
        return t is None or t.awaited

    def regions(self, on: object = None) -> list[Region]:
        """Each independently moving part, its active state, and who may move it now."""
        wf = self._workflow
        order = list(wf.state_defs)
        allowed = self.awaiting(on)
        out = []
        for leaf in sorted(self.state, key=order.index):
            lineage = [leaf, *wf.ancestors(leaf)]
            region = None
            for anc in lineage[1:]:
                parent = wf.state_defs[anc].parent
                if parent is not None and wf.state_defs[parent].kind == "parallel":
                    region = anc
                    break
            own = lineage[: lineage.index(region) + 1] if region else lineage
            waiting: dict[str, tuple[str, ...]] = {}
            for actor, triggers in allowed.items():
                mine = tuple(t for t in triggers
                             if (tr := self._engine.enabled_transition(self.state, t))
                             and tr.source in own)
                if mine:
                    waiting[actor] = mine
            out.append(Region(id=region, label=wf.label_of(region) if region else wf.label,
                              state=leaf, state_label=wf.label_of(leaf),
                              done=wf.state_defs[leaf].final, awaiting=waiting))
        return out

    def steps(self) -> list[str]:
        """Triggers of the steps that leave a state the case is in, allowed now or not, in
        the order of the workflow file (``allowed`` and ``why_not`` tell which may fire)."""
        active = self.active_states
        seen: dict[str, None] = {}
        for t in self._workflow.transitions:
            if t.source in active:
                seen.setdefault(t.trigger, None)
        return list(seen)

    def transition(self, trigger: str) -> TransitionDef | None:
        """The workflow transition ``trigger`` takes from the case's current state, if any."""
        check_text(trigger, "trigger", max_length=MAX_ID_LENGTH)
        return self._engine.enabled_transition(self._state.config, trigger)

    def entered_by(self) -> dict[str, Event]:
        """Leaf state id -> the event that last entered it (who decided, and when)."""
        out: dict[str, Event] = {}
        for e in self._history:
            for leaf in e.target - e.source:
                out[leaf] = e
        return out

    def decisions(self) -> list[Event]:
        """The events that took a step or cast a ballot (not the creation)."""
        return [e for e in self._history if e.kind == "fire"]

    def ballots(self) -> dict[str, dict[str, str]]:
        """Open vote groups: vote id -> voter -> ballot cast in the current round."""
        return {k: dict(v) for k, v in self._state.ballots.items()}

    def withdrawn(self) -> dict[str, frozenset[str]]:
        return dict(self._state.withdrawn)

    def coverage(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Who the plan still covers: region -> (parties in the plan, parties that left),
        for each region whose file lists the parties it ``covers``."""
        return self._engine.coverage(self._state)

    def region_outcome(self, region: str) -> str:
        """A region's outcome: "done", "not done" (ended without taking part) or "open"."""
        return self._engine.region_outcome(region, self._state.config)

    # -- expectations, deadlines and the forecast (docs/forecast.md) --------------------

    def expectations(self) -> list[Expectation]:
        """The expected dates that still count: the latest said about each pending step."""
        return _expectations(self._history)

    def deadlines(self, on: object = None) -> list[Deadline]:
        """Each step's deadline with its due date and status (met / open / at risk / missed)."""
        return _deadlines(self._workflow, self._state, self._history, on=self._on(on))

    def timers(self, on: object = None) -> list[Timer]:
        """The timed steps armed now, the earliest first: what the clock will do by itself
        (``approvalflow tick``), and when; ``status`` is "due" once the date has come."""
        return _timers(self._workflow, self._state, on=self._on(on))

    def forecast(self, on: object = None) -> Forecast:
        """When the case is expected to reach its goal, on time or not, and who it waits for."""
        return _forecast(self._workflow, self._state, self._history, case_id=self._id,
                         on=self._on(on))

    def timeline(self, on: object = None) -> Svg:
        """The case as a story in time, an SVG picture (shows inline in a notebook):
        decided steps on a date axis, awaited steps with their forecast dates and
        deadlines, the target date and today."""
        svg: Svg = _views().case_svg(self, on=self._on(on))
        return svg
    def latest_dates(self, on: object = None) -> LatestDates:
        """Working backwards from the target: the latest date each awaited step can be taken."""
        return _latest_dates(self._workflow, self._state, self._history, case_id=self._id,
                             on=self._on(on))

    # -- acting -------------------------------------------------------------------------

    def fire(self, trigger: str, *, actor: str, on: object = None, note: str | None = None,
             data: Mapping[str, Any] | None = None, key: str | None = None,
             by: str | None = None, retries: int = 0) -> Event:
        """Take a step: append its event and move the case, or raise and write nothing.

        ``key`` is an idempotency key: a retry with the same key returns the event
        already stored instead of storing it again. ``by`` records the person who acts
        for ``actor`` (the application's authenticated user: approvalflow does not
        authenticate anyone); it is stored, hashed, and what ``not_by`` rules compare.

        ``retries``: when another writer changed the case since this copy was read
        (:class:`~approvalflow.errors.ConcurrencyError`), load the case again and decide
        the step anew on what is stored now, up to ``retries`` times. A decision made on
        an older state is never written: the step may now be refused (for instance a
        ballot when the vote has just closed). Either way this Case object is left at
        the state it was decided on.
        """
        if isinstance(retries, bool) or not isinstance(retries, int) \
                or not 0 <= retries <= MAX_RETRIES:
            raise InvalidInputError(f"retries must be a whole number from 0 to {MAX_RETRIES}, "
                                    f"not {retries!r}.")
        while True:
            try:
                return self._fire_once(trigger, actor=actor, on=on, note=note, data=data,
                                       key=key, by=by)
            except ConcurrencyError:
                if retries <= 0 or self._store is None:
                    raise
                retries -= 1
                self._reload()

    def _reload(self) -> None:
        """Take the state and history the store holds now (after a ConcurrencyError)."""
        assert self._store is not None
        # inside a bulk block the reload may read the block's own steps: a rollback must
        # put this copy back as it was before the block, not at a state never stored
        self._store._keep_for_rollback(self)
        fresh = self._store.case(self._id)
        self._state, self._history = fresh._state, fresh._history

    def _fire_once(self, trigger: str, *, actor: str, on: object, note: str | None,
                   data: Mapping[str, Any] | None, key: str | None,
                   by: str | None) -> Event:
        if note is not None:
            note = check_text(note, "note", max_length=MAX_NOTE_LENGTH)
        if key is not None:
            key = check_text(key, "key", max_length=MAX_ID_LENGTH)
        payload = check_data(data)  # a fresh copy, the step's own
        if by is not None:
            by = check_person(by)
        if key is not None and self._store is not None and self._as_of is None:
            stored = self._store._find_key(self, key)
            if stored is not None:
                # without a date the step meant "today": a retry on a later day is the same
                self._store._check_retry(stored, trigger=trigger, actor=actor,
                                         on=None if on is None else self._on(on), note=note,
                                         data=payload, by=by)
                return stored
        decision = self._decide(trigger, actor=actor, on=on, data=payload, checked=True, by=by)
        if decision.reasons:
            raise TransitionRefusedError(
                f"Can't fire {trigger!r} on case {self._id!r} by {actor!r}: "
                + reasons_text(decision.reasons), list(decision.reasons))
        if self._store is None:
            raise TransitionRefusedError("This case is not attached to a store.",
                                         ["the case is not attached to a store"])
        return self._store._append(self, decision, note=note, data=payload, key=key, by=by,
                                   dated=on is not None)

    def expect(self, step: str, on: object, *, actor: str, said_on: object = None,
               voter: str | None = None, note: str | None = None,
               key: str | None = None) -> Event:
        """Record that ``step`` is expected ``on`` a date ('YYYY-MM-DD', or 'YYYY-MM' for the
        end of a month), as said by ``actor`` on ``said_on`` (default today).

        An expectation is an event in the log like any other: it changes no state and no
        case data, and a later one about the same step replaces it. For a vote, ``voter``
        names the voter it is about (None: every voter still to vote).
        """
        wf = self._workflow
        step = check_text(step, "step", max_length=MAX_ID_LENGTH)
        actor = check_actor(actor)
        expected, given = parse_expected(on)
        said = self._on(said_on)
        if note is not None:
            note = check_text(note, "note", max_length=MAX_NOTE_LENGTH)
        if key is not None:
            key = check_text(key, "key", max_length=MAX_ID_LENGTH)
        reasons = []
        if self._as_of is not None:
            reasons.append(f"this is a view of the case as of {self._as_of.isoformat()}; load "
                           f"the case without as_of to record an expectation")
        if step not in wf.triggers:
            reasons.append(f"{step!r} is not a step of workflow {wf.name!r}; its steps: "
                           f"{', '.join(sorted(wf.triggers))}")
        if actor not in wf.actors:
            reasons.append(f"{actor!r} is not an actor of workflow {wf.name!r}; actors: "
                           f"{', '.join(sorted(wf.actors))}")
        if voter is not None:
            groups = [wf.votes[t.vote] for t in wf.transitions_for(step) if t.vote]
            if not groups:
                reasons.append(f"{step!r} is not a vote, so it takes no voter")
            elif not any(voter in g.voters for g in groups):
                reasons.append(f"{voter!r} is not a voter of {step!r}; voters: "
                               f"{', '.join(groups[0].voters)}")
        if self.is_final:
            reasons.append(f"the case has ended in {', '.join(sorted(self.state))}; nothing "
                           f"more is expected")
        last = self._state.last_on
        if last is not None and said < last:
            reasons.append(f"the date {said.isoformat()} is before the case's last event on "
                           f"{last.isoformat()}; dates may not go backwards")
        late = self._engine.overdue(self._state, said, case_id=self._id)
        if late:
            reasons.append(f"the clock's step {late[0][1].trigger!r} fell due on "
                           f"{late[0][0].isoformat()} and has not been recorded; nothing dated "
                           f"after it can be recorded before it (run 'approvalflow tick')")
        if reasons:
            raise TransitionRefusedError(
                f"Can't record when {step!r} is expected on case {self._id!r}: "
                + reasons_text(reasons), reasons)
        body: dict[str, Any] = {"step": step, "on": expected.isoformat(), "given": given}
        if voter is not None:
            body["voter"] = voter
        if key is not None and self._store is not None and self._as_of is None:
            stored = self._store._find_key(self, key)
            if stored is not None:
                self._store._check_retry(stored, trigger="expect", actor=actor,
                                         on=None if said_on is None else said, note=note,
                                         data={"expect": body})
                return stored
        if self._store is None:
            raise TransitionRefusedError("This case is not attached to a store.",
                                         ["the case is not attached to a store"])
        return self._store._append_expect(self, actor=actor, on=said, note=note,
                                          data={"expect": body}, key=key,
                                          dated=said_on is not None)

    @property
    def head_hash(self) -> str:
        """The hash of the case's last event: the log state this copy decides on."""
        return self._history[-1].hash

    def _snapshot(self) -> tuple[Any, ...]:
        return self._state, self._history, self._workflow

    def _restore(self, snapshot: tuple[Any, ...]) -> None:
        """Put the case back as it was (the store calls this when a bulk block rolls back)."""
        self._state, self._history, self._workflow = snapshot
        self._engine = engine_for(self._workflow)

    def _advance(self, event: Event, moves_to: Workflow | None = None,
                 state: CaseState | None = None,
                 history: tuple[Event, ...] | None = None) -> None:
        """Called by the store once ``event`` is committed (``moves_to``: the version a
        ``migrate`` event moved the case to; ``state``: the state the event leads to, and
        ``history``: the history it ends, when the store has already made them)."""
        if event.kind == "migrate" and moves_to is not None:
            self._workflow, self._engine = moves_to, engine_for(moves_to)
            if state is None:
                state = self._engine.rebase(migrated_state(
                    self._state, event.target, ballots=event.data["migrate"]["ballots"],
                    seq=event.seq, on=event.on))
        if state is not None:
            self._state = state
            self._history = (*self._history, event) if history is None else history
            return
        if event.kind != "fire":  # an expectation: no state, no case data
            self._state = attrs.evolve(self._state, version=event.seq, last_on=event.on)
            self._history = (*self._history, event)
            return
        self._state = self._engine.apply(self._state, trigger=event.trigger, actor=event.actor,
                                         on=event.on, seq=event.seq, target=event.target,
                                         data=event.data, by=event.by)
        self._history = (*self._history, event)


def _views() -> Any:
    """The display layer, which sits above the model: the one way Case's display methods
    reach it, imported when first shown (see tests/test_architecture.py)."""
    from . import views

    return views
