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
- guards: the bundled rules re-implemented here, and ``ret_ok`` (tests/strategies.py),
  which passes only when the value it returns is True or an empty list (or {}).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from approvalflow.definition import TransitionDef, Workflow

#: The data key whose value the test guard ``ret_ok`` returns (True when absent).
RET_KEY = "ret"


@attrs.frozen
class Verdict:
    """The model's decision: refused with reason codes, or accepted with the target."""

    reasons: tuple[str, ...]
    transition: TransitionDef | None = None
    target: frozenset[str] = frozenset()

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


def _date(value: object) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def financing_holds(budget: object) -> bool:
    """DOMAIN.md's co-financing rules."""
    if not isinstance(budget, Mapping):
        return False
    parts = [budget.get(k) for k in ("total", "lbf", "municipality", "housing", "earmarked")]
    if not all(_whole(p) for p in parts):
        return False
    total, lbf, municipality, housing, earmarked = parts
    local = municipality + housing
    return (lbf + local == total and 4 * lbf <= 3 * total and 4 * local >= total
            and municipality <= housing and municipality <= earmarked)


def guard_holds(name: str, data: Mapping[str, Any], on: dt.date) -> bool:
    if name == "proposal_ok":
        amount = data.get("amount")
        return isinstance(amount, int) and not isinstance(amount, bool) and amount > 0
    if name == "financing_ok":
        return financing_holds(data.get("budget"))
    if name == "planned_start_reached":
        start = _date(data.get("planned_start"))
        return start is not None and on >= start
    if name == "expiry_passed":
        expires = _date(data.get("expires"))
        return expires is not None and on > expires
    if name == "ret_ok":
        value = data.get(RET_KEY, True)  # True, or an empty collection of reasons, passes
        return value is True or (isinstance(value, list | dict) and not value)
    raise AssertionError(f"the model knows no guard {name!r}")


class Model:
    """One case as the tests believe it is."""

    def __init__(self, wf: Workflow, data: Mapping[str, Any], on: dt.date) -> None:
        self.wf = wf
        self.defs = wf.state_defs
        self.config = self._enter(None, wf.initial)
        self.data = merged({}, data)
        self.last_on = on
        self.version = 1
        self.ballots: dict[str, dict[str, str]] = {v: {} for v in wf.votes}
        self.withdrawn: dict[str, set[str]] = {v: set() for v in wf.votes}

    def copy(self) -> Model:
        other = copy.copy(self)
        other.data = copy.deepcopy(self.data)
        other.ballots = {k: dict(v) for k, v in self.ballots.items()}
        other.withdrawn = {k: set(v) for k, v in self.withdrawn.items()}
        return other

    def snapshot(self) -> tuple[Any, ...]:
        return (self.config, json.dumps(self.data, sort_keys=True), self.last_on, self.version,
                {k: v for k, v in self.ballots.items() if v},
                {k: frozenset(v) for k, v in self.withdrawn.items() if v})

    def key(self) -> tuple[Any, ...]:
        """What decides the next steps when data and dates stay as they are (hashable)."""
        return (self.config,
                frozenset((k, frozenset(v.items())) for k, v in self.ballots.items() if v),
                frozenset((k, frozenset(v)) for k, v in self.withdrawn.items() if v))

    # -- the state tree ---------------------------------------------------------------

    def ancestors(self, sid: str) -> list[str]:
        out = []
        parent = self.defs[sid].parent
        while parent is not None:
            out.append(parent)
            parent = self.defs[parent].parent
        return out

    def active(self) -> set[str]:
        out: set[str] = set()
        for leaf in self.config:
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

    def _moved(self, t: TransitionDef) -> tuple[frozenset[str], set[str]]:
        """The configuration after ``t`` and the states it (re-)entered."""
        target_up = set(self.ancestors(t.target))
        domain = next((a for a in self.ancestors(t.source) if a in target_up), None)
        # active leaves outside the domain stay as they are; those inside are exited
        outside = frozenset(leaf for leaf in self.config
                            if domain is not None and domain not in self.ancestors(leaf))
        leaves = self._enter(domain, t.target)
        entered = set(leaves)
        for leaf in leaves:
            for a in self.ancestors(leaf):
                if a == domain:
                    break
                entered.add(a)
        return outside | leaves, entered

    # -- deciding -----------------------------------------------------------------------

    def enabled(self, trigger: str) -> TransitionDef | None:
        active = self.active()
        found = [t for t in self.wf.transitions if t.trigger == trigger and t.source in active]
        assert len(found) <= 1, f"{trigger!r} is enabled twice: {found}"
        return found[0] if found else None

    def region_done(self, region: str) -> bool:
        leaves = [leaf for leaf in self.config if region in self.ancestors(leaf)]
        return bool(leaves) and all(self.defs[leaf].final for leaf in leaves)

    def decide(self, trigger: str, actor: str, on: dt.date,
               data: Mapping[str, Any] | None = None) -> Verdict:
        if self.is_final:
            return Verdict(("final",))
        if trigger not in self.wf.triggers:
            return Verdict(("unknown step",))
        reasons = []
        if actor not in self.wf.actors:
            reasons.append("not an actor")
        t = self.enabled(trigger)
        if t is None:
            return Verdict((*reasons, "not enabled"))
        if actor not in t.actors:
            reasons.append("actor not allowed")
        if on < self.last_on:
            reasons.append("date backwards")
        if t.join and not all(self.region_done(r) for r in self.defs[t.source].children):
            reasons.append("join with a region pending")
        moves = True
        if t.vote is not None and actor in t.actors:
            vg = self.wf.votes[t.vote]
            ballots, gone = self.ballots[vg.id], self.withdrawn[vg.id]
            if actor in gone:
                reasons.append("withdrawn voter")
            elif actor in ballots:
                reasons.append("second ballot")
            else:
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
                if t.ballot == "withdraw" and (not electorate or yes + undecided < need):
                    reasons.append("withdrawal leaves a vote that can't pass")
                elif t.ballot == "no":
                    moves = yes + undecided < need
                else:
                    moves = yes >= need
        if t.guards:
            seen = merged(self.data, data or {})
            for g in t.guards:
                if not guard_holds(g, seen, on):
                    reasons.append(f"guard {g}")
        if reasons:
            return Verdict(tuple(reasons), t)
        return Verdict((), t, self._moved(t)[0] if moves else self.config)

    def allowed(self, on: dt.date) -> list[tuple[str, str]]:
        """Every (trigger, actor) the model accepts on ``on`` with no step data."""
        out = []
        for trigger in sorted(self.wf.triggers):
            t = self.enabled(trigger)
            if t is None:
                continue
            for actor in t.actors:
                if self.decide(trigger, actor, on).ok:
                    out.append((trigger, actor))
        return out

    # -- applying -----------------------------------------------------------------------

    def apply(self, verdict: Verdict, actor: str, on: dt.date,
              data: Mapping[str, Any] | None) -> None:
        t = verdict.transition
        assert verdict.ok and t is not None
        if t.vote is not None:
            if t.ballot == "withdraw":
                self.withdrawn[t.vote].add(actor)
            else:
                self.ballots[t.vote][actor] = t.ballot
        if verdict.target != self.config:
            after, entered = self._moved(t)
            assert after == verdict.target
            for vg in self.wf.votes.values():
                if vg.state in entered or vg.state not in after:
                    self.ballots[vg.id] = {}  # a new round when it is entered again
        self.config = verdict.target
        self.data = merged(self.data, data or {})
        self.last_on = on
        self.version += 1

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
        return reasons

    def expected(self, said: dt.date) -> None:
        self.last_on = said
        self.version += 1


def redecide_log(path: str | Path, case_id: str, wf: Workflow) -> tuple[Model, list[str]]:
    """Read ``case_id``'s events straight from the file and re-decide each with a fresh
    model: every problem found (a step the model refuses, a wrong source or target, a
    gap in the sequence) and the model at the end."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq, kind, trigger, actor, on_date, source, target, data "
                            "FROM events WHERE case_id = ? ORDER BY seq", (case_id,)).fetchall()
    finally:
        conn.close()
    problems: list[str] = []
    seq, kind, _, _, on_date, _, target, data = rows[0]
    model = Model(wf, json.loads(data), dt.date.fromisoformat(on_date))
    if (seq, kind) != (1, "create") or frozenset(json.loads(target)) != model.config:
        problems.append(f"event 1 is {kind!r} into {target}, not the creation in "
                        f"{sorted(model.config)}")
    for seq, kind, trigger, actor, on_date, source, target, data in rows[1:]:
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
        verdict = model.decide(trigger, actor, on, step_data)
        if not verdict.ok:
            problems.append(f"{where}: a step the model refuses: {list(verdict.reasons)}")
            return model, problems
        if frozenset(json.loads(target)) != verdict.target:
            problems.append(f"{where}: moves to {target}, the model to "
                            f"{sorted(verdict.target)}")
        model.apply(verdict, actor, on, step_data)
    return model, problems
