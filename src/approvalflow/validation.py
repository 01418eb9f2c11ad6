"""Validation of workflow files: a parsed TOML document becomes a sound Workflow, or every
problem is reported at once (one line each) in a DefinitionError.

The checks: the shape of every table (keys, types, ids), references between states,
actors, guards, votes and steps, the state tree (composites, parallel regions), and
soundness: every state reachable from the initial one, every reachable state able to
lead to a final one, no traps, no final state with a way out, no join that can never
fire, and no trigger that could move two parts of a case at once.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from . import guards as _guards
from . import rules as _rules  # noqa: F401  (registers the bundled workflows' guards)
from .canonical import DATE_RANGE, date_range_problem, sha256_hex
from .definition import (
    AFTER_BASES,
    BALLOTS,
    CLOCK,
    DATE_REF_KEYS,
    ID_RE,
    INVARIANT_KEYS,
    MAX_DAYS,
    RESERVED_TRIGGERS,
    STATE_KEYS,
    TIMER_KEYS,
    TOP_KEYS,
    TRANSITION_KEYS,
    TRIGGER_RE,
    VOTE_KEYS,
    WORKFLOW_KEYS,
    WORKFLOW_REQUIRED,
    DateRef,
    Invariant,
    Quorum,
    StateDef,
    TransitionDef,
    VoteGroup,
    Workflow,
)
from .errors import DefinitionError

__all__ = ["Builder", "MAX_VERSION", "MAX_NESTING"]

#: The largest [workflow].version: SQLite's largest integer.
MAX_VERSION = 2**63 - 1
#: How deeply states may nest (a top-level state is at depth 1).
MAX_NESTING = 32



def _fail(source: str, problems: list[str]) -> DefinitionError:
    lines = [f"{source}: {p}" for p in problems]
    return DefinitionError("\n".join(lines), lines)


def _plain_date(value: Any) -> dt.date | None:
    """A date from a TOML date or a 'YYYY-MM-DD' string; None for anything else."""
    if isinstance(value, dt.datetime):
        return None
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _ids(items: Any) -> str:
    return "[" + ", ".join(repr(i) for i in sorted(items)) + "]"


class Builder:
    """Turns a parsed TOML document into a Workflow, collecting every problem on the way."""

    def __init__(self, doc: dict[str, Any], source: str, strict_guards: bool) -> None:
        self.doc = doc
        self.source = source
        self.strict_guards = strict_guards
        self.problems: list[str] = []
        self.unregistered: list[str] = []  # guards named but not registered

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def check(self, *, last: bool = False) -> None:
        if self.problems or (last and self.unregistered):
            raise _fail(self.source, self.problems + self.unregistered)

    def _keys(self, where: str, table: Any, allowed: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(table, dict):
            self.problem(f"{where} must be a table, not {type(table).__name__}.")
            return {}
        out = {}
        for key, value in table.items():
            if key not in allowed:
                self.problem(f"{where} has the unknown key {key!r}; allowed keys: "
                             f"{', '.join(sorted(allowed))}.")
                continue
            kind = allowed[key]
            kinds = kind if isinstance(kind, tuple) else (kind,)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple)
                                                          else (kind,)))
                self.problem(f"{where}.{key} must be {names}, not "
                             f"{type(value).__name__} {value!r}.")
                continue
            out[key] = value
        return out

    def _id(self, where: str, value: str, pattern: re.Pattern[str] = ID_RE) -> bool:
        if not pattern.match(value):
            rule = ("lower-case letters, digits, '_' and '-', parts joined by '.'"
                    if pattern is TRIGGER_RE else "lower-case letters, digits, '_' and '-'")
            self.problem(f"{where}: {value!r} is not a valid id ({rule}, "
                         f"starting with a letter or digit, at most 63 characters).")
            return False
        return True

    def _str_list(self, where: str, value: list[Any]) -> list[str]:
        out = []
        for item in value:
            if not isinstance(item, str):
                self.problem(f"{where} must list strings, not {type(item).__name__} {item!r}.")
            elif item in out:
                self.problem(f"{where} lists {item!r} twice.")
            else:
                out.append(item)
        return out

    # -- the steps ---------------------------------------------------------------------

    def build(self, text: str) -> Workflow:
        doc = self.doc
        for key in doc:
            if key not in TOP_KEYS:
                self.problem(f"unknown top-level key {key!r}; allowed: {', '.join(TOP_KEYS)}.")
        head = self._keys("[workflow]", doc.get("workflow", {}), WORKFLOW_KEYS)
        if "workflow" not in doc:
            self.problem("missing the [workflow] table (name, version, initial).")
        elif isinstance(doc["workflow"], dict):
            for key in WORKFLOW_REQUIRED:
                if key not in head and key not in doc["workflow"]:
                    self.problem(f"[workflow] needs {key!r}.")
        name = head.get("name", "")
        if "name" in head:
            self._id("[workflow].name", name)
        version = head.get("version", 0)
        if "version" in head and not 1 <= version <= MAX_VERSION:
            self.problem(f"[workflow].version must be a whole number from 1 to {MAX_VERSION} "
                         f"(what SQLite can store), not {version!r}.")

        actors = self._actors(doc.get("actors"))
        states = self._states(doc.get("states"))
        votes = self._votes(doc.get("votes"))
        transitions = self._transitions(doc.get("transitions"))
        self.check()

        defs = self._state_tree(states, head.get("initial", ""))
        if not defs:  # a cycle of parents: nothing else can be checked meaningfully
            self.check()
        self._check_votes(votes, defs, actors)
        trans = self._resolve_transitions(transitions, defs, actors, votes)
        creation_sets = self._data_keys("[workflow].creation_sets", head["creation_sets"]) \
            if "creation_sets" in head else None
        self._check_participation(defs, votes, trans, actors)
        self._check_vote_can_pass(votes, trans)
        self.check()
        self._check_soundness(defs, trans + self._withdrawal_steps(votes), head["initial"])
        self.check()
        goal, target = self._check_dates(head, defs, trans)
        self._check_date_data(target, defs, trans, creation_sets)
        invariants = self._invariants(doc.get("invariants"), defs)
        self.check(last=True)
        return Workflow(
            name=name, version=version, title=head.get("title", name),
            label=head.get("label", head.get("title", name)),
            description=head.get("description", ""), initial=head["initial"],
            actors=MappingProxyType(actors), state_defs=MappingProxyType(defs),
            transitions=tuple(trans), votes=MappingProxyType(votes),
            source_text=text, path=None if self.source.startswith("<") else self.source,
            digest=sha256_hex(text), goal=goal, target=target, invariants=invariants,
            creation_sets=None if creation_sets is None else tuple(creation_sets),
        )

    def _actors(self, table: Any) -> dict[str, str]:
        if table is None:
            self.problem("missing the [actors] table: who may take the steps.")
            return {}
        if not isinstance(table, dict):
            self.problem(f"[actors] must be a table of id = \"Danish name\", "
                         f"not {type(table).__name__}.")
            return {}
        out = {}
        for actor, label in table.items():
            if not self._id("[actors]", actor):
                continue
            if actor == CLOCK:
                self.problem(f"[actors] defines {CLOCK!r}, an actor name reserved for the "
                             f"clock that takes timed steps (at, after, escalates); choose "
                             f"another id.")
                continue
            if not isinstance(label, str):
                self.problem(f"[actors].{actor} must be its name as a string, not {label!r}.")
                continue
            out[actor] = label
        if not out and not self.problems:
            self.problem("[actors] is empty: no one could take any step.")
        return out

    def _states(self, table: Any) -> dict[str, dict[str, Any]]:
        if table is None or table == {}:
            self.problem("missing the [states] tables: a workflow needs states.")
            return {}
        if not isinstance(table, dict):
            self.problem(f"[states] must be tables, not {type(table).__name__}.")
            return {}
        out = {}
        for state_id, body in table.items():
            if self._id("[states]", state_id):
                keys = out[state_id] = self._keys(f"[states.{state_id}]", body, STATE_KEYS)
                if "deadline" in keys:
                    keys["deadline"] = self._date_ref(f"[states.{state_id}].deadline",
                                                      keys["deadline"])
        return out

    def _votes(self, table: Any) -> dict[str, VoteGroup]:
        if table is None:
            return {}
        if not isinstance(table, dict):
            self.problem(f"[votes] must be tables, not {type(table).__name__}.")
            return {}
        out = {}
        for vote_id, body in table.items():
            where = f"[votes.{vote_id}]"
            if not self._id("[votes]", vote_id):
                continue
            keys = self._keys(where, body, VOTE_KEYS)
            for required in ("state", "voters"):
                if required not in keys and isinstance(body, dict) and required not in body:
                    self.problem(f"{where} needs {required!r}.")
            voters = self._str_list(f"{where}.voters", keys.get("voters", []))
            if "voters" in keys and not voters:
                self.problem(f"{where}.voters is empty: a vote needs voters.")
            need_raw = keys.get("need", "all")
            need: int | None = None
            if isinstance(need_raw, bool) or not isinstance(need_raw, str | int) \
                    or (isinstance(need_raw, str) and need_raw != "all"):
                self.problem(f"{where}.need must be \"all\" or a whole number of yes-votes, "
                             f"not {type(need_raw).__name__} {need_raw!r}.")
            elif isinstance(need_raw, int):
                need = need_raw
                if voters and not 1 <= need <= len(voters):
                    self.problem(f"{where}.need is {need}; with {len(voters)} voters it must "
                                 f"be between 1 and {len(voters)}, or \"all\".")
            out[vote_id] = VoteGroup(id=vote_id, label=str(keys.get("label", vote_id)),
                                     state=keys.get("state", ""), voters=tuple(voters),
                                     need=need, description=keys.get("description", ""),
                                     withdrawn=keys.get("withdrawn"))
        return out

    def _transitions(self, items: Any) -> list[dict[str, Any]]:
        if items is None:
            self.problem("missing [[transitions]]: a workflow needs steps.")
            return []
        if not isinstance(items, list):
            self.problem(f"transitions must be an array of tables ([[transitions]]), "
                         f"not {type(items).__name__}.")
            return []
        out = []
        for i, body in enumerate(items):
            trig = body.get("trigger") if isinstance(body, dict) else None
            where = f"[[transitions]] #{i + 1}" + (f" ({trig!r})" if isinstance(trig, str) else "")
            keys = self._keys(where, body, TRANSITION_KEYS)
            keys["_where"] = where
            timers = [k for k in TIMER_KEYS if isinstance(body, dict) and k in body]
            # a timed step without a target is a reminder: it records, it does not move
            needed = ("trigger", "source") if timers else ("trigger", "source", "target")
            for required in needed:
                if required not in keys and isinstance(body, dict) and required not in body:
                    self.problem(f"{where} needs {required!r}.")
            if len(timers) > 1:
                self.problem(f"{where} gives {' and '.join(timers)}; a timed step has one "
                             f"date: give 'at', 'after' or 'escalates'.")
            elif "at" in keys:
                keys["timer"] = self._date_ref(f"{where}.at", keys["at"])
            elif "after" in keys:
                keys["timer"] = self._after(f"{where}.after", keys["after"], 0)
            elif "escalates" in keys:
                keys["timer"] = DateRef(kind="missed", step=keys["escalates"], days=1)
            if timers and isinstance(body, dict):
                if body.get("actors", [CLOCK]) != [CLOCK]:
                    self.problem(f"{where} is timed ({timers[0]!r}): only the clock takes it, "
                                 f"so it lists no 'actors' (or actors = [{CLOCK!r}]).")
                if "vote" in body:
                    self.problem(f"{where} is timed ({timers[0]!r}): a ballot is cast by a "
                                 f"voter, never by the clock; remove 'vote' or the timer.")
                if body.get("not_by"):
                    self.problem(f"{where} is timed ({timers[0]!r}): the clock takes it, and "
                                 f"the clock is no person, so four eyes ('not_by') could "
                                 f"never let it through; remove 'not_by' or the timer.")
            if "trigger" in keys and self._id(where, keys["trigger"], TRIGGER_RE) and \
                    keys["trigger"] in RESERVED_TRIGGERS:
                self.problem(f"{where}: the trigger name {keys['trigger']!r} is reserved "
                             f"for the event log ({', '.join(sorted(RESERVED_TRIGGERS))}).")
            keys["actors"] = self._str_list(f"{where}.actors", keys.get("actors", []))
            keys["guards"] = self._str_list(f"{where}.guards", keys.get("guards", []))
            keys["not_by"] = self._str_list(f"{where}.not_by", keys.get("not_by", []))
            for g in keys["guards"]:
                if self.strict_guards and _guards.lookup_guard(g) is None:
                    # reported with whatever else is wrong, but it does not stop the
                    # checks that follow (the file's structure does not depend on it)
                    known = sorted(_guards.registered_guards())
                    self.unregistered.append(
                        f"{where}: guard {g!r} is not registered; registered guards: "
                        f"{_ids(known)}. Register it with @approvalflow.guard({g!r}) before "
                        f"loading.")
            ballot = keys.get("ballot")
            if ballot is not None and ballot not in BALLOTS:
                self.problem(f"{where}.ballot is {ballot!r}; allowed: {', '.join(BALLOTS)}.")
            if ballot is not None and "vote" not in keys:
                self.problem(f"{where} has a ballot but no vote group ('vote').")
            for date_key in ("deadline", "earliest"):
                if date_key in keys:
                    keys[date_key] = self._date_ref(f"{where}.{date_key}", keys[date_key])
            for list_key in ("sets", "restate_after_withdrawal"):
                if list_key in keys:
                    keys[list_key] = self._data_keys(f"{where}.{list_key}", keys[list_key])
            days = keys.get("duration_days")
            if days is not None and not 0 <= days <= MAX_DAYS:
                self.problem(f"{where}.duration_days is {days!r}; it must be a whole number of "
                             f"days from 0 to {MAX_DAYS}.")
            out.append(keys)
        return out

    def _invariants(self, items: Any, defs: dict[str, StateDef]) -> tuple[Invariant, ...]:
        """``[[invariants]]``: ids valid and unique, every named state a state of the file."""
        if items is None:
            return ()
        if not isinstance(items, list):
            self.problem(f"invariants must be an array of tables ([[invariants]]), "
                         f"not {type(items).__name__}.")
            return ()
        out: list[Invariant] = []
        seen: set[str] = set()
        for i, body in enumerate(items):
            given = body.get("id") if isinstance(body, dict) else None
            where = f"[[invariants]] #{i + 1}" + (f" ({given!r})" if isinstance(given, str)
                                                 else "")
            keys = self._keys(where, body, INVARIANT_KEYS)
            for required in ("id", "when_entering"):
                if required not in keys and isinstance(body, dict) and required not in body:
                    self.problem(f"{where} needs {required!r}.")
            inv_id = keys.get("id", "")
            if "id" in keys and self._id(f"{where}.id", inv_id):
                if inv_id in seen:
                    self.problem(f"{where}: the invariant id {inv_id!r} is used twice.")
                seen.add(inv_id)
            lists = {k: self._str_list(f"{where}.{k}", keys.get(k, []))
                     for k in ("requires_entered", "requires_any_entered", "requires_active")}
            if not any(lists.values()):
                self.problem(f"{where} requires nothing; give requires_entered, "
                             f"requires_any_entered or requires_active.")
            named = [("when_entering", keys.get("when_entering")), ("since", keys.get("since"))]
            named += [(k, s) for k, values in lists.items() for s in values]
            unknown = [f"{k} {s!r}" for k, s in named if s is not None and s not in defs]
            if unknown:
                self.problem(f"{where}: {', '.join(unknown)} not a state; states: "
                             f"{_ids(defs)}.")
            if "id" in keys and "when_entering" in keys:
                out.append(Invariant(
                    id=inv_id, when_entering=keys["when_entering"], label=keys.get("label", ""),
                    description=keys.get("description", ""), since=keys.get("since"),
                    requires_entered=tuple(lists["requires_entered"]),
                    requires_any_entered=tuple(lists["requires_any_entered"]),
                    requires_active=tuple(lists["requires_active"])))
        return tuple(out)

    def _state_tree(self, states: dict[str, dict[str, Any]], initial: str) -> dict[str, StateDef]:
        children: dict[str | None, list[str]] = {}
        for sid, body in states.items():
            parent = body.get("parent")
            if parent is not None and parent not in states:
                self.problem(f"[states.{sid}].parent {parent!r} is not a state; states: "
                             f"{_ids(states)}.")
                parent = None
            children.setdefault(parent, []).append(sid)
        # cycles in parent links: such states are never reached from the top level
        seen: set[str] = set()
        stack = list(children.get(None, []))
        while stack:
            sid = stack.pop()
            seen.add(sid)
            stack.extend(children.get(sid, []))
        cyclic = sorted(set(states) - seen)
        if cyclic:
            self.problem(f"states {_ids(cyclic)} are their own ancestors (a cycle of 'parent').")
            return {}
        depth = {sid: 1 for sid in children.get(None, [])}
        level = list(children.get(None, []))
        while level:
            nxt = []
            for sid in level:
                for kid in children.get(sid, []):
                    depth[kid] = depth[sid] + 1
                    nxt.append(kid)
            level = nxt
        too_deep = sorted(sid for sid, d in depth.items() if d == MAX_NESTING + 1)
        if too_deep:
            self.problem(f"states {_ids(too_deep)} are nested {MAX_NESTING + 1} levels deep; "
                         f"states may nest at most {MAX_NESTING} levels.")
            return {}
        defs: dict[str, StateDef] = {}
        for sid, body in states.items():
            kids = tuple(children.get(sid, []))
            parallel = body.get("parallel", False)
            final = body.get("final", False)
            where = f"[states.{sid}]"
            if parallel:
                kind = "parallel"
                if not kids:
                    self.problem(f"{where} is parallel but has no regions (child states).")
                if "initial" in body:
                    self.problem(f"{where} is parallel: all its regions start together, so it "
                                 f"takes no 'initial'.")
            elif kids:
                kind = "compound"
                if "initial" not in body:
                    self.problem(f"{where} has child states {_ids(kids)} but no 'initial'.")
                elif body["initial"] not in kids:
                    self.problem(f"{where}.initial {body['initial']!r} is not one of its "
                                 f"children {_ids(kids)}.")
            else:
                kind = "atomic"
                if "initial" in body:
                    self.problem(f"{where} has 'initial' but no child states.")
            if final and kids:
                self.problem(f"{where} is final but has child states {_ids(kids)}; "
                             f"only a leaf state can be final.")
            done = self._str_list(f"{where}.done", body.get("done", []))
            if "done" in body and not body["done"]:  # it would read as "every final state"
                self.problem(f"{where}.done is empty; list the final states in which the "
                             f"region is done, or leave 'done' out (every final state).")
            covers = self._str_list(f"{where}.covers", body.get("covers", []))
            quorum = self._quorum(f"{where}.quorum", body["quorum"]) if "quorum" in body \
                else None
            defs[sid] = StateDef(id=sid, label=body.get("label", sid), parent=body.get("parent"),
                                 kind=kind, initial=body.get("initial"), final=final,
                                 children=kids, description=body.get("description", ""),
                                 done=tuple(done), covers=tuple(covers), quorum=quorum,
                                 deadline=body.get("deadline"))
        for sid, d in defs.items():
            if d.kind == "parallel":
                for region in d.children:
                    if defs[region].kind == "atomic":
                        self.problem(f"[states.{region}] is a region of parallel state {sid!r} "
                                     f"but has no child states; a region needs its own states.")
        if initial and initial not in defs:
            self.problem(f"[workflow].initial {initial!r} is not a state; states: {_ids(defs)}.")
        elif initial and defs[initial].parent is not None:
            self.problem(f"[workflow].initial {initial!r} must be a top-level state, not a "
                         f"child of {defs[initial].parent!r}.")
        return defs

    def _check_votes(self, votes: dict[str, VoteGroup], defs: dict[str, StateDef],
                     actors: dict[str, str]) -> None:
        for vg in votes.values():
            where = f"[votes.{vg.id}]"
            unknown = [v for v in vg.voters if v not in actors]
            if unknown:
                self.problem(f"{where}.voters {_ids(unknown)} are not actors; actors: "
                             f"{_ids(actors)}.")
            if vg.state and vg.state not in defs:
                self.problem(f"{where}.state {vg.state!r} is not a state.")
            elif vg.state and not defs[vg.state].is_leaf:
                self.problem(f"{where}.state {vg.state!r} must be a leaf state (votes are "
                             f"taken while the case waits in it).")

    def _check_vote_can_pass(self, votes: dict[str, VoteGroup],
                             trans: list[TransitionDef]) -> None:
        """A vote's yes ballot can pass it: at least ``need`` voters may cast it. A vote
        without a yes ballot must be decidable otherwise: by a no ballot, or by its
        ``withdrawn`` state."""
        by_vote: dict[str, list[TransitionDef]] = {}
        for t in trans:
            if t.vote:
                by_vote.setdefault(t.vote, []).append(t)
        for vg in votes.values():
            ballots = by_vote.get(vg.id, [])
            yes = {a for t in ballots if t.ballot == "yes" for a in t.actors}
            where = f"[votes.{vg.id}]"
            if not yes:
                if vg.withdrawn is None and not any(t.ballot == "no" for t in ballots):
                    self.problem(f"{where} has no yes or no ballot (a transition with vote = "
                                 f"{vg.id!r} and ballot = \"yes\" or \"no\") and no "
                                 f"'withdrawn' state: nothing could ever decide it.")
            elif vg.need is not None and len(yes) < vg.need:
                self.problem(f"{where}.need is {vg.need}, but only {len(yes)} voter(s) may "
                             f"cast its yes ballot ({_ids(sorted(yes))}): it could never "
                             f"pass; lower 'need' or let more voters say yes.")

    def _resolve_transitions(self, items: list[dict[str, Any]], defs: dict[str, StateDef],
                             actors: dict[str, str],
                             votes: dict[str, VoteGroup]) -> list[TransitionDef]:
        out: list[TransitionDef] = []
        seen: dict[tuple[str, str], str] = {}
        for body in items:
            where = body["_where"]
            timer = body.get("timer")
            timed = any(k in body for k in TIMER_KEYS)
            trigger, source = body["trigger"], body["source"]
            reminder = timed and "target" not in body
            target = source if reminder else body["target"]
            for key, ref in (("source", source), ("target", target)):
                if ref not in defs:
                    self.problem(f"{where}.{key} {ref!r} is not a state; states: {_ids(defs)}.")
            if CLOCK in body["actors"] and not timed:
                self.problem(f"{where}.actors lists {CLOCK!r}, the reserved actor of timed "
                             f"steps; give the step a date ('at', 'after' or 'escalates') or "
                             f"name who takes it.")
            unknown = [a for a in body["actors"] if a not in actors and a != CLOCK]
            if unknown:
                self.problem(f"{where}.actors {_ids(unknown)} are not actors; actors: "
                             f"{_ids(actors)}.")
            vote = body.get("vote")
            actor_list = (CLOCK,) if timed else tuple(body["actors"])
            if vote is not None and not timed:
                if vote not in votes:
                    self.problem(f"{where}.vote {vote!r} is not a vote group; groups: "
                                 f"{_ids(votes)}.")
                else:
                    vg = votes[vote]
                    if source in defs and source != vg.state:
                        self.problem(f"{where}: a ballot of vote {vote!r} must start from its "
                                     f"state {vg.state!r}, not {source!r}.")
                    outsiders = [a for a in actor_list if a not in vg.voters]
                    if outsiders:
                        self.problem(f"{where}.actors {_ids(outsiders)} are not voters of "
                                     f"{vote!r}; voters: {_ids(vg.voters)}.")
                    if not actor_list:
                        actor_list = vg.voters
            if not actor_list:
                self.problem(f"{where}: no actor may fire {trigger!r}; list its 'actors' "
                             f"(or make it a ballot of a vote group).")
            pair = (trigger, source)
            if pair in seen:
                self.problem(f"{where} duplicates {seen[pair]}: trigger {trigger!r} from "
                             f"{source!r} is defined twice.")
            seen[pair] = where
            join = body.get("join")
            if source in defs:
                if join and defs[source].kind != "parallel":
                    self.problem(f"{where}.join is true but {source!r} is not a parallel state.")
                if join is None:
                    join = defs[source].kind == "parallel" and not body.get("quorum_lost")
            if source in defs and defs[source].final:
                self.problem(f"{where}: final state {source!r} has an outgoing transition "
                             f"{trigger!r}; a final state is where a case (or region) ends.")
            out.append(TransitionDef(
                trigger=trigger, source=source, target=target, actors=actor_list,
                guards=tuple(body["guards"]), label=body.get("label", ""), vote=vote,
                ballot=body.get("ballot", "yes"), join=bool(join),
                description=body.get("description", ""), deadline=body.get("deadline"),
                earliest=body.get("earliest"), duration_days=body.get("duration_days"),
                sets=tuple(body["sets"]) if "sets" in body else None,
                restate_after_withdrawal=tuple(body.get("restate_after_withdrawal", ())),
                quorum_lost=bool(body.get("quorum_lost", False)),
                not_by=tuple(body["not_by"]), awaited=body.get("awaited", True),
                timer=timer, reminder=reminder))
        steps = {t.trigger for t in out} | {"create"}
        for body in items:
            unknown = [s for s in body["not_by"] if s not in steps]
            if unknown:
                self.problem(f"{body['_where']}.not_by {_ids(unknown)} are not steps of this "
                             f"workflow; steps: {_ids(steps)}.")
        return out

    def _check_trigger_names(self, defs: dict[str, StateDef],
                             trans: list[TransitionDef]) -> None:
        """A trigger may not take a name the statechart (transitions) gives its model
        already: 'state', or 'is_<a state>' (the engine could not be built)."""
        taken = {"state": "the statechart's current state"}
        taken.update({f"is_{sid}": f"the statechart's check for state {sid!r}" for sid in defs})
        for name in sorted({t.trigger for t in trans} & taken.keys()):
            self.problem(f"the trigger name {name!r} is taken by {taken[name]}; rename the "
                         f"trigger (a trigger may not be named 'state' or 'is_' followed by "
                         f"a state id).")

    def _check_region_entries(self, defs: dict[str, StateDef],
                              trans: list[TransitionDef]) -> None:
        """A step from outside a parallel state may not target a state inside one of its
        regions: it would enter that region alone, and the case would wait forever for
        the regions it never entered."""
        for t in trans:
            inside = {t.source, *self._ancestors(defs, t.source)}
            for p in self._ancestors(defs, t.target):
                if defs[p].kind == "parallel" and p not in inside:
                    region = next(r for r in [t.target, *self._ancestors(defs, t.target)]
                                  if defs[r].parent == p)
                    others = [r for r in defs[p].children if r != region]
                    self.problem(f"{t.trigger!r} from {t.source!r} targets {t.target!r}, "
                                 f"inside region {region!r} of parallel state {p!r}, from "
                                 f"outside {p!r}: the regions {_ids(others)} would not be "
                                 f"entered; target {p!r} itself (every region starts in its "
                                 f"initial state).")
                    break

    def _check_soundness(self, defs: dict[str, StateDef], trans: list[TransitionDef],
                         initial: str) -> None:
        self._check_trigger_names(defs, trans)
        self._check_region_entries(defs, trans)
        def entered(sid: str) -> Iterator[str]:
            """A state and everything that becomes active with it (ancestors, defaults)."""
            node = sid
            while node is not None:
                yield node
                node = defs[node].parent  # type: ignore[assignment]
            stack = [sid]
            while stack:
                d = defs[stack.pop()]
                if d.kind == "parallel":
                    stack.extend(d.children)
                    yield from d.children
                elif d.kind == "compound" and d.initial:
                    stack.append(d.initial)
                    yield d.initial

        by_source: dict[str, list[TransitionDef]] = {}
        for t in trans:
            by_source.setdefault(t.source, []).append(t)
        reached: set[str] = set()
        queue = deque([initial])
        while queue:
            sid = queue.popleft()
            for s in entered(sid):
                if s not in reached:
                    reached.add(s)
                    queue.extend(t.target for t in by_source.get(s, []))
        unreachable = sorted(set(defs) - reached)
        if unreachable:
            self.problem(f"states {_ids(unreachable)} are unreachable from initial state "
                         f"{initial!r}.")
        for sid, d in defs.items():
            if not d.is_leaf:
                continue
            ancestors = self._ancestors(defs, sid)
            if d.final:
                # A final leaf inside a composite ends only that composite: something must
                # leave the composite (or a state containing it), or a case stays there.
                # A step from elsewhere inside a containing state that leads out of it
                # counts too (a sibling region of a parallel state may end the whole).
                if ancestors and not any(s in by_source for s in ancestors) and not any(
                        a in self._ancestors(defs, t.source) + [t.source]
                        and a not in [t.target, *self._ancestors(defs, t.target)]
                        for a in ancestors for t in trans):
                    self.problem(f"state {sid!r} is final within {ancestors[0]!r}, but no "
                                 f"transition leaves {ancestors[0]!r} or a state containing "
                                 f"it: a case that gets there is stuck.")
                continue
            # A join waits for every region to finish, so it is no way out of a state
            # that is not final.
            if not any(not t.join for s in (sid, *ancestors) for t in by_source.get(s, ())):
                self.problem(f"state {sid!r} is not final but has no way out (no transition "
                             f"leaves it or a state containing it, other than a join that "
                             f"waits for it to finish); mark it final = true or add a "
                             f"transition.")
        self._check_can_end(defs, trans, reached)
        for t in trans:
            if not t.join:
                continue
            for region in defs[t.source].children:
                if not any(defs[leaf].final for leaf in self._leaves(defs, region)):
                    self.problem(f"{t.trigger!r} leaves {t.source!r} when every region is "
                                 f"done, but region {region!r} has no final state: it can "
                                 f"never fire.")
        # One trigger may not have two transitions that can be enabled at once: they would
        # move two regions (or two levels) together.
        by_trigger: dict[str, list[TransitionDef]] = {}
        for t in trans:
            by_trigger.setdefault(t.trigger, []).append(t)
        for trigger, ts in by_trigger.items():
            if not self._sources_clash(defs, [t.source for t in ts]):
                continue  # the usual case, found without comparing every pair
            for i, a in enumerate(ts):
                for b in ts[i + 1:]:
                    clash = self._can_coexist(defs, a.source, b.source)
                    if clash:
                        self.problem(f"trigger {trigger!r} leaves both {a.source!r} and "
                                     f"{b.source!r}, which can be active together ({clash}); "
                                     f"give each its own trigger.")

    # -- dates: deadlines, earliest dates, durations, the goal (docs/forecast.md) ----------

    def _date_ref(self, where: str, value: Any) -> DateRef | None:
        """Parse a date reference; record a problem and return None when it is not one."""
        forms = ("a date (2022-02-28 or \"2022-02-28\"), \"data:KEY\", "
                 "{ data = \"KEY\", days = N } or { after = \"TRIGGER\", days = N }")
        if isinstance(value, dt.datetime):
            self.problem(f"{where} is {value.isoformat()!r}, a date with a time; give a date "
                         f"only (YYYY-MM-DD).")
            return None
        if isinstance(value, str) and value.startswith("data:") and value[5:].strip():
            return self._data_ref(where, value[5:], 0)
        if isinstance(value, str | dt.date):
            fixed = _plain_date(value)
            if fixed is None:
                self.problem(f"{where} is {value!r}; a date reference is {forms}.")
                return None
            if date_range_problem(fixed):
                self.problem(f"{where} is {fixed.isoformat()!r}; a date must lie in "
                             f"{DATE_RANGE}.")
                return None
            return DateRef(kind="date", date=fixed)
        unknown = sorted(k for k in value if k not in DATE_REF_KEYS)
        if unknown:
            self.problem(f"{where} has the unknown keys {_ids(unknown)}; allowed keys: "
                         f"{', '.join(DATE_REF_KEYS)}.")
            return None
        bases = [k for k in ("date", "data", "after") if k in value]
        if len(bases) != 1:
            self.problem(f"{where} must name exactly one of 'date', 'data' or 'after', not "
                         f"{bases or 'none'}; a date reference is {forms}.")
            return None
        days = self._days(where, value)
        if days is None:
            return None
        base, ref = bases[0], value[bases[0]]
        if base == "after" and isinstance(ref, dict):
            return self._after(f"{where}.after", ref, days)
        if base == "date":
            fixed = _plain_date(ref)
            if fixed is None:
                self.problem(f"{where}.date is {ref!r}; it must be a date (YYYY-MM-DD).")
                return None
            if date_range_problem(fixed):
                self.problem(f"{where}.date is {fixed.isoformat()!r}; a date must lie in "
                             f"{DATE_RANGE}.")
                return None
            return DateRef(kind="date", date=fixed, days=days)
        if not isinstance(ref, str) or not ref.strip():
            self.problem(f"{where}.{base} is {ref!r}; it must be a non-empty string "
                         f"(a case-data key for 'data', a trigger for 'after').")
            return None
        if base == "data":
            return self._data_ref(f"{where}.data", ref, days)
        return DateRef(kind="after", step=ref, days=days)

    def _data_ref(self, where: str, key: str, days: int) -> DateRef | None:
        """A date read from case data: the key written as ``sets`` takes it."""
        if not all(p.strip() and p == p.strip() for p in key.split(".")):
            self.problem(f"{where}: {key!r} is not a data key (a key, or keys joined by '.' "
                         f"for a nested one, e.g. \"budget.total\").")
            return None
        return DateRef(kind="data", key=key, days=days)

    def _days(self, where: str, value: dict[str, Any]) -> int | None:
        """The ``days`` of a date reference (0 when absent), or None after a problem."""
        days = value.get("days", 0)
        if isinstance(days, bool) or not isinstance(days, int) or abs(days) > MAX_DAYS:
            self.problem(f"{where}.days is {days!r}; it must be a whole number of days "
                         f"between -{MAX_DAYS} and {MAX_DAYS}.")
            return None
        return days

    def _after(self, where: str, value: Any, outer_days: int) -> DateRef | None:
        """``{ step = ID | state = ID | join = ID, days = N }``: what a timer or date counts
        from (a step's latest event, the latest entry into a state, the day every region
        of a parallel state was done), plus ``days``."""
        if not isinstance(value, dict):
            self.problem(f"{where} must be a table {{ step = ID | state = ID | join = ID, "
                         f"days = N }}, not {type(value).__name__} {value!r}.")
            return None
        unknown = sorted(k for k in value if k not in (*AFTER_BASES, "days"))
        if unknown:
            self.problem(f"{where} has the unknown keys {_ids(unknown)}; allowed keys: "
                         f"{', '.join(AFTER_BASES)}, days.")
            return None
        bases = [k for k in AFTER_BASES if k in value]
        if len(bases) != 1:
            self.problem(f"{where} must name exactly one of {', '.join(AFTER_BASES)}, not "
                         f"{bases or 'none'}.")
            return None
        days = self._days(where, value)
        if days is None:
            return None
        if "days" in value and outer_days:
            self.problem(f"{where} and the date reference around it both give 'days'; give "
                         f"it once.")
            return None
        ref = value[bases[0]]
        if not isinstance(ref, str) or not ref.strip():
            self.problem(f"{where}.{bases[0]} is {ref!r}; it must be a non-empty string.")
            return None
        if bases[0] == "step":
            return DateRef(kind="after", step=ref, days=days + outer_days)
        return DateRef(kind=bases[0], state=ref, days=days + outer_days)

    def _check_dates(self, head: dict[str, Any], defs: dict[str, StateDef],
                     trans: list[TransitionDef]) -> tuple[str | None, DateRef | None]:
        """The goal and target of [workflow]; every 'after' names a step; one deadline a step."""
        goal = head.get("goal")
        if goal is not None and goal not in defs:
            self.problem(f"[workflow].goal {goal!r} is not a state; states: {_ids(defs)}.")
        target = self._date_ref("[workflow].target", head["target"]) if "target" in head \
            else None
        if target is not None and goal is None:
            self.problem("[workflow].target is set but there is no [workflow].goal: name the "
                         "state the target date is for.")
        for d in defs.values():
            if d.final and d.deadline is not None:
                self.problem(f"[states.{d.id}].deadline: {d.id!r} is a final state, which a "
                             f"case never leaves, and a state's deadline is the date to leave "
                             f"it by; give the deadline to the state before it, or to the "
                             f"step into it.")
        triggers = {t.trigger for t in trans}
        refs: list[tuple[str, DateRef | None]] = [("[workflow].target", target)]
        refs += [(f"[states.{d.id}].deadline", d.deadline) for d in defs.values()]
        deadlines: dict[str, DateRef] = {}
        timed: dict[str, bool] = {}
        for t in trans:
            where = f"[[transitions]] ({t.trigger!r} from {t.source!r})"
            refs += [(f"{where}.deadline", t.deadline), (f"{where}.earliest", t.earliest),
                     (f"{where}.{'escalates' if t.timer and t.timer.kind == 'missed' else 'at'}",
                      t.timer)]
            if timed.setdefault(t.trigger, t.timed) != t.timed:
                self.problem(f"the step {t.trigger!r} is timed on some of its transitions and "
                             f"not on others; the clock takes a step on all of them or on "
                             f"none: give the timed one its own trigger.")
            if t.deadline is not None:
                known = deadlines.setdefault(t.trigger, t.deadline)
                if known != t.deadline:
                    self.problem(f"the step {t.trigger!r} has two deadlines, "
                                 f"{known.describe()!r} and {t.deadline.describe()!r}; a step "
                                 f"has one deadline, give it on one of its transitions.")
        for t in trans:
            if t.deadline is not None:
                deadlines.setdefault(t.trigger, t.deadline)
        for where, ref in refs:
            if ref is None:
                continue
            if ref.kind == "after" and ref.step not in triggers:
                self.problem(f"{where}: 'after' names {ref.step!r}, which is not a step; "
                             f"steps: {_ids(triggers)}.")
            elif ref.kind in ("state", "join") and ref.state not in defs:
                self.problem(f"{where}: '{ref.kind}' names {ref.state!r}, which is not a "
                             f"state; states: {_ids(defs)}.")
            elif ref.kind == "join" and ref.state and defs[ref.state].kind != "parallel":
                self.problem(f"{where}: 'join' names {ref.state!r}, which is not a parallel "
                             f"state; a join is when every region of a parallel state is done.")
            elif ref.kind == "missed":
                state_deadline = ref.step in defs and defs[ref.step or ""].deadline is not None
                if ref.step not in deadlines and not state_deadline:
                    with_deadline = sorted([*deadlines, *(d.id for d in defs.values()
                                                          if d.deadline is not None)])
                    self.problem(f"{where}: 'escalates' names {ref.step!r}, which is neither a "
                                 f"step nor a state with a deadline; with deadlines: "
                                 f"{_ids(with_deadline)}.")
        for t in trans:
            # A state's deadline is missed by a case that stays in it: escalating it from
            # elsewhere would fire on a date about a state the case is not in.
            name = t.timer.step if t.timer and t.timer.kind == "missed" else None
            if name and name not in deadlines and name in defs \
                    and name not in (t.source, *self._ancestors(defs, t.source)):
                self.problem(f"[[transitions]] ({t.trigger!r} from {t.source!r}).escalates "
                             f"names the state {name!r}, but {t.source!r} is not {name!r} or "
                             f"inside it: its deadline is missed by a case that stays in "
                             f"{name!r}, so escalate from there.")
        return goal, target

    def _check_date_data(self, target: DateRef | None, defs: dict[str, StateDef],
                         trans: list[TransitionDef], creation_sets: list[str] | None) -> None:
        """A date read from the case data needs a key the data can hold: one the creation
        or some step (not the clock, which carries no data) may set. Otherwise the date is
        never known, and a timed step on it is never taken."""
        def covered(key: str, allowed: Iterable[str], trigger: str | None = None) -> bool:
            keys = {*allowed, *([f"dates.{trigger}"] if trigger else [])}
            parts = key.split(".")
            return any(".".join(parts[:n]) in keys for n in range(1, len(parts) + 1))

        def settable(key: str) -> bool:
            if creation_sets is None or covered(key, creation_sets):
                return True
            return any(not t.timed and (t.sets is None or covered(key, t.sets, t.trigger))
                       for t in trans)

        refs: list[tuple[str, DateRef | None]] = [("[workflow].target", target)]
        refs += [(f"[states.{d.id}].deadline", d.deadline) for d in defs.values()]
        for t in trans:
            where = f"[[transitions]] ({t.trigger!r} from {t.source!r})"
            refs += [(f"{where}.deadline", t.deadline), (f"{where}.earliest", t.earliest),
                     (f"{where}.at", t.timer)]
        for where, ref in refs:
            if ref is not None and ref.kind == "data" and ref.key and not settable(ref.key):
                self.problem(f"{where} is the date in the case data {ref.key!r}, but neither "
                             f"the creation (creation_sets {_ids(creation_sets or [])}) nor "
                             f"any step's 'sets' may set it: the date could never be known; "
                             f"add {ref.key!r} to creation_sets or to a step's 'sets'.")

    def _check_can_end(self, defs: dict[str, StateDef], trans: list[TransitionDef],
                       reached: set[str]) -> None:
        """From every reachable leaf, some chain of steps must lead to a top-level final state:
        a loop with no exit, or a workflow with no end, would keep a case open forever."""
        ends = {s for s, d in defs.items() if d.final and d.parent is None}
        if not ends:
            self.problem("no top-level state is final: a case could never end; mark the "
                         "states where it ends final = true.")
            return
        leaves = [s for s, d in defs.items() if d.is_leaf]
        under: dict[str, list[str]] = {}  # the leaves at or below a state

        def leaves_under(sid: str) -> list[str]:
            if sid not in under:
                under[sid] = self._leaves(defs, sid)
            return under[sid]

        # Each step's leaves and where they go, found from the step (not by asking every
        # leaf of every step: a 1 MB file would take minutes).
        predecessors: dict[str, set[str]] = {}
        for t in trans:
            entered = self._entered_leaves(defs, t.target)
            # a join fires from a final leaf of each region; any other step from any leaf
            # at or below its source
            moved = {leaf for leaf in leaves_under(t.source) if not t.join or defs[leaf].final}
            if not t.join:
                # a step in a sibling region that leaves a parallel state ends this region too
                target_in = {t.target, *self._ancestors(defs, t.target)}
                for p in {t.source, *self._ancestors(defs, t.source)} - target_in:
                    if defs[p].kind == "parallel":
                        moved.update(leaves_under(p))
            for leaf in entered:
                predecessors.setdefault(leaf, set()).update(moved)
        can_end = set(ends)
        queue = deque(ends)
        while queue:  # backwards from the ends: every leaf with a step towards one
            for leaf in predecessors.get(queue.popleft(), ()):
                if leaf not in can_end:
                    can_end.add(leaf)
                    queue.append(leaf)
        stuck = sorted(s for s in leaves if s in reached and s not in can_end)
        if stuck:
            self.problem(f"from states {_ids(stuck)} no chain of steps leads to a final "
                         f"top-level state: a case there could never end.")

    def _entered_leaves(self, defs: dict[str, StateDef], sid: str) -> set[str]:
        """The leaves that become active when ``sid`` is entered."""
        d = defs[sid]
        if d.kind == "atomic":
            return {sid}
        if d.kind == "parallel":
            return set().union(*(self._entered_leaves(defs, r) for r in d.children))
        return self._entered_leaves(defs, d.initial) if d.initial else set()

    @staticmethod
    def _leaves(defs: dict[str, StateDef], sid: str) -> list[str]:
        stack, out = [sid], []
        while stack:
            d = defs[stack.pop()]
            if d.is_leaf:
                out.append(d.id)
            stack.extend(d.children)
        return out

    @staticmethod
    def _ancestors(defs: dict[str, StateDef], sid: str) -> list[str]:
        out = []
        parent = defs[sid].parent
        while parent is not None:
            out.append(parent)
            parent = defs[parent].parent
        return out

    def _sources_clash(self, defs: dict[str, StateDef], sources: list[str]) -> bool:
        """Whether two of ``sources`` can be active together (what :meth:`_can_coexist`
        says of a pair), in one pass: one contains another, or two lie in different
        regions of one parallel state."""
        unique = set(sources)
        if len(unique) < len(sources):
            return True
        region_of: dict[str, str] = {}  # parallel state -> the region a source lies in
        for sid in unique:
            chain = [sid, *self._ancestors(defs, sid)]
            if any(a in unique for a in chain[1:]):
                return True
            for child, parent in itertools.pairwise(chain):
                if defs[parent].kind == "parallel" \
                        and region_of.setdefault(parent, child) != child:
                    return True
        return False

    def _can_coexist(self, defs: dict[str, StateDef], a: str, b: str) -> str:
        anc_a = [a, *self._ancestors(defs, a)]
        anc_b = [b, *self._ancestors(defs, b)]
        if a in anc_b or b in anc_a:
            return "one contains the other"
        common = next(s for s in anc_a if s in anc_b) if set(anc_a) & set(anc_b) else None
        if common is not None and defs[common].kind == "parallel":
            return f"parallel regions of {common!r}"
        return ""


    # -- taking part: who may set which data, regions that end done or not, quorums --------

    def _data_keys(self, where: str, value: list[Any]) -> list[str]:
        """Data keys as listed in a file: ``key`` or a dotted path ``key.sub``."""
        out = []
        for key in self._str_list(where, value):
            parts = key.split(".")
            if not all(p.strip() and p == p.strip() for p in parts):
                self.problem(f"{where}: {key!r} is not a data key (a key, or keys joined by "
                             f"'.' for a nested one, e.g. \"budget.total\").")
                continue
            out.append(key)
        return out

    def _quorum(self, where: str, value: Any) -> Quorum | None:
        """``{ regions = [...], at_least = N }``; the regions are checked with the tree."""
        unknown = sorted(k for k in value if k not in ("regions", "at_least"))
        if unknown:
            self.problem(f"{where} has the unknown keys {_ids(unknown)}; allowed keys: "
                         f"at_least, regions.")
            return None
        regions = value.get("regions")
        at_least = value.get("at_least", 1)
        if not isinstance(regions, list) or not regions:
            self.problem(f"{where}.regions must list the regions it counts, not {regions!r}.")
            return None
        names = self._str_list(f"{where}.regions", regions)
        if isinstance(at_least, bool) or not isinstance(at_least, int) or \
                not 1 <= at_least <= len(names):
            self.problem(f"{where}.at_least is {at_least!r}; it must be a whole number from 1 "
                         f"to {len(names)} (the regions listed).")
            return None
        return Quorum(regions=tuple(names), at_least=at_least)

    @staticmethod
    def _region_of(defs: dict[str, StateDef], sid: str) -> str | None:
        """The region (a child of a parallel state) ``sid`` lies in, nearest first."""
        node: str | None = sid
        while node is not None:
            parent = defs[node].parent
            if parent is not None and defs[parent].kind == "parallel":
                return node
            node = parent
        return None

    def _withdrawal_steps(self, votes: dict[str, VoteGroup]) -> list[TransitionDef]:
        """The moves a vote makes by itself when every voter has withdrawn (for soundness)."""
        return [TransitionDef(trigger=f"({vg.id}: all withdrawn)", source=vg.state,
                              target=vg.withdrawn, actors=vg.voters, guards=())
                for vg in votes.values() if vg.withdrawn]

    def _check_participation(self, defs: dict[str, StateDef], votes: dict[str, VoteGroup],
                             trans: list[TransitionDef], actors: dict[str, str]) -> None:
        for sid, d in defs.items():
            where = f"[states.{sid}]"
            parent = defs.get(d.parent) if d.parent else None
            is_region = parent is not None and parent.kind == "parallel"
            if (d.done or d.covers) and not is_region:
                key = "done" if d.done else "covers"
                self.problem(f"{where}.{key} is only for a region (a child of a parallel "
                             f"state); {sid!r} is not one.")
            if is_region:
                finals = {leaf for leaf in self._leaves(defs, sid) if defs[leaf].final}
                wrong = [s for s in d.done if s not in finals]
                if wrong:
                    self.problem(f"{where}.done {_ids(wrong)} are not final states of region "
                                 f"{sid!r}; its final states: {_ids(finals)}.")
            unknown = [a for a in d.covers if a not in actors]
            if unknown:
                self.problem(f"{where}.covers {_ids(unknown)} are not actors; actors: "
                             f"{_ids(actors)}.")
            if d.quorum is not None:
                if d.kind != "parallel":
                    self.problem(f"{where}.quorum is only for a parallel state; {sid!r} is "
                                 f"{d.kind}.")
                else:
                    stray = [r for r in d.quorum.regions if r not in d.children]
                    if stray:
                        self.problem(f"{where}.quorum.regions {_ids(stray)} are not regions of "
                                     f"{sid!r}; its regions: {_ids(d.children)}.")
        for vg in votes.values():
            if vg.withdrawn is None:
                continue
            where = f"[votes.{vg.id}].withdrawn"
            w = defs.get(vg.withdrawn)
            if w is None:
                self.problem(f"{where} {vg.withdrawn!r} is not a state; states: {_ids(defs)}.")
                continue
            if not (w.is_leaf and w.final):
                self.problem(f"{where} {vg.withdrawn!r} must be a final leaf state (the "
                             f"region's outcome when every voter has withdrawn).")
            region = self._region_of(defs, vg.withdrawn)
            if vg.state in defs and region != self._region_of(defs, vg.state):
                self.problem(f"{where} {vg.withdrawn!r} must lie in the same region as the "
                             f"vote's state {vg.state!r}.")
            elif region is not None and (not defs[region].done or
                                         vg.withdrawn in defs[region].done):
                self.problem(f"{where} {vg.withdrawn!r} would count as done: list the states "
                             f"in which region {region!r} is done in its 'done', without "
                             f"{vg.withdrawn!r} (everyone withdrawn is never an approval).")
        settable_any = any(t.sets is None for t in trans)
        settable = {k for t in trans for k in (t.sets or ())}
        for t in trans:
            where = f"[[transitions]] ({t.trigger!r} from {t.source!r})"
            if t.quorum_lost:
                src = defs.get(t.source)
                if src is None or src.kind != "parallel" or src.quorum is None:
                    self.problem(f"{where}.quorum_lost is true but {t.source!r} is not a "
                                 f"parallel state with a 'quorum'.")
                elif t.join:
                    self.problem(f"{where}: quorum_lost and join exclude each other; set "
                                 f"join = false.")
            for key in t.restate_after_withdrawal:
                if not settable_any and not any(s == key or s.startswith(key + ".") or
                                                key.startswith(s + ".") for s in settable):
                    self.problem(f"{where}.restate_after_withdrawal names {key!r}, but no step "
                                 f"may set it (no 'sets' lists it): the step could never be "
                                 f"taken after a withdrawal.")
