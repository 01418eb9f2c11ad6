"""Workflow files: the model a TOML workflow file describes (loading is in loading.py).

A workflow that loads is a workflow that is sound: every reference resolves, every
state can be reached from the initial state, every non-final state has a way out,
no final state has one, and every step can be taken by some actor. Anything else
raises :class:`~approvalflow.errors.DefinitionError` naming the file and the
offending ids, with one line per problem in ``.problems``.

The format is described in full in ``docs/workflow-files.md``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import DefinitionError

__all__ = [
    "Workflow",
    "StateDef",
    "TransitionDef",
    "VoteGroup",
    "DateRef",
    "Quorum",
    "Invariant",
    "RESERVED_TRIGGERS",
    "CLOCK",
]

# \Z, not $: "$" also matches before a final newline, which would let "done\n" pass.
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
TRIGGER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}(\.[a-z0-9][a-z0-9_-]{0,62}){0,3}\Z")
#: Trigger names the event log uses for its own events; a workflow may not define them.
RESERVED_TRIGGERS = frozenset({"create", "expect"})
#: The reserved actor that takes timed steps (``at``, ``after``, ``escalates``); a
#: workflow may not define it, and it takes nothing else.
CLOCK = "clock"
BALLOTS = ("yes", "no", "withdraw")

DATE_REF = (str, dict, dt.date)
WORKFLOW_KEYS = {"name": str, "version": int, "title": str, "label": str,
                  "description": str, "initial": str, "goal": str, "target": DATE_REF,
                  "creation_sets": list}
WORKFLOW_REQUIRED = ("name", "version", "initial")
STATE_KEYS = {"label": str, "parent": str, "initial": str, "parallel": bool, "final": bool,
               "description": str, "deadline": DATE_REF, "done": list, "covers": list,
               "quorum": dict}
VOTE_KEYS = {"label": str, "state": str, "voters": list,
             # "all" or a whole number, checked where votes are read (a clearer message)
             "need": (object, bool),
              "description": str, "withdrawn": str}
TRANSITION_KEYS = {"trigger": str, "source": str, "target": str, "actors": list,
                    "guards": list, "label": str, "vote": str, "ballot": str, "join": bool,
                    "description": str, "deadline": DATE_REF, "earliest": DATE_REF,
                    "duration_days": int, "sets": list, "restate_after_withdrawal": list,
                    "quorum_lost": bool, "not_by": list, "awaited": bool, "at": DATE_REF,
                    "after": dict, "escalates": str}
#: The keys that make a transition timed (taken by the clock when its date comes).
TIMER_KEYS = ("at", "after", "escalates")
#: What ``after = { ... }`` (a timer, or a date reference's ``after``) may count from.
AFTER_BASES = ("step", "state", "join")
DATE_REF_KEYS = ("date", "data", "after", "days")
MAX_DAYS = 36_500
INVARIANT_KEYS = {"id": str, "label": str, "description": str, "when_entering": str,
                  "since": str, "requires_entered": list, "requires_any_entered": list,
                  "requires_active": list}
TOP_KEYS = ("workflow", "actors", "states", "votes", "transitions", "invariants")


@attrs.frozen
class DateRef:
    """A date a workflow file names: a fixed date, a date in the case data, or a step's date.

    ``kind`` is ``"date"`` (``date`` is set), ``"data"`` (``key`` names a case-data
    field holding ``YYYY-MM-DD``; a dotted key reaches into nested objects),
    ``"after"`` (``step`` is the trigger whose last recorded event counts),
    ``"state"`` (``state`` is the state whose latest entry counts), ``"join"``
    (``state`` is the parallel state whose regions were all done on the day that
    counts) or ``"missed"`` (``step`` names a step or a state with a deadline; the day
    after that deadline counts). ``days`` is added to the date found (negative:
    before it).
    """

    kind: str
    date: dt.date | None = None
    key: str | None = None
    step: str | None = None
    days: int = 0
    state: str | None = None

    def describe(self) -> str:
        """The reference in words, e.g. ``'data:expires'`` or ``'30 days after tmu.approve'``."""
        if self.kind == "after":
            return f"{self.days} days after {self.step}"
        if self.kind == "state":
            return f"{self.days} days after entering {self.state}"
        if self.kind == "join":
            return f"{self.days} days after every region of {self.state} was done"
        if self.kind == "missed":
            return f"the day after the deadline of {self.step} is missed"
        base = self.date.isoformat() if self.kind == "date" and self.date else f"data:{self.key}"
        if self.days:
            return f"{base} {'+' if self.days > 0 else '-'} {abs(self.days)} days"
        return base

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "days": self.days}
        if self.kind == "date" and self.date is not None:
            out["date"] = self.date.isoformat()
        elif self.kind == "data":
            out["data"] = self.key
        elif self.kind in ("state", "join"):
            out[self.kind] = self.state
        elif self.kind == "missed":
            out["escalates"] = self.step
        else:
            out["after"] = self.step
        return out


@attrs.frozen
class Quorum:
    """A parallel state's quorum: at least ``at_least`` of ``regions`` must end done."""

    regions: tuple[str, ...]
    at_least: int


@attrs.frozen
class StateDef:
    """One state: atomic (a leaf), compound (exactly one child active) or parallel (all)."""

    id: str
    label: str
    parent: str | None
    kind: str  # "atomic", "compound" or "parallel"
    initial: str | None
    final: bool
    children: tuple[str, ...]
    description: str = ""
    # a region (child of a parallel state): the final states in which it counts as done;
    # empty: every final state does. Another final state ends it without it taking part.
    done: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()  # a region: the parties it covers while taking part
    quorum: Quorum | None = None  # a parallel state: regions of which enough must be done
    deadline: DateRef | None = None  # the case should leave the state by this date

    @property
    def is_leaf(self) -> bool:
        return self.kind == "atomic"


@attrs.frozen
class VoteGroup:
    """Voters who each cast one ballot while a region is in ``state``; ``need`` yes-votes pass."""

    id: str
    label: str
    state: str
    voters: tuple[str, ...]
    need: int | None  # None: all voters still taking part
    description: str = ""
    withdrawn: str | None = None  # the state the region moves to when every voter withdrew

    def required(self, electorate: int) -> int:
        """Yes-votes needed when ``electorate`` voters still take part."""
        return electorate if self.need is None else self.need


@attrs.frozen
class TransitionDef:
    """A step: ``trigger`` moves ``source`` to ``target`` when an allowed actor fires it."""

    trigger: str
    source: str
    target: str
    actors: tuple[str, ...]
    guards: tuple[str, ...]
    label: str = ""
    vote: str | None = None
    ballot: str = "yes"
    join: bool = False
    description: str = ""
    deadline: DateRef | None = None  # the step should be taken on or before this date
    earliest: DateRef | None = None  # the step can't be taken before this date
    duration_days: int | None = None  # typical time from when it can be taken to when it is
    sets: tuple[str, ...] | None = None  # data keys the step may carry (None: any)
    restate_after_withdrawal: tuple[str, ...] = ()  # keys to state again after a withdrawal
    quorum_lost: bool = False  # leaves a parallel state once its quorum can't be met
    #: triggers whose latest taker (``by``) may not take this step too (four eyes)
    not_by: tuple[str, ...] = ()
    #: False: a step anyone may take at any time; its actors are not listed as awaited
    awaited: bool = True
    #: when the clock takes the step (``at``, ``after`` or ``escalates``); None: a person does
    timer: DateRef | None = None
    #: a timed step with no target: a reminder, recorded without a change of state
    reminder: bool = False

    @property
    def timed(self) -> bool:
        """True when the clock takes this step by itself when its date comes."""
        return self.timer is not None


@attrs.frozen
class Invariant:
    """What must hold whenever ``when_entering`` is entered (``[[invariants]]`` in a file).

    ``requires_active``: states active right after that step. ``requires_entered`` (all
    of them) and ``requires_any_entered`` (at least one): states entered at or before that
    step, counted since the case last entered ``since`` (from its creation when unset),
    so a loop back through ``since`` starts the count again.
    """

    id: str
    when_entering: str
    label: str = ""
    description: str = ""
    since: str | None = None
    requires_entered: tuple[str, ...] = ()
    requires_any_entered: tuple[str, ...] = ()
    requires_active: tuple[str, ...] = ()

    @property
    def tracked(self) -> frozenset[str]:
        """The states whose entries this invariant remembers."""
        return frozenset(self.requires_entered) | frozenset(self.requires_any_entered)

    def describe(self) -> str:
        """The invariant in words, e.g. ``entering 'b' requires 'a' entered since 'x'``."""
        parts = []
        if self.requires_entered:
            parts.append(f"{', '.join(map(repr, self.requires_entered))} entered")
        if self.requires_any_entered:
            parts.append(f"one of {', '.join(map(repr, self.requires_any_entered))} entered")
        if self.requires_active:
            parts.append(f"{', '.join(map(repr, self.requires_active))} active")
        since = f" (since {self.since!r} was last entered)" if self.since else ""
        return f"entering {self.when_entering!r} requires {' and '.join(parts)}{since}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "when_entering": self.when_entering,
                "since": self.since, "requires_entered": list(self.requires_entered),
                "requires_any_entered": list(self.requires_any_entered),
                "requires_active": list(self.requires_active)}


@attrs.frozen(eq=False)
class Workflow:
    """A loaded, validated workflow definition. Immutable; share it freely."""

    name: str
    version: int
    title: str
    label: str
    description: str
    initial: str
    actors: Mapping[str, str]
    state_defs: Mapping[str, StateDef]
    transitions: tuple[TransitionDef, ...]
    votes: Mapping[str, VoteGroup]
    source_text: str = attrs.field(repr=False)
    path: str | None = None
    digest: str = attrs.field(default="", repr=False)
    goal: str | None = None  # the state a case aims for (the forecast's goal)
    target: DateRef | None = None  # the date the goal should be reached by
    creation_sets: tuple[str, ...] | None = None  # data keys a case may start with (None: any)
    invariants: tuple[Invariant, ...] = ()  # what must hold whenever a state is entered

    @property
    def states(self) -> frozenset[str]:
        """Every state id, leaves and composites."""
        return frozenset(self.state_defs)

    @property
    def leaves(self) -> frozenset[str]:
        return frozenset(s for s, d in self.state_defs.items() if d.is_leaf)

    @property
    def triggers(self) -> frozenset[str]:
        return frozenset(t.trigger for t in self.transitions)

    @property
    def timed_transitions(self) -> tuple[TransitionDef, ...]:
        """The steps the clock takes (``at``, ``after`` or ``escalates``), in file order."""
        return tuple(t for t in self.transitions if t.timer is not None)

    def state(self, state_id: str) -> StateDef:
        """The definition of ``state_id``."""
        try:
            return self.state_defs[state_id]
        except (KeyError, TypeError):
            raise DefinitionError(
                f"Workflow {self.name!r} has no state {state_id!r}; "
                f"states: {', '.join(sorted(self.state_defs))}."
            ) from None

    def label_of(self, state_id: str) -> str:
        """The Danish label of a state (its id when it has none)."""
        d = self.state_defs.get(state_id) if isinstance(state_id, str) else None
        return d.label if d and d.label else state_id

    def ancestors(self, state_id: str) -> list[str]:
        """The state's parents from the nearest up to the top level."""
        out = []
        parent = self.state_defs[state_id].parent
        while parent is not None:
            out.append(parent)
            parent = self.state_defs[parent].parent
        return out

    def transitions_for(self, trigger: str) -> tuple[TransitionDef, ...]:
        return tuple(t for t in self.transitions if t.trigger == trigger)

    def regions(self, parallel_state: str) -> tuple[str, ...]:
        """The regions (child states) of ``parallel_state``."""
        return self.state(parallel_state).children

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} v{self.version}: {len(self.state_defs)} states, " \
               f"{len(self.transitions)} transitions>"

    def diagram(self, case: Any = None, format: str = "mermaid") -> str:
        """The workflow drawn as "mermaid" (default) or "dot" text, or as "svg".

        Pass a :class:`~approvalflow.Case` to highlight its active states. "svg" needs
        the ``diagrams`` extra and the Graphviz program ``dot``.
        """
        text: str = _views().render(self, case, format=format)
        return text

    def explore(self, *, limit: int = 200_000) -> Any:
        """Walk every reachable configuration (at most ``limit``) and report what was found:
        dead transitions, configurations with no way to a final state, invariants proven
        or broken, each with its shortest counterexample. See docs/concepts.md."""
        return _explore().explore(self, limit=limit)

    def _repr_html_(self) -> str:
        html: str = _views().workflow_html(self)
        return html


# --------------------------------------------------------------------------- the seams up


def _views() -> Any:
    """The display layer, which sits above the model: the one way Workflow's display
    methods reach it, imported when first shown (see tests/test_architecture.py)."""
    from . import views

    return views


def _explore() -> Any:
    """The exploration, which sits above the engine: the one way Workflow.explore
    reaches it, imported when asked (see tests/test_architecture.py)."""
    from . import explore

    return explore
