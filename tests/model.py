"""An independent model of what a workflow allows, kept by the tests, not by the engine.

The property tests check every step the engine accepts or refuses against this model,
and re-decide the whole stored log with it. It is written from the documented rules
(docs/concepts.md, docs/workflow-files.md, DOMAIN.md), not from the engine's code, and
it imports nothing of the engine, the guards, the store or replay: only the parsed
definition (states, transitions, vote groups) of ``approvalflow.definition``.

- configuration: the active leaves; a step exits every active state below the nearest
  state containing both its source and its target, enters its target (with its
  ancestors up to there), and completes the entry (every region of a parallel state,
  the initial child of a compound one);
- who: only the step's actors (for a ballot, the vote's voters);
- dates: never before the case's last event (creations, steps and expectations);
- joins: every region of the parallel source has all its active leaves final;
- votes: one ballot per voter per round (a round starts when the vote state is entered),
  withdrawn voters are out for good and can't vote again, a withdrawal is refused when
  the remaining voters could no longer pass the vote, yes/withdraw moves when the yes
  votes reach ``need``, no moves once yes + undecided can't reach it;
- data: a step carries only the keys its ``sets`` lists (and its own ``dates.<step>``);
  after a withdrawal (a withdraw ballot, or a region ending in a final state outside its
  ``done``) a step with ``restate_after_withdrawal`` needs those keys stated again, by
  itself or by a step after the withdrawal;
- regions and quorums: a region that ended outside its ``done`` states is not done; a
  join needs every region finished, every region outside the quorum done, and at least
  ``at_least`` of the quorum's regions done; a ``quorum_lost`` step needs the quorum out
  of reach;
- votes with ``withdrawn``: when every voter has withdrawn the region moves to that
  state, and a vote entered again whose voters have all left goes straight there;
- four eyes: a ``not_by`` step needs a person (``by``) other than whoever took each
  named step last;
- time: the reserved actor ``clock`` takes only timed steps, exactly on the day they
  fall due (``at``/``after``/``escalates`` counted from the case's own facts, never
  before its last event); while a timed step is overdue nothing dated after its day is
  recorded;
- guards: the bundled rules re-implemented here, and ``ret_ok`` (tests/strategies.py),
  which passes only when the value it returns is True or an empty list (or {}).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from approvalflow.definition import DateRef, TransitionDef, Workflow

#: The data key whose value the test guard ``ret_ok`` returns (True when absent).
RET_KEY = "ret"
#: The reserved actor that takes timed steps (docs/workflow-files.md, "Timed steps").
CLOCK = "clock"
#: The dates approvalflow accepts (docs: 1900-01-01 .. 2999-12-31).
FIRST_DAY, LAST_DAY = dt.date(1900, 1, 1), dt.date(2999, 12, 31)
#: The seed's earmark and what is used of it: the remainder workflow's cap when the case
#: data does not say (DOMAIN.md: 1.1 mio. kr. earmarked, 0.5 mio. kr. used).
SEED_EARMARKED, SEED_USED = 1_100_000, 500_000


@attrs.frozen
class Verdict:
    """The model's decision: refused with reason codes, or accepted with the target."""

    reasons: tuple[str, ...]
    transition: TransitionDef | None = None
    target: frozenset[str] = frozenset()
    entered: frozenset[str] = frozenset()  # the states the step (re-)enters

    @property
    def ok(self) -> bool:
        return not self.reasons


def merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, nested objects key by key (a fresh copy)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def key_paths(data: Mapping[str, Any]) -> list[str]:
    """The dotted paths of every value ``data`` gives (an empty object is a value)."""
    out = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out += [f"{key}.{p}" for p in key_paths(value)]
        else:
            out.append(key)
    return out


def covered(path: str, keys: tuple[str, ...]) -> bool:
    return any(path == k or path.startswith(f"{k}.") for k in keys)


def looked_up(data: Mapping[str, Any], key: str) -> Any:
    if key in data:
        return data[key]
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _date(value: object) -> dt.date | None:
    """A 'YYYY-MM-DD' string within the accepted dates, else None."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    return day if FIRST_DAY <= day <= LAST_DAY else None


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def financing_holds(budget: object) -> bool:
    """DOMAIN.md's co-financing rules, with the municipality's 12.5 % cap."""
    if not isinstance(budget, Mapping):
        return False
    parts = [budget.get(k) for k in ("total", "lbf", "municipality", "housing", "earmarked")]
    if not all(_whole(p) for p in parts):
        return False
    total, lbf, municipality, housing, earmarked = parts
    local = municipality + housing
    return (lbf + local == total and 4 * lbf <= 3 * total and 4 * local >= total
            and 8 * municipality <= total
            and municipality <= housing and municipality <= earmarked)


def proposal_holds(data: Mapping[str, Any]) -> bool:
    """A positive whole amount, at most what is left of the earmark."""
    amount = data.get("amount")
    if not (_whole(amount) and amount > 0):
        return False
    earmarked, used = data.get("earmarked", SEED_EARMARKED), data.get("used", SEED_USED)
    return _whole(earmarked) and _whole(used) and amount + used <= earmarked


def guard_holds(name: str, data: Mapping[str, Any], on: dt.date) -> bool:
    if name == "proposal_ok":
        return proposal_holds(data)
    if name == "financing_ok":
        return financing_holds(data.get("budget"))
    if name == "planned_start_reached":
        start = _date(data.get("planned_start"))
        return start is not None and on >= start
    if name == "expiry_passed":
        expires = _date(data.get("expires"))
        return expires is not None and on > expires
    if name == "expiry_reached":
        expires = _date(data.get("expires"))
        return expires is not None and on >= expires
    if name == "ret_ok":
        value = data.get(RET_KEY, True)  # True, or an empty collection of reasons, passes
        return value is True or (isinstance(value, list | dict) and not value)
    raise AssertionError(f"the model knows no guard {name!r}")


class Model:
    """One case as the tests believe it is."""

    def __init__(self, wf: Workflow, data: Mapping[str, Any], on: dt.date,
                 by: str | None = None) -> None:
        self.wf = wf
        self.defs = wf.state_defs
        self.config = self._enter(None, wf.initial)
        self.data = merged({}, data)
        self.last_on = on
        self.version = 1
        self.ballots: dict[str, dict[str, str]] = {v: {} for v in wf.votes}
        self.withdrawn: dict[str, set[str]] = {v: set() for v in wf.votes}
        self.withdrew_at = 0  # the event of the latest withdrawal
        self.set_at = {k: 1 for k in data}  # top-level data key -> the event that set it
        self.persons: dict[str, str | None] = {"create": by}  # step -> who took it last
        # the facts timers count from: (event, date) of each step's latest event, of each
        # active state's latest entry, of the day every region of a parallel state ended
        self.taken: dict[str, tuple[int, dt.date]] = {}
        self.entered = {s: (1, on) for s in self.active()}
        self.joined: dict[str, tuple[int, dt.date]] = {}
        self._note_joins()
        self.timed = [t for t in wf.transitions if t.timer is not None]

    def copy(self) -> Model:
        other = copy.copy(self)
        other.data = copy.deepcopy(self.data)
        other.ballots = {k: dict(v) for k, v in self.ballots.items()}
        other.withdrawn = {k: set(v) for k, v in self.withdrawn.items()}
        for name in ("set_at", "persons", "taken", "entered", "joined"):
            setattr(other, name, dict(getattr(self, name)))
        return other

    def snapshot(self) -> tuple[Any, ...]:
        return (self.config, json.dumps(self.data, sort_keys=True), self.last_on, self.version,
                {k: v for k, v in self.ballots.items() if v},
                {k: frozenset(v) for k, v in self.withdrawn.items() if v},
                self.withdrew_at, self.set_at, self.persons, self.taken, self.entered,
                self.joined)

    def key(self) -> tuple[Any, ...]:
        """What decides the next steps when data and dates stay as they are (hashable)."""
        return (self.config,
                frozenset((k, frozenset(v.items())) for k, v in self.ballots.items() if v),
                frozenset((k, frozenset(v)) for k, v in self.withdrawn.items() if v),
                self.to_restate(),
                frozenset(t.trigger for t in self.timed if self.timer_day(t) is not None))

    # -- the state tree ---------------------------------------------------------------

    def ancestors(self, sid: str) -> list[str]:
        out = []
        parent = self.defs[sid].parent
        while parent is not None:
            out.append(parent)
            parent = self.defs[parent].parent
        return out

    def active(self, config: frozenset[str] | None = None) -> set[str]:
        out: set[str] = set()
        for leaf in self.config if config is None else config:
            out |= {leaf, *self.ancestors(leaf)}
        return out

    @property
    def is_final(self) -> bool:
        [*leaves] = self.config
        return len(leaves) == 1 and self.defs[leaves[0]].final and \
            self.defs[leaves[0]].parent is None

    def _enter(self, domain: str | None, target: str) -> frozenset[str]:
        """The leaves that become active when ``target`` is entered from inside ``domain``."""
        entered = {target}
        for a in self.ancestors(target):
            if a == domain:
                break
            entered.add(a)
        grew = True
        while grew:
            grew = False
            for sid in list(entered):
                d = self.defs[sid]
                if d.kind == "parallel":
                    new = set(d.children) - entered
                elif d.kind == "compound" and not set(d.children) & entered:
                    new = {d.initial} if d.initial else set()
                else:
                    new = set()
                if new:
                    entered |= new
                    grew = True
        return frozenset(s for s in entered if self.defs[s].kind == "atomic")

    def _move(self, config: frozenset[str], source: str,
              target: str) -> tuple[frozenset[str], set[str]]:
        """The configuration after a move from ``source`` to ``target``, and the states
        it (re-)entered."""
        target_up = set(self.ancestors(target))
        domain = next((a for a in self.ancestors(source) if a in target_up), None)
        # active leaves outside the domain stay as they are; those inside are exited
        outside = frozenset(leaf for leaf in config
                            if domain is not None and domain not in self.ancestors(leaf))
        leaves = self._enter(domain, target)
        entered = set(leaves)
        for leaf in leaves:
            for a in self.ancestors(leaf):
                if a == domain:
                    break
                entered.add(a)
        return outside | leaves, entered

    def _moved(self, t: TransitionDef) -> tuple[frozenset[str], set[str]]:
        return self._move(self.config, t.source, t.target)

    # -- deciding -----------------------------------------------------------------------

    def enabled(self, trigger: str) -> TransitionDef | None:
        active = self.active()
        found = [t for t in self.wf.transitions if t.trigger == trigger and t.source in active]
        assert len(found) <= 1, f"{trigger!r} is enabled twice: {found}"
        return found[0] if found else None

    def region_done(self, region: str) -> bool:
        """Every active leaf of ``region`` is final (it has ended, done or not)."""
        leaves = [leaf for leaf in self.config if region in self.ancestors(leaf)]
        return bool(leaves) and all(self.defs[leaf].final for leaf in leaves)

    def _region_of(self, leaf: str) -> str | None:
        for sid in [leaf, *self.ancestors(leaf)]:
            parent = self.defs[sid].parent
            if parent is not None and self.defs[parent].kind == "parallel":
                return sid
        return None

    def not_done(self, leaf: str) -> bool:
        """A final leaf that ends its region without it being done (outside its ``done``)."""
        region = self._region_of(leaf)
        done = self.defs[region].done if region is not None else ()
        return self.defs[leaf].final and bool(done) and leaf not in done

    def outcome(self, region: str) -> str:
        if not self.region_done(region):
            return "open"
        leaves = [leaf for leaf in self.config if region in self.ancestors(leaf)]
        return "not done" if any(self.not_done(leaf) for leaf in leaves) else "done"

    def join_refusals(self, t: TransitionDef) -> list[str]:
        source = self.defs[t.source]
        quorum = source.quorum
        if t.join:
            if not all(self.region_done(r) for r in source.children):
                return ["join with a region pending"]
            out = ["join with a region not done" for r in source.children
                   if (quorum is None or r not in quorum.regions)
                   and self.outcome(r) == "not done"]
            if quorum is not None and \
                    sum(self.outcome(r) == "done" for r in quorum.regions) < quorum.at_least:
                out.append("join short of its quorum")
            return out
        if t.quorum_lost and quorum is not None and \
                sum(self.outcome(r) != "not done" for r in quorum.regions) >= quorum.at_least:
            return ["quorum still reachable"]
        return []

    def to_restate(self) -> frozenset[str]:
        """Top-level data keys set no later than the latest withdrawal (empty: none)."""
        if not self.withdrew_at:
            return frozenset()
        return frozenset(k for k in self.data if self.set_at.get(k, 0) <= self.withdrew_at)

    def data_refusals(self, t: TransitionDef, data: Mapping[str, Any]) -> list[str]:
        out = []
        if t.sets is not None:
            own = (f"dates.{t.trigger}",)
            if any(not covered(p, t.sets) and not covered(p, own) for p in key_paths(data)):
                out.append("data not in sets")
        if self.withdrew_at and any(
                k.split(".")[0] not in data
                and self.set_at.get(k.split(".")[0], 0) <= self.withdrew_at
                for k in t.restate_after_withdrawal):
            out.append("not restated after a withdrawal")
        return out

    def vote_refusals(self, t: TransitionDef, actor: str) -> tuple[list[str], bool]:
        """Why a ballot is refused, and whether it decides the vote."""
        vg = self.wf.votes[t.vote or ""]
        ballots, gone = self.ballots[vg.id], self.withdrawn[vg.id]
        if actor in gone:
            return ["withdrawn voter"], False
        if actor in ballots:
            return ["second ballot"], False
        after = dict(ballots)
        out = set(gone)
        if t.ballot == "withdraw":
            out.add(actor)
        else:
            after[actor] = t.ballot
        electorate = [v for v in vg.voters if v not in out]
        need = len(electorate) if vg.need is None else vg.need
        yes = sum(1 for v in electorate if after.get(v) == "yes")
        undecided = sum(1 for v in electorate if v not in after)
        if t.ballot == "withdraw":
            # a withdrawal that empties the vote ends it in its 'withdrawn' state if it has
            # one; otherwise the others (not those who said no) must still be able to pass it
            if not electorate:
                return ([] if vg.withdrawn else ["withdrawal leaves a vote that can't pass"]), \
                    False
            if yes + undecided < need:
                return ["withdrawal leaves a vote that can't pass"], False
        if t.ballot == "no":
            return [], yes + undecided < need
        return [], need <= len(electorate) and yes >= need

    def deadline_ref(self, name: str) -> DateRef | None:
        for t in self.wf.transitions:
            if t.trigger == name and t.deadline is not None:
                return t.deadline
        state = self.defs.get(name)
        return state.deadline if state is not None else None

    def date_of(self, ref: DateRef, depth: int = 0) -> dt.date | None:
        """The day ``ref`` names from what the case has established so far, or None."""
        base: dt.date | None = None
        if ref.kind == "date":
            base = ref.date
        elif ref.kind == "data":
            base = _date(looked_up(self.data, ref.key or ""))
        elif ref.kind == "after":
            base = self.taken[ref.step][1] if ref.step in self.taken else None
        elif ref.kind == "state":
            base = self.entered[ref.state][1] if ref.state in self.entered else None
        elif ref.kind == "join":
            base = self.joined[ref.state][1] if ref.state in self.joined else None
        elif ref.kind == "missed":
            inner = self.deadline_ref(ref.step or "")
            if inner is not None and inner.kind != "missed" and depth <= 4:
                base = self.date_of(inner, depth + 1)
        if base is None:
            return None
        try:
            return base + dt.timedelta(days=ref.days)
        except OverflowError:
            return None

    def timer_day(self, t: TransitionDef) -> dt.date | None:
        """The day the clock takes the timed step ``t``, or None while it is not armed: it
        is armed while its source is active and it has not been taken since the case
        last entered its source (and, for a join, once every region has ended)."""
        if t.timer is None or self.is_final or t.source not in self.active():
            return None
        since = self.entered.get(t.source)
        last = self.taken.get(t.trigger)
        if since is None or (last is not None and last[0] > since[0]):
            return None
        if t.join and not all(self.region_done(r) for r in self.defs[t.source].children):
            return None
        day = self.date_of(t.timer)
        return None if day is None else max(day, self.last_on)

    def due(self, before: dt.date) -> list[tuple[dt.date, str]]:
        """The timed steps the clock would take on a day before ``before``, by day."""
        out = []
        for t in self.timed:
            day = self.timer_day(t)
            if day is not None and day < before and \
                    self.decide(t.trigger, CLOCK, day, overdue=False).ok:
                out.append((day, t.trigger))
        return sorted(out, key=lambda item: item[0])

    def decide(self, trigger: str, actor: str, on: dt.date,
               data: Mapping[str, Any] | None = None, by: str | None = None,
               overdue: bool = True, persons: bool = True) -> Verdict:
        if self.is_final:
            return Verdict(("final",))
        if trigger not in self.wf.triggers:
            return Verdict(("unknown step",))
        reasons = []
        timed = any(t.timer is not None for t in self.wf.transitions if t.trigger == trigger)
        if actor == CLOCK and not timed:
            reasons.append("the clock takes only timed steps")
        elif actor not in self.wf.actors and actor != CLOCK:
            reasons.append("not an actor")
        t = self.enabled(trigger)
        if t is None:
            return Verdict((*reasons, "not enabled"))
        if actor in self.wf.actors and actor not in t.actors:
            reasons.append("actor not allowed")
        if on < self.last_on:
            reasons.append("date backwards")
        if t.timer is not None and actor == CLOCK:
            day = self.timer_day(t)
            if day is None:
                reasons.append("timer not armed")
            elif on != day:
                reasons.append("not the timer's day")
        if overdue and not reasons and on > self.last_on and self.due(on):
            reasons.append("timer overdue")
        reasons += self.join_refusals(t)
        reasons += self.data_refusals(t, data or {})
        moves = True
        if t.vote is not None and actor in self.wf.votes[t.vote].voters:
            refusals, moves = self.vote_refusals(t, actor)
            reasons += refusals
        if t.not_by and persons:
            if by is None:
                reasons.append("four eyes: no person")
            for named in t.not_by:
                if by is not None and named in self.persons and \
                        self.persons[named] in (None, by):
                    reasons.append(f"four eyes: {named}")
        if t.guards:
            seen = merged(self.data, data or {})
            for g in t.guards:
                if not guard_holds(g, seen, on):
                    reasons.append(f"guard {g}")
        if reasons:
            return Verdict(tuple(reasons), t)
        if t.reminder:
            return Verdict((), t, self.config)
        config, entered = self.config, set()
        vg = self.wf.votes[t.vote] if t.vote is not None else None
        if vg is not None and t.ballot == "withdraw" and vg.withdrawn and \
                set(vg.voters) <= self.withdrawn[vg.id] | {actor}:
            config, entered = self._move(config, vg.state, vg.withdrawn)
        elif moves:
            config, entered = self._move(config, t.source, t.target)
        # a vote entered again whose voters have all left ends as it ended before
        for other in self.wf.votes.values():
            gone = self.withdrawn[other.id]
            if other.withdrawn and gone and other.state in config and \
                    set(other.voters) <= gone:
                config, more = self._move(config, other.state, other.withdrawn)
                entered |= more
        return Verdict((), t, config, frozenset(entered))

    def allowed(self, on: dt.date) -> list[tuple[str, str]]:
        """Every (trigger, actor) the model accepts on ``on`` with no step data."""
        out = []
        for trigger in sorted(self.wf.triggers):
            t = self.enabled(trigger)
            if t is None:
                continue
            for actor in t.actors:
                if self.decide(trigger, actor, on, persons=False).ok:
                    out.append((trigger, actor))
        return out

    def carried(self, trigger: str) -> dict[str, Any] | None:
        """The data a step must carry to be taken now: the keys it must state again after
        a withdrawal, with their current values, as far as its ``sets`` lets it (None:
        nothing)."""
        t = self.enabled(trigger)
        if t is None or not self.withdrew_at or not t.restate_after_withdrawal:
            return None
        out: dict[str, Any] = {}
        for path in key_paths(self.data):
            if path.split(".")[0] in {k.split(".")[0] for k in t.restate_after_withdrawal} \
                    and (t.sets is None or covered(path, t.sets)):
                node = out
                *parents, last = path.split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                node[last] = copy.deepcopy(looked_up(self.data, path))
        return out or None

    def options(self, on: dt.date) -> list[tuple[str, str, dt.date, dict[str, Any] | None]]:
        """What can be taken next: the clock's due steps on their days (only those, while
        one is due before ``on``), else every (trigger, actor) accepted on ``on`` with the
        data it must carry."""
        due = self.due(on)
        if due:
            return [(trigger, CLOCK, day, None) for day, trigger in due
                    if day == due[0][0]]
        out = []
        for trigger in sorted(self.wf.triggers):
            t = self.enabled(trigger)
            if t is None:
                continue
            data = self.carried(trigger)
            for actor in t.actors:
                if self.decide(trigger, actor, on, data, persons=False).ok:
                    out.append((trigger, actor, on, data))
        return out

    # -- applying -----------------------------------------------------------------------

    def apply(self, verdict: Verdict, actor: str, on: dt.date,
              data: Mapping[str, Any] | None, by: str | None = None) -> None:
        t = verdict.transition
        assert verdict.ok and t is not None
        self.version += 1
        if t.vote is not None:
            if t.ballot == "withdraw":
                self.withdrawn[t.vote].add(actor)
                self.withdrew_at = self.version
            else:
                self.ballots[t.vote][actor] = t.ballot
        if verdict.target != self.config:
            for vg in self.wf.votes.values():
                if vg.state in verdict.entered or vg.state not in verdict.target:
                    self.ballots[vg.id] = {}  # a new round when it is entered again
            if any(self.not_done(leaf) for leaf in verdict.target - self.config):
                self.withdrew_at = self.version
            active = self.active(verdict.target)
            self.entered = {s: v for s, v in self.entered.items() if s in active}
            for s in verdict.entered:
                self.entered[s] = (self.version, on)
        self.taken[t.trigger] = (self.version, on)
        self.config = verdict.target
        self._note_joins()
        self.data = merged(self.data, data or {})
        for k in data or {}:
            self.set_at[k] = self.version
        self.persons[t.trigger] = by
        self.last_on = on

    def _note_joins(self) -> None:
        """Keep, for each active parallel state whose regions have all ended, the day that
        first held; forget the others."""
        active = self.active()
        self.joined = {p: self.joined.get(p, (self.version, self.last_on))
                       for p in active if self.defs[p].kind == "parallel"
                       and all(self.region_done(r) for r in self.defs[p].children)}

    def expect_refusals(self, step: str, actor: str, said: dt.date,
                        voter: str | None = None) -> list[str]:
        reasons = []
        if step not in self.wf.triggers:
            reasons.append("unknown step")
        if actor not in self.wf.actors:
            reasons.append("not an actor")
        if voter is not None:
            groups = [self.wf.votes[t.vote] for t in self.wf.transitions
                      if t.trigger == step and t.vote]
            if not groups or not any(voter in g.voters for g in groups):
                reasons.append("not a voter")
        if self.is_final:
            reasons.append("final")
        if said < self.last_on:
            reasons.append("date backwards")
        if self.due(said):
            reasons.append("timer overdue")
        return reasons

    def expected(self, said: dt.date) -> None:
        self.last_on = said
        self.version += 1


def redecide_log(path: str | Path, case_id: str, wf: Workflow) -> tuple[Model, list[str]]:
    """Read ``case_id``'s events straight from the file and re-decide each with a fresh
    model: every problem found (a step the model refuses, a wrong source or target, a
    gap in the sequence) and the model at the end."""
    from tests import rawdb  # the store's database on either backend, read underneath it

    with rawdb.raw(str(path)) as conn:
        rows = [tuple(r) for r in conn.execute(
            "SELECT seq, kind, trigger, actor, on_date, source, target, data, by FROM events "
            "WHERE case_id = ? ORDER BY seq", (case_id,)).fetchall()]
    problems: list[str] = []
    seq, kind, _, _, on_date, _, target, data, by = rows[0]
    model = Model(wf, json.loads(data), dt.date.fromisoformat(on_date), by)
    if (seq, kind) != (1, "create") or frozenset(json.loads(target)) != model.config:
        problems.append(f"event 1 is {kind!r} into {target}, not the creation in "
                        f"{sorted(model.config)}")
    if wf.creation_sets is not None and any(not covered(p, wf.creation_sets)
                                            for p in key_paths(json.loads(data))):
        problems.append(f"event 1 starts with data outside creation_sets: {data}")
    for seq, kind, trigger, actor, on_date, source, target, data, by in rows[1:]:
        on = dt.date.fromisoformat(on_date)
        where = f"event {seq} ({kind} {trigger!r} by {actor!r} on {on_date})"
        if seq != model.version + 1:
            problems.append(f"{where}: expected event {model.version + 1}")
        if frozenset(json.loads(source)) != model.config:
            problems.append(f"{where}: leaves {source}, the case was in {sorted(model.config)}")
        if kind == "expect":
            body = json.loads(data)["expect"]
            refusals = model.expect_refusals(body["step"], actor, on, body.get("voter"))
            if refusals:
                problems.append(f"{where}: an expectation the model refuses: {refusals}")
            model.expected(on)
            continue
        step_data = json.loads(data)
        verdict = model.decide(trigger, actor, on, step_data, by)
        if not verdict.ok:
            problems.append(f"{where}: a step the model refuses: {list(verdict.reasons)}")
            return model, problems
        if frozenset(json.loads(target)) != verdict.target:
            problems.append(f"{where}: moves to {target}, the model to "
                            f"{sorted(verdict.target)}")
        model.apply(verdict, actor, on, step_data, by)
    return model, problems
