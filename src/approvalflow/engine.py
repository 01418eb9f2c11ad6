"""The engine: what a trigger does to a case, decided on ``transitions``' statechart.

One :class:`Engine` is built per workflow (and cached), never per case: it holds a
single ``transitions`` ``HierarchicalMachine`` and a cursor model that is set to a
case's configuration, triggered, and read back. A statechart step is a pure
function of (configuration, trigger), so the machine's answers are memoised and
the cost of a step does not grow with the number of cases.

What ``transitions`` does not do, the engine does before anything moves: it checks
who may fire a step, the effective date, the named guards, the AND-join of parallel
regions (``transitions`` lets a parallel parent's transition fire before every
region is done), and vote groups. ``evaluate`` lists every reason a step would be
refused; ``allowed``, ``why_not`` and ``fire`` all go through it, so they agree.

No SQL here: the store persists what the engine decides.
"""

from __future__ import annotations

import datetime as dt
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from transitions.extensions.nesting import HierarchicalMachine, NestedState

from . import guards as _guards
from . import rules as _rules  # noqa: F401  (registers the bundled workflows' guards)
from .clock import resolve as _resolve_date
from .definition import CLOCK, DateRef, TransitionDef, VoteGroup, Workflow
from .records import maker

__all__ = ["Engine", "CaseState", "Decision", "engine_for", "merge_data", "data_paths",
           "undeclared_keys"]

_SEP = "\u241f"  # a separator no state id can contain


class _State(NestedState):
    separator = _SEP


class _Machine(HierarchicalMachine):
    state_cls = _State


class _Cursor:
    """The one model the machine moves: set to a case's configuration, triggered, read back."""

    state: Any
    trigger: Any  # added by the machine


def merge_data(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in; nested objects are merged key by key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_data(out[key], value)
        else:
            out[key] = value
    return out


def copy_data(value: Any) -> Any:
    """A copy of plain data (dicts, lists and scalars) that shares no dict or list with
    it, and holds the very same keys and scalars."""
    if type(value) is dict:
        return {key: copy_data(item) for key, item in value.items()}
    if type(value) is list:
        return [copy_data(item) for item in value]
    return value


def data_paths(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every key path ``data`` sets: ``{"budget": {"total": 1}}`` -> ``["budget.total"]``."""
    out: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(data_paths(value, path + "."))
        else:
            out.append(path)
    return out


def undeclared_keys(data: Mapping[str, Any], allowed: Iterable[str] | None,
                    trigger: str | None = None) -> list[str]:
    """Key paths in ``data`` that ``allowed`` (a file's ``sets``) does not cover.

    ``None`` allows anything. A listed key covers itself and everything below it. A
    step's record of its own date (``dates.<trigger>``) is always allowed.
    """
    if allowed is None:
        return []
    keys = set(allowed)
    if trigger:
        keys.add(f"dates.{trigger}")
    out = []
    for p in data_paths(data):
        # covered when the path, or a part of it up to a dot, is a listed key
        prefix = p
        while prefix not in keys:
            cut = prefix.rfind(".")
            if cut < 0:
                out.append(p)
                break
            prefix = prefix[:cut]
    return out


@attrs.frozen(weakref_slot=False)
class CaseState:
    """Everything the engine knows about a case, rebuilt by applying its events in order."""

    config: frozenset[str]  # active leaf states
    data: Mapping[str, Any]
    version: int  # seq of the last event applied
    last_on: dt.date | None
    ballots: Mapping[str, Mapping[str, str]]  # vote group -> voter -> "yes"/"no"
    withdrawn: Mapping[str, frozenset[str]]  # vote group -> voters who left for good
    withdrew_at: int = 0  # seq of the last withdrawal (a withdraw ballot, a region not done)
    set_at: Mapping[str, int] = attrs.field(factory=dict)  # top-level data key -> seq set
    # What timed steps count from, kept only for a workflow with timed steps (the
    # engine's ``timed``): (seq, date) of each step's latest event, of each active
    # state's latest entry, and of the day every region of an active parallel state
    # was done.
    taken: Mapping[str, tuple[int, dt.date]] = attrs.field(factory=dict)
    entered: Mapping[str, tuple[int, dt.date]] = attrs.field(factory=dict)
    joined: Mapping[str, tuple[int, dt.date]] = attrs.field(factory=dict)
    #: trigger -> the person (``by``) of its latest event, None when it recorded none;
    #: "create" for the creation. What ``not_by`` (four eyes) compares against.
    persons: Mapping[str, str | None] = attrs.field(factory=dict)


#: CaseState from all its fields, in order, made as a step makes one (records.maker).
_make_state = maker(CaseState)


@attrs.frozen
class Decision:
    """What firing a trigger would do: refused (``reasons``), or the target configuration."""

    trigger: str
    actor: str
    on: dt.date
    reasons: tuple[str, ...]
    transition: TransitionDef | None = None
    target: frozenset[str] = frozenset()
    moves: bool = False  # False: a ballot recorded without a change of state
    #: the rule each reason enforces ("actor", "join", "vote: once", "guard NAME", ...)
    rules: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons


def _ids(items: Iterable[str]) -> str:
    return ", ".join(repr(i) for i in sorted(items))


def _given_ids(items: Iterable[str], most: int = 10, width: int = 60) -> str:
    """Keys the caller gave, as :func:`_ids` names them, but each cut to ``width``
    characters and at most ``most`` of them: a refusal names what was wrong without
    echoing a megabyte of it back."""
    keys = sorted(items)
    shown = [repr(k) if len(k) <= width else repr(k[:width]) + f" (cut; {len(k)} characters)"
             for k in keys[:most]]
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(shown) + more


class Engine:
    """The runnable form of one workflow. Get it with :func:`engine_for`."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        wf = workflow
        self._path: dict[str, str] = {}
        for sid in wf.state_defs:
            self._path[sid] = _SEP.join([*reversed(wf.ancestors(sid)), sid])
        self._leaf_of_path = {p: s for s, p in self._path.items()}
        self._lineage: dict[str, frozenset[str]] = {
            s: frozenset([s, *wf.ancestors(s)]) for s in wf.state_defs
        }
        self._by_trigger: dict[str, tuple[TransitionDef, ...]] = {}
        for t in wf.transitions:
            self._by_trigger[t.trigger] = (*self._by_trigger.get(t.trigger, ()), t)
        self._cursor = _Cursor()
        # a vote every voter has withdrawn from moves its region to the vote's 'withdrawn'
        # state: a move of its own, under a trigger no file can name
        self._all_withdrawn = {vg.id: f"{_SEP}withdrawn{_SEP}{vg.id}"
                               for vg in wf.votes.values() if vg.withdrawn}
        extra: list[dict[str, str | None]] = [
            {"trigger": self._all_withdrawn[vg.id], "source": self._path[vg.state],
             "dest": self._path[vg.withdrawn]}
            for vg in wf.votes.values() if vg.withdrawn]
        # final leaves that end their region without it being done (a withdrawal)
        self._not_done: frozenset[str] = frozenset(
            leaf for leaf, d in wf.state_defs.items()
            if d.is_leaf and d.final and (r := self._region(leaf)) is not None
            and wf.state_defs[r].done and leaf not in wf.state_defs[r].done)
        self._machine = _Machine(
            model=self._cursor,
            states=[self._spec(s) for s, d in wf.state_defs.items() if d.parent is None],
            transitions=[{"trigger": t.trigger, "source": self._path[t.source],
                          # a reminder changes no state: an internal transition
                          "dest": None if t.reminder else self._path[t.target]}
                         for t in wf.transitions] + extra,
            initial=self._path[wf.initial],
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )
        self._lock = threading.Lock()
        self._memo: dict[tuple[frozenset[str], str], frozenset[str]] = {}
        self._active_memo: dict[frozenset[str], frozenset[str]] = {}
        self._decisions: dict[tuple[Any, ...], Decision] = {}
        self._facts_memo: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._votes_keys: dict[int, tuple[Any, Any, tuple[Any, ...]]] = {}
        self._finals = frozenset(s for s, d in wf.state_defs.items()
                                 if d.final and d.parent is None)
        self.initial_config = self._read_cursor()
        #: the steps the clock takes, in file order (empty: nothing here depends on time)
        self.timed = wf.timed_transitions
        self._parallel = tuple(s for s, d in wf.state_defs.items() if d.kind == "parallel")
        self._deadline_of: dict[str, DateRef] = {}
        for t in wf.transitions:
            if t.deadline is not None:
                self._deadline_of.setdefault(t.trigger, t.deadline)
        for sid, d in wf.state_defs.items():
            if d.deadline is not None:
                self._deadline_of.setdefault(sid, d.deadline)
        # the facts the timers count from: only these are kept in a CaseState
        refs = [t.timer for t in self.timed if t.timer is not None]
        refs += [r for r in self._deadline_of.values() if r is not None]
        self._watch_steps = frozenset([t.trigger for t in self.timed]
                                      + [r.step for r in refs if r.kind == "after" and r.step])
        self._watch_states = frozenset([t.source for t in self.timed]
                                       + [r.state for r in refs if r.kind == "state"
                                          and r.state])
        self._timed_joins = any(t.join for t in self.timed)
        #: whether any step has a four-eyes rule (a decision then depends on the persons)
        self._not_by = any(t.not_by for t in wf.transitions)
        self._watch_joins = tuple(p for p in self._parallel
                                  if any(r.kind == "join" and r.state == p for r in refs))

    # -- building and driving the transitions machine ----------------------------------

    def _region(self, sid: str) -> str | None:
        """The region (a child of a parallel state) ``sid`` lies in, nearest first."""
        defs = self.workflow.state_defs
        node: str | None = sid
        while node is not None:
            parent = defs[node].parent
            if parent is not None and defs[parent].kind == "parallel":
                return node
            node = parent
        return None

    def _spec(self, sid: str) -> Any:
        d = self.workflow.state_defs[sid]
        if d.kind == "atomic":
            # Finality is the engine's own business: transitions' final-state support is
            # experimental in 0.9.x and fails on a top-level final state.
            return sid
        children = [self._spec(c) for c in d.children]
        if d.kind == "parallel":
            return {"name": sid, "parallel": children}
        return {"name": sid, "initial": d.initial, "children": children}

    def _flatten(self, value: Any) -> Iterable[str]:
        if isinstance(value, list | tuple):
            for v in value:
                yield from self._flatten(v)
        else:
            yield self._leaf_of_path[value]

    def _read_cursor(self) -> frozenset[str]:
        return frozenset(self._flatten(self._cursor.state))

    def _nest(self, config: frozenset[str]) -> Any:
        paths = sorted(self._path[s] for s in config)
        return paths[0] if len(paths) == 1 else paths

    def step(self, config: frozenset[str], trigger: str) -> frozenset[str]:
        """The configuration ``transitions`` moves ``config`` to on ``trigger`` (no checks)."""
        key = (config, trigger)
        found = self._memo.get(key)
        if found is not None:
            return found
        with self._lock:
            self._machine.set_state(self._nest(config), model=self._cursor)
            self._cursor.trigger(trigger)
            result = self._read_cursor()
        if len(self._memo) > 50_000:
            self._memo.clear()
        self._memo[key] = result
        return result

    # -- questions about a configuration -----------------------------------------------

    def active(self, config: frozenset[str]) -> frozenset[str]:
        """Every active state: the leaves and all their ancestors."""
        found = self._active_memo.get(config)
        if found is not None:
            return found
        out: set[str] = set()
        for leaf in config:
            out |= self._lineage[leaf]
        result = frozenset(out)
        if len(self._active_memo) > 50_000:
            self._active_memo.clear()
        self._active_memo[config] = result
        return result

    def is_final(self, config: frozenset[str]) -> bool:
        """True when the case has reached a top-level final state: nothing more can happen."""
        return len(config) == 1 and next(iter(config)) in self._finals

    def enabled_transition(self, config: frozenset[str], trigger: str) -> TransitionDef | None:
        active = self.active(config)
        for t in self._by_trigger.get(trigger, ()):
            if t.source in active:
                return t
        return None

    def pending_regions(self, parallel_state: str, config: frozenset[str]) -> list[str]:
        """Regions of ``parallel_state`` whose active leaf is not final (the join waits)."""
        defs = self.workflow.state_defs
        waiting = []
        for region in defs[parallel_state].children:
            leaves = [s for s in config if region in self._lineage[s]]
            if not leaves or not all(defs[s].final for s in leaves):
                waiting.append(region)
        return waiting

    def region_outcome(self, region: str, config: frozenset[str]) -> str:
        """``"done"``, ``"not done"`` (ended without taking part) or ``"open"``."""
        defs = self.workflow.state_defs
        leaves = [s for s in config if region in self._lineage[s]]
        if not leaves or not all(defs[s].final for s in leaves):
            return "open"
        if any(s in self._not_done for s in leaves):
            return "not done"
        return "done"

    def join_reasons(self, t: TransitionDef, config: frozenset[str]) -> list[str]:
        """Why a join (or a quorum-lost step) can't leave its parallel state now; [] if it can."""
        wf = self.workflow
        source = wf.state_defs[t.source]
        quorum = source.quorum
        if t.join:
            waiting = self.pending_regions(t.source, config)
            if waiting:
                labels = ", ".join(f"{r!r} ({wf.label_of(r)})" for r in waiting)
                return [f"waiting for {labels}: every region of {t.source!r} must be done "
                        f"before {t.trigger!r}"]
            out = [f"region {r!r} ({wf.label_of(r)}) ended without being done; it is needed "
                   f"before {t.trigger!r}" for r in source.children
                   if (quorum is None or r not in quorum.regions)
                   and self.region_outcome(r, config) == "not done"]
            if quorum is not None:
                done = [r for r in quorum.regions if self.region_outcome(r, config) == "done"]
                if len(done) < quorum.at_least:
                    out.append(f"only {len(done)} of the regions {_ids(quorum.regions)} ended "
                               f"done (the others withdrew); {t.trigger!r} needs at least "
                               f"{quorum.at_least}")
            return out
        if t.quorum_lost and quorum is not None:
            outcomes = [self.region_outcome(r, config) for r in quorum.regions]
            possible = sum(1 for o in outcomes if o != "not done")
            if possible >= quorum.at_least:
                return [f"{t.trigger!r} is for when the regions {_ids(quorum.regions)} can no "
                        f"longer reach {quorum.at_least} done; {possible} still can"]
        return []

    def coverage(self, state: CaseState) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """For each region that declares ``covers``: (parties still in the plan, parties out)."""
        wf = self.workflow
        out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for sid, d in wf.state_defs.items():
            if not d.covers:
                continue
            if self.region_outcome(sid, state.config) == "not done":
                out[sid] = ((), d.covers)
                continue
            gone: set[str] = set()
            for vg in wf.votes.values():
                if sid in self._lineage[vg.state]:
                    gone |= state.withdrawn.get(vg.id, frozenset())
            out[sid] = (tuple(p for p in d.covers if p not in gone),
                        tuple(p for p in d.covers if p in gone))
        return out

    def data_reasons(self, state: CaseState, t: TransitionDef,
                     data: Mapping[str, Any]) -> list[str]:
        """What is wrong with a step's data: keys it may not set, keys it must state again."""
        reasons = []
        stray = undeclared_keys(data, t.sets, t.trigger)
        if stray:
            allowed = ", ".join(repr(k) for k in t.sets or ()) or "none"
            reasons.append(f"{t.trigger!r} may not set the data {_given_ids(stray)}; it may set: "
                           f"{allowed}")
        if state.withdrew_at and t.restate_after_withdrawal:
            missing = [k for k in t.restate_after_withdrawal
                       if k.split(".")[0] not in data
                       and state.set_at.get(k.split(".")[0], 0) <= state.withdrew_at]
            if missing:
                reasons.append(f"a party withdrew (event {state.withdrew_at}), so the basis of "
                               f"the plan changed: {t.trigger!r} needs {_ids(missing)} stated "
                               f"again, by this step or a step after the withdrawal")
        return reasons

    def ballot_target(self, vg: VoteGroup, t: TransitionDef, state: CaseState,
                      actor: str) -> frozenset[str]:
        """Where a ballot leaves the case: its target, the vote's withdrawn state, or as is."""
        if t.ballot == "withdraw" and vg.id in self._all_withdrawn:
            gone = state.withdrawn.get(vg.id, frozenset()) | {actor}
            if all(v in gone for v in vg.voters):
                return self.step(state.config, self._all_withdrawn[vg.id])
        if self._ballot_moves(vg, t, state, actor):
            return self.step(state.config, t.trigger)
        return state.config

    def settle_votes(self, config: frozenset[str],
                     withdrawn: Mapping[str, frozenset[str]]) -> frozenset[str]:
        """``config`` with every vote that is entered again, but that all of its voters
        have left for good, moved straight to its 'withdrawn' state: a vote nobody can
        cast a ballot in ends as it ended before (after a revision, say)."""
        for vote_id, trigger in self._all_withdrawn.items():
            vg = self.workflow.votes[vote_id]
            gone = withdrawn.get(vote_id)
            if gone and vg.state in config and all(v in gone for v in vg.voters):
                config = self.step(config, trigger)
        return config

    def creation_reasons(self, data: Mapping[str, Any]) -> list[str]:
        """What is wrong with a case's creation data: keys the workflow does not let it set."""
        stray = undeclared_keys(data, self.workflow.creation_sets)
        if not stray:
            return []
        allowed = ", ".join(repr(k) for k in self.workflow.creation_sets or ()) or "none"
        return [f"a case of workflow {self.workflow.name!r} may not start with the data "
                f"{_ids(stray)}; it may start with: {allowed}"]

    def initial_state(self, data: Mapping[str, Any], on: dt.date,
                      by: str | None = None) -> CaseState:
        state = CaseState(config=self.initial_config, data=dict(data), version=1, last_on=on,
                          ballots={}, withdrawn={}, set_at={k: 1 for k in data},
                          persons={"create": by})
        if not self.timed:
            return state
        return attrs.evolve(state, entered={s: (1, on) for s in self.active(state.config)
                                            if s in self._watch_states},
                            joined=self._joined({}, state.config, 1, on))

    # -- time: the steps the clock takes ---------------------------------------------------

    def _joined(self, before: Mapping[str, tuple[int, dt.date]], config: frozenset[str],
                seq: int, on: dt.date) -> Mapping[str, tuple[int, dt.date]]:
        """When every region of each active parallel state was done (kept from ``before``)."""
        active = self.active(config)
        out = {}
        for p in self._watch_joins:
            if p in active and not self.pending_regions(p, config):
                out[p] = before.get(p, (seq, on))
        return out

    def rebase(self, state: CaseState) -> CaseState:
        """``state`` (a case moved onto this workflow from another version) with the facts
        this workflow's timers count from: a state it keeps counts from when it was
        entered, a state new to it from the move (``state.version``, ``state.last_on``);
        steps keep their dates."""
        if not self.timed:
            return attrs.evolve(state, taken={}, entered={}, joined={})
        seq, on = state.version, state.last_on or dt.date.min
        entered = {s: state.entered.get(s, (seq, on)) for s in self.active(state.config)
                   if s in self._watch_states}
        taken = {k: v for k, v in state.taken.items() if k in self._watch_steps}
        return attrs.evolve(state, taken=taken, entered=entered,
                            joined=self._joined(state.joined, state.config, seq, on))

    def deadline_of(self, step_or_state: str) -> DateRef | None:
        """The deadline of a step (its trigger) or of a state, if it has one."""
        return self._deadline_of.get(step_or_state)

    def date_of(self, ref: DateRef, state: CaseState) -> tuple[dt.date | None, str]:
        """The date ``ref`` names from the case's facts so far, or (None, why not)."""
        return _resolve_date(ref, data=state.data, taken=state.taken, entered=state.entered,
                             joined=state.joined, deadline_of=self.deadline_of)

    def timer_date(self, state: CaseState, t: TransitionDef) -> tuple[dt.date | None, str]:
        """The date the clock takes ``t`` on, or (None, why it is not armed).

        A timed step is armed while its source is active and it has not been taken since
        the case last entered its source (and, for a join, once every region is done).
        Its date is its timer's date, or the case's last event when that is later (a
        step is never dated before the case's last event).
        """
        if t.timer is None:
            return None, f"{t.trigger!r} is not a timed step"
        src = state.entered.get(t.source)
        if src is None or t.source not in self.active(state.config):
            return None, f"the case is not in {t.source!r}"
        last = state.taken.get(t.trigger)
        if last is not None and last[0] > src[0]:
            return None, (f"the clock took it on {last[1].isoformat()}, since the case last "
                          f"entered {t.source!r}")
        if t.join and self.pending_regions(t.source, state.config):
            return None, f"not every region of {t.source!r} is done"
        day, why = self.date_of(t.timer, state)
        if day is None:
            return None, why
        if state.last_on is not None and state.last_on > day:
            day = state.last_on
        return day, ""

    def same_timers(self, before: CaseState, after: CaseState) -> bool:
        """True when ``after`` certainly arms the same timers, on the same dates, as
        ``before`` (nothing a timer depends on changed); False when it may not."""
        return (after.entered is before.entered and after.taken is before.taken
                and after.joined is before.joined and after.data is before.data
                and after.last_on == before.last_on and not self._timed_joins
                and self.is_final(after.config) == self.is_final(before.config))

    def timers(self, state: CaseState) -> list[tuple[dt.date, TransitionDef]]:
        """The armed timed steps, by date then file order (guards not yet asked)."""
        if not self.timed or self.is_final(state.config):
            return []
        out = []
        for t in self.timed:
            day, _ = self.timer_date(state, t)
            if day is not None:
                out.append((day, t))
        out.sort(key=lambda item: item[0])
        return out

    def overdue(self, state: CaseState, on: dt.date, *,
                case_id: str = "") -> list[tuple[dt.date, TransitionDef]]:
        """Armed timed steps the clock could take, dated before ``on``: until the clock has
        taken them, no one may record anything dated after their date."""
        out = []
        for day, t in self.timers(state):
            if day >= on:
                break
            if self.evaluate(state, t.trigger, actor=CLOCK, on=day, case_id=case_id,
                             _overdue=False).ok:
                out.append((day, t))
        return out

    def overdue_reason(self, state: CaseState, on: dt.date, *, case_id: str = "") -> str | None:
        """Why nothing dated ``on`` may be recorded yet (a step, an expectation, a
        migration): a timed step fell due before it and the clock has not taken it."""
        # a timer's date is never before the last event, so only a later date can pass one
        if not self.timed or (state.last_on is not None and on <= state.last_on):
            return None
        late = self.overdue(state, on, case_id=case_id)
        if not late:
            return None
        day, first = late[0]
        return (f"the clock's step {first.trigger!r} fell due on {day.isoformat()} and has "
                f"not been recorded; nothing dated after it can be recorded before it (run "
                f"'approvalflow tick')")

    # -- deciding ----------------------------------------------------------------------

    def evaluate(self, state: CaseState, trigger: str, *, actor: str, on: dt.date,
                 data: Mapping[str, Any] | None = None, case_id: str = "",
                 unchecked: list[str] | None = None, by: str | None = None,
                 check_persons: bool = True, _overdue: bool = True) -> Decision:
        """Decide what firing ``trigger`` would do; every reason it can't is in ``reasons``,
        and the rule each reason enforces at the same index of ``rules``.

        With ``unchecked`` (a list), a guard that is not registered in this process is not
        run but its name is appended there (``verify`` counts such steps as not
        re-checked); without it, an unregistered guard refuses the step.

        ``by`` is the person taking the step for ``actor``. A transition with ``not_by``
        needs one, different from the person of the latest event of each named step;
        ``check_persons=False`` leaves that rule out (to ask what an actor may do, with
        no particular person in mind).
        """
        # A decision that, guards aside, depends on nothing but the configuration, the
        # trigger, the actor and the votes is memoised without its guards (see _memo_key);
        # the guards are run every time, and the date is put back in.
        key = self._memo_key(state, trigger, actor, on, data, check_persons)
        if key is None:
            return self._evaluate(state, trigger, actor=actor, on=on, data=data,
                                  case_id=case_id, unchecked=unchecked, by=by,
                                  check_persons=check_persons, _overdue=_overdue)
        found = self._decisions.get(key)
        if found is None:
            found = self._evaluate(state, trigger, actor=actor, on=on, data=data,
                                   case_id=case_id, unchecked=None, by=by,
                                   check_persons=check_persons, _overdue=_overdue,
                                   run_guards=False)
            if len(self._decisions) > 50_000:
                self._decisions.clear()
            self._decisions[key] = found
        t = found.transition
        if t is not None and t.guards:
            rules: list[str] = []
            reasons = self._guard_reasons(t, state, trigger, actor, on, data, case_id,
                                          unchecked, rules)
            if reasons:  # refused, with every reason (as _evaluate lists them)
                return Decision(trigger, actor, on, (*found.reasons, *reasons), transition=t,
                                rules=(*found.rules, *rules))
        elif found.on == on:  # no guards, the same day: the decision is the memoised one
            return found
        return Decision(trigger, actor, on, found.reasons, transition=t,
                        target=found.target, moves=found.moves, rules=found.rules)

    def _guard_reasons(self, t: TransitionDef, state: CaseState, trigger: str, actor: str,
                       on: dt.date, data: Mapping[str, Any] | None, case_id: str,
                       unchecked: list[str] | None, rules: list[str]) -> list[str]:
        """Run ``t``'s guards: the reasons they refuse with (each one's rule is appended
        to ``rules``). With ``unchecked``, a guard not registered here is listed there
        instead of run; without it, it refuses."""
        # a copy of its own: a guard that changes what it is given (it should not) changes
        # neither the case's state nor, in an import, the states cases share
        merged = copy_data(merge_data(state.data, data or {}))
        ctx = _guards.GuardContext(case_id=case_id, trigger=trigger, actor=actor, on=on,
                                   data=merged, state=state.config, workflow=self.workflow.name)
        reasons: list[str] = []
        for g in t.guards:
            func = _guards.lookup_guard(g)
            if func is None and unchecked is not None:
                unchecked.append(g)
                continue
            for reason in _guards.run_guard(g, func, ctx):
                rules.append(f"guard {g}")
                reasons.append(reason)
        return reasons

    def _memo_key(self, state: CaseState, trigger: str, actor: str, on: dt.date,
                  data: Mapping[str, Any] | None, check_persons: bool
                  ) -> tuple[Any, ...] | None:
        """The key a decision is memoised under, or None when it may depend on more.

        Left out: the clock (its timers), a date other than the last event's on a
        workflow with timed steps (a timer may have fallen due since), a date before the
        last event (refused, with the date in the reason), step data, a case where a
        party withdrew (data may have to be stated again), and, when asked, four-eyes
        rules (the persons). What is left, but for the guards (any function of the data
        and the date, run on every call), depends on the configuration, the trigger, the
        actor and the ballots and withdrawals alone.
        """
        last = state.last_on
        if actor == CLOCK or data or state.withdrew_at or last is None:
            return None
        if on != last and (self.timed or on < last):
            return None
        if check_persons and self._not_by:
            t = self.enabled_transition(state.config, trigger)
            if t is not None and t.not_by:
                return None
        if not self.workflow.votes:
            return (state.config, trigger, actor)
        return (state.config, trigger, actor, self.votes_key(state))

    def votes_key(self, state: CaseState) -> tuple[Any, ...]:
        """Every ballot and withdrawal as a sorted tuple. Both mappings are never changed
        in place (apply makes new ones when they change), so each pair is sorted once."""
        ballots, withdrawn = state.ballots, state.withdrawn
        if not ballots and not withdrawn:
            return ()
        found = self._votes_keys.get(id(ballots))
        if found is not None and found[0] is ballots and found[1] is withdrawn:
            return found[2]
        key = (tuple(sorted((g, tuple(sorted(b.items()))) for g, b in ballots.items())),
               tuple(sorted((g, tuple(sorted(w))) for g, w in withdrawn.items())))
        if len(self._votes_keys) > 4_096:
            self._votes_keys.clear()
        # the mappings are kept in the value, so their ids are not reused meanwhile
        self._votes_keys[id(ballots)] = (ballots, withdrawn, key)
        return key

    def _evaluate(self, state: CaseState, trigger: str, *, actor: str, on: dt.date,
                  data: Mapping[str, Any] | None, case_id: str,
                  unchecked: list[str] | None, by: str | None,
                  check_persons: bool, _overdue: bool, run_guards: bool = True) -> Decision:
        wf = self.workflow
        reasons: list[str] = []
        rules: list[str] = []

        def refuse(rule: str, text: str) -> None:
            rules.append(rule)
            reasons.append(text)

        def refused(t: TransitionDef | None = None) -> Decision:
            return Decision(trigger, actor, on, tuple(reasons), transition=t,
                            rules=tuple(rules))

        if self.is_final(state.config):
            refuse("final", f"the case has ended in final state {_ids(state.config)}; nothing "
                            f"more can happen")
            return refused()
        candidates = self._by_trigger.get(trigger)
        if not candidates:
            refuse("step", f"{trigger!r} is not a step of workflow {wf.name!r}; its steps: "
                           f"{_ids(self._by_trigger)}")
            return refused()
        timed = candidates[0].timed  # a step is timed on all its transitions or on none
        if actor == CLOCK and not timed:
            refuse("clock", f"{CLOCK!r} takes only timed steps; {trigger!r} has no date "
                            f"(at, after or escalates): a person takes it")
        elif actor not in wf.actors and not (actor == CLOCK and timed):
            refuse("actor", f"{actor!r} is not an actor of workflow {wf.name!r}; actors: "
                            f"{_ids(wf.actors)}")
        t = self.enabled_transition(state.config, trigger)
        if t is None:
            sources = _ids({c.source for c in candidates})
            refuse("source", f"{trigger!r} can't be taken while the case is in "
                             f"{_ids(state.config)}; it leaves {sources}")
            permitted = {a for c in candidates for a in c.actors}
        else:
            permitted = set(t.actors)
        if actor in wf.actors and actor not in permitted:
            refuse("actor", f"{actor!r} may not take {trigger!r}; only {_ids(permitted)} may"
                            + (" (a timed step, taken when its date comes)" if timed else ""))
        if state.last_on is not None and on < state.last_on:
            refuse("date order", f"the date {on.isoformat()} is before the case's last event "
                                 f"on {state.last_on.isoformat()}; dates may not go backwards")
        if t is not None and t.timer is not None and actor == CLOCK:
            due, why = self.timer_date(state, t)
            if due is None:
                refuse("timer", f"the clock can't take {trigger!r}: {why}")
            elif on < due:
                refuse("timer", f"{trigger!r} is not due before {due.isoformat()} "
                                f"({t.timer.describe()}); {on.isoformat()} is too early")
            elif on != due:
                refuse("timer", f"{trigger!r} fell due on {due.isoformat()}; the clock's step "
                                f"is dated with that date, not {on.isoformat()}")
        # a timer's date is never before the last event, so only a later date can pass one
        if _overdue and not reasons:
            late = self.overdue_reason(state, on, case_id=case_id)
            if late:
                refuse("timer overdue", late)
        if t is None:
            return refused()
        if t.join or t.quorum_lost:
            for reason in self.join_reasons(t, state.config):
                refuse("join", reason)
        for reason in self.data_reasons(state, t, data or {}):
            refuse("data", reason)
        vg = wf.votes.get(t.vote) if t.vote else None
        if vg is not None and actor in vg.voters:
            cast = state.ballots.get(vg.id, {}).get(actor)
            if actor in state.withdrawn.get(vg.id, frozenset()):
                refuse("vote: withdrawn", f"{actor!r} has withdrawn from the vote {vg.id!r}")
            elif cast is not None:
                refuse("vote: once", f"{actor!r} has already voted {cast!r} in the vote "
                                     f"{vg.id!r}; each voter votes once")
            elif t.ballot == "withdraw":
                # A withdrawal may not leave a vote that can no longer pass (nor an empty
                # one, which would pass with no one having said yes): vote no instead.
                # A "no" already cast counts against it: those voters can't say yes.
                gone = state.withdrawn.get(vg.id, frozenset()) | {actor}
                cast_no = {v for v, b in state.ballots.get(vg.id, {}).items() if b == "no"}
                remaining = sum(1 for v in vg.voters if v not in gone)
                needed = vg.required(remaining)
                can_say_yes = sum(1 for v in vg.voters if v not in gone and v not in cast_no)
                empty_ok = remaining == 0 and vg.id in self._all_withdrawn
                if not empty_ok and (remaining == 0 or needed > can_say_yes):
                    refuse("vote: withdrawal",
                           f"{actor!r} can't withdraw from the vote {vg.id!r}: it would leave "
                           f"{can_say_yes} voter(s) who can still vote yes where "
                           f"{max(needed, 1)} yes-vote(s) are needed; vote no instead")
        if t.not_by and check_persons:
            self._check_persons(t, state, by, refuse)
        if t.guards and run_guards:
            reasons += self._guard_reasons(t, state, trigger, actor, on, data, case_id,
                                           unchecked, rules)
        if reasons:
            return refused(t)
        target = self.step(state.config, trigger) if vg is None else \
            self.ballot_target(vg, t, state, actor)
        target = self.settle_votes(target, state.withdrawn)
        moves = target != state.config or vg is None
        if t.reminder:  # a reminder is recorded without a change of state
            target, moves = state.config, False
        return Decision(trigger, actor, on, (), transition=t, target=target, moves=moves)

    @staticmethod
    def _check_persons(t: TransitionDef, state: CaseState, by: str | None,
                       refuse: Callable[[str, str], None]) -> None:
        """Four eyes: ``by`` is not the person who took any step ``t.not_by`` names."""
        if by is None:
            refuse("not_by", f"{t.trigger!r} must be taken by another person than who took "
                             f"{_ids(t.not_by)}; say who takes it (by)")
            return
        for named in t.not_by:
            if named not in state.persons:
                continue  # not taken (yet) in this case: nothing to compare with
            earlier = state.persons[named]
            if earlier is None:
                refuse(f"not_by {named}",
                       f"{named!r} was taken without recording who took it, so it can't be "
                       f"shown that {by!r} is another person; {t.trigger!r} needs "
                       f"{named!r} taken again with its person (by)")
            elif _same_person(earlier, by):
                refuse(f"not_by {named}",
                       f"{by!r} took {named!r}, so another person must take {t.trigger!r} "
                       f"(four eyes: not_by = [{named!r}])")

    def _ballot_moves(self, vg: VoteGroup, t: TransitionDef, state: CaseState,
                      actor: str) -> bool:
        """Does this ballot decide the vote (so the region moves to the ballot's target)?"""
        ballots = dict(state.ballots.get(vg.id, {}))
        withdrawn = set(state.withdrawn.get(vg.id, frozenset()))
        if t.ballot == "withdraw":
            withdrawn.add(actor)
        else:
            ballots[actor] = t.ballot
        electorate = [v for v in vg.voters if v not in withdrawn]
        needed = vg.required(len(electorate))
        yes = sum(1 for v in electorate if ballots.get(v) == "yes")
        undecided = sum(1 for v in electorate if v not in ballots)
        if t.ballot == "no":
            return yes + undecided < needed
        return yes >= needed and needed <= len(electorate)

    # -- applying ----------------------------------------------------------------------

    def apply(self, state: CaseState, *, trigger: str, actor: str, on: dt.date, seq: int,
              target: frozenset[str], data: Mapping[str, Any],
              by: str | None = None, transition: TransitionDef | None = None) -> CaseState:
        """The state after a recorded event: the log is the truth, so ``target`` is taken as is.

        ``transition``: the step's transition as the decision on ``state`` found it, when
        known (else it is looked up)."""
        t = transition if transition is not None else \
            self.enabled_transition(state.config, trigger)
        # copied only when they change: a state's mappings are never changed in place, so an
        # unchanged one is shared with the state before
        ballots: Mapping[str, Mapping[str, str]] = state.ballots
        withdrawn: Mapping[str, frozenset[str]] = state.withdrawn
        if t is not None and t.vote:
            vg = self.workflow.votes[t.vote]
            if t.ballot == "withdraw":
                left_for_good = dict(withdrawn)
                left_for_good[vg.id] = left_for_good.get(vg.id, frozenset()) | {actor}
                withdrawn = left_for_good
            else:
                cast = dict(ballots)  # only the vote's own ballots are copied
                cast[vg.id] = {**ballots.get(vg.id, {}), actor: t.ballot}
                ballots = cast
        cleared, active, fresh, ends_undone = self._step_facts(t, state.config, target)
        for vote in cleared:  # the vote's state was left, or entered anew
            if vote in ballots:
                ballots = {k: dict(v) for k, v in ballots.items() if k != vote}
        taken, entered, joined = state.taken, state.entered, state.joined
        if self.timed:
            if trigger in self._watch_steps:
                taken = {**state.taken, trigger: (seq, on)}
            # a step to the same configuration enters its target anew too (an explicit
            # step re-enters its target, as the invariants count it; _step_facts leaves
            # out reminders and a ballot that does not decide its vote)
            if target != state.config or t is not None:
                gone = [s for s in state.entered if s not in active]
                if fresh or gone:
                    entered = {s: v for s, v in state.entered.items() if s in active}
                    for s in fresh:
                        entered[s] = (seq, on)
                if self._watch_joins:
                    joined = self._joined(state.joined, target, seq, on)

        withdrew_at = state.withdrew_at
        if (t is not None and t.vote and t.ballot == "withdraw") or ends_undone:
            withdrew_at = seq
        set_at = state.set_at
        if data:
            set_at = {**set_at, **{k: seq for k in data}}
        persons = state.persons
        if persons.get(trigger, ...) != by:  # copied only when it changes, as above
            persons = {**persons, trigger: by}
        # in CaseState's field order: every step makes one (records.maker)
        return _make_state(target, merge_data(state.data, data) if data else state.data, seq,
                           on, ballots, withdrawn, withdrew_at, set_at, taken, entered, joined,
                           persons)

    def _step_facts(self, t: TransitionDef | None, config: frozenset[str],
                    target: frozenset[str]
                    ) -> tuple[tuple[str, ...], frozenset[str], frozenset[str], bool]:
        """What a step by ``t`` from ``config`` to ``target`` does besides its ballot, as
        :meth:`apply` needs it: the votes whose ballots it clears (their state left, or
        entered anew by a step from within it that is no ballot), and for a workflow
        with timed steps the states active after it and the watched states it enters
        (those that become active, and the step's target with all within it, entered
        anew even if active); and whether it ends a region without it being done (a
        withdrawal).

        Memoised: a pure function of the three (``t`` is one of this engine's own
        transitions, which live as long as it, so its id names it)."""
        key = (id(t), config, target)
        found = self._facts_memo.get(key)
        if found is None:
            cleared: tuple[str, ...] = ()
            if target != config:
                cleared = tuple(
                    vg.id for vg in self.workflow.votes.values()
                    if (vg.state in config and vg.state not in target)
                    or (t is not None and t.source in self._lineage[vg.state]
                        and vg.state in target and not t.vote))
            # the states only a workflow with timed steps keeps (CaseState.entered); a
            # workflow without them asks nothing of the target's states here, so a log
            # that moves a case to a state its workflow lacks replays, for verify to name
            after: frozenset[str] = frozenset()
            fresh: frozenset[str] | set[str] = frozenset()
            if self.timed:
                watch = self._watch_states
                before, after = self.active(config), self.active(target)
                fresh = (after - before) & watch
                if t is not None and not t.reminder and t.target in after:
                    fresh |= {s for s in after & watch
                              if s == t.target or t.target in self._lineage[s]}
            found = (cleared, after, frozenset(fresh),
                     not self._not_done.isdisjoint(target - config))
            if len(self._facts_memo) > 4_096:
                self._facts_memo.clear()
            self._facts_memo[key] = found
        return found

    def allowed(self, state: CaseState, *, actor: str | None, on: dt.date,
                case_id: str = "") -> list[str]:
        """Triggers that ``actor`` (or anyone, when None) may fire now, sorted."""
        out = []
        for trigger in sorted(self._by_trigger):
            t = self.enabled_transition(state.config, trigger)
            if t is None:
                continue
            actors = [actor] if actor is not None else list(t.actors)
            if any(self.evaluate(state, trigger, actor=a, on=on, case_id=case_id,
                                 check_persons=False).ok
                   for a in actors):
                out.append(trigger)
        return out


_ENGINES: dict[tuple[str, int, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(workflow: Workflow) -> Engine:
    """The engine of ``workflow``, built once per (name, version, content) and reused."""
    key = (workflow.name, workflow.version, workflow.digest)
    engine = _ENGINES.get(key)
    if engine is None:
        with _ENGINES_LOCK:
            engine = _ENGINES.get(key)
            if engine is None:
                engine = Engine(workflow)
                _ENGINES[key] = engine
    return engine


def _same_person(a: str, b: str) -> bool:
    """Whether two persons (``by``) name the same person for four eyes: persons are stored
    as given, and compared in Unicode's composed form (NFC), without invisible formatting
    characters (zero-width, bidi controls) and without spaces around them, so that one
    person can't pass as another by a spelling that looks the same."""
    return a == b or _person_key(a) == _person_key(b)


#: Unicode's default-ignorable characters that are not format characters (category Cf,
#: left out by category): the combining grapheme joiner, Hangul fillers, Khmer and
#: Mongolian inherent vowels and selectors, variation selectors, and the tags block.
_IGNORABLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0,
     *range(0x180B, 0x1810), *range(0xFE00, 0xFE10), *range(0xFFF0, 0xFFF9)])


def _person_key(text: str) -> str:
    visible = "".join(c for c in text if unicodedata.category(c) != "Cf"
                      and ord(c) not in _IGNORABLE and not 0xE0000 <= ord(c) <= 0xE0FFF)
    return unicodedata.normalize("NFC", visible).strip()
