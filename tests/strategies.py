"""Hypothesis strategies for workflow documents and hostile values.

Workflow documents are built as dicts and rendered to TOML text by ``to_toml``, a
small emitter (enough for what the format uses: tables, arrays of tables, inline
arrays and tables, strings, integers, floats, booleans), so no TOML writer is needed.

- ``sound_workflows()``: documents that must load (a chain of states, back edges,
  optionally a parallel state with regions and a join).
- ``broken_workflows()``: a sound document with 1-4 random mutations anywhere in it
  (a key removed, a value replaced by one of another type, a reference renamed, an
  unknown key added): it may still load, or must be refused with DefinitionError.
- ``byte_mutations()``: edits of raw bytes (flip, delete, insert, duplicate, truncate).
- ``hostile_text()`` and ``json_values()``: text and JSON data meant to break storage.
"""

from __future__ import annotations

import math
import re
from typing import Any

from hypothesis import strategies as st

import approvalflow as af

#: A guard for generated workflows whose answer the step's data chooses: it returns the
#: case data's "ret" (True when there is none), so a test can make a guard return None,
#: 0, "", False, [], True ... and check which of them refuse the step.
RET_GUARD = "ret_ok"


@af.guard(RET_GUARD)
def _ret_ok(ctx: af.GuardContext) -> Any:
    return ctx.data.get("ret", True)


# -- a tiny TOML emitter --------------------------------------------------------------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if _BARE.match(key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(doc: dict[str, Any], _prefix: str = "") -> str:
    """TOML text for ``doc``: scalars first, then sub-tables and arrays of tables."""
    lines = []
    nested = []
    for key, value in doc.items():
        if isinstance(value, dict) or _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in nested:
        name = f"{_prefix}{toml_key(key)}"
        if isinstance(value, dict):
            out += f"\n[{name}]\n" + to_toml(value, f"{name}.")
        else:
            for item in value:
                out += f"\n[[{name}]]\n" + to_toml(item, f"{name}.")
    return out


# -- sound workflow documents ---------------------------------------------------------------

ids = st.from_regex(r"[a-z][a-z0-9_-]{0,11}", fullmatch=True)
labels = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@st.composite
def sound_workflows(draw: st.DrawFn) -> dict[str, Any]:
    """A workflow document that must load: every state reachable, no traps.

    A chain of states, back edges, optionally a parallel state whose regions wait for a
    step or hold a vote (yes/no/withdraw ballots, a new round after a no), and votes on
    the chain (a no ends the case). Steps may be guarded by ``proposal_ok`` and ``ret_ok``.
    """
    names = draw(st.lists(ids, min_size=6, max_size=12, unique=True))
    actors = names[:draw(st.integers(1, 4))]
    suffix = names[-1]
    n_chain = draw(st.integers(2, 5))
    chain = [f"s{i}-{suffix}" for i in range(n_chain)]
    states: dict[str, Any] = {}
    for sid in chain:
        states[sid] = {"label": draw(labels)}
    states[chain[-1]]["final"] = True
    transitions: list[dict[str, Any]] = []
    votes: dict[str, Any] = {}

    def who() -> list[str]:
        return draw(st.lists(st.sampled_from(actors), min_size=1, max_size=len(actors),
                             unique=True))

    def step(trigger: str, source: str, target: str) -> None:
        t: dict[str, Any] = {"trigger": trigger, "source": source, "target": target,
                             "actors": who()}
        if draw(st.booleans()):
            t["label"] = draw(labels)
        if draw(st.integers(0, 3)) == 0:
            t["guards"] = draw(st.sampled_from([["proposal_ok"], [RET_GUARD],
                                                ["proposal_ok", RET_GUARD]]))
        transitions.append(t)

    def vote(vid: str, state: str, prefix: str, yes: str, no: str) -> None:
        """A vote group taken in ``state``: yes (and withdraw) ballots to ``yes``, no to ``no``."""
        voters = who()
        need = draw(st.one_of(st.just("all"), st.integers(1, len(voters))))
        votes[vid] = {"state": state, "voters": voters, "need": need}
        transitions.append({"trigger": f"{prefix}.yes", "source": state, "target": yes,
                            "vote": vid})
        transitions.append({"trigger": f"{prefix}.no", "source": state, "target": no,
                            "vote": vid, "ballot": "no"})
        if draw(st.booleans()):
            transitions.append({"trigger": f"{prefix}.out", "source": state, "target": yes,
                                "vote": vid, "ballot": "withdraw"})

    parallel_at = draw(st.one_of(st.none(), st.integers(0, n_chain - 2)))
    for i in range(n_chain - 1):
        if i == parallel_at:
            par = f"par-{suffix}"
            states[par] = {"parallel": True, "label": draw(labels)}
            step(f"go{i}", chain[i], par)
            for k in range(draw(st.integers(1, 3))):
                region = f"r{k}-{suffix}"
                states[region] = {"parent": par, "initial": f"{region}-wait"}
                states[f"{region}-wait"] = {"parent": region}
                states[f"{region}-done"] = {"parent": region, "final": True}
                if draw(st.integers(0, 2)) == 0:
                    states[f"{region}-no"] = {"parent": region}
                    vote(f"v{k}", f"{region}-wait", f"r{k}", f"{region}-done", f"{region}-no")
                    step(f"r{k}.again", f"{region}-no", f"{region}-wait")
                else:
                    step(f"r{k}.ok", f"{region}-wait", f"{region}-done")
            step(f"join{i}", par, chain[i + 1])
        elif draw(st.integers(0, 3)) == 0:
            nay = f"nay{i}-{suffix}"
            states[nay] = {"final": True}
            vote(f"c{i}", chain[i], f"c{i}", chain[i + 1], nay)
        else:
            step(f"t{i}", chain[i], chain[i + 1])
    for j in range(draw(st.integers(0, 2))):  # back edges: send a case back
        src = draw(st.integers(1, n_chain - 2)) if n_chain > 2 else 0
        step(f"back{j}", chain[src], chain[draw(st.integers(0, src))])
    doc: dict[str, Any] = {
        "workflow": {"name": names[-2], "version": draw(st.integers(1, 10**6)),
                     "initial": chain[0]},
        "actors": {a: draw(labels) for a in actors},
        "states": states,
        "transitions": transitions,
    }
    if votes:
        doc["votes"] = votes
    if draw(st.booleans()):
        doc["workflow"]["title"] = draw(labels)
    return doc


# -- broken ones ----------------------------------------------------------------------------

toml_scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1),
                         st.floats(allow_nan=True), labels, ids)
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(ids, inner, max_size=3)), max_leaves=6)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here] if here else []
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*here, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*here, i)))
    return out


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@st.composite
def broken_workflows(draw: st.DrawFn) -> dict[str, Any]:
    """A sound document with 1-4 random mutations at random places."""
    doc = draw(sound_workflows())
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        op = draw(st.sampled_from(["delete", "replace", "reference", "add_key", "duplicate"]))
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(toml_values)
        elif op == "reference":  # a string swapped for another id of the document
            parent[last] = draw(st.sampled_from([*_strings(doc), "nowhere"]))
        elif op == "add_key" and isinstance(parent, dict):
            parent[draw(ids)] = draw(toml_values)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(parent[last])
    return doc


# -- bytes, text and data -------------------------------------------------------------------


@st.composite
def byte_mutations(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with 1-5 byte-level edits."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 5))):
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate",
                                   "byte"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "duplicate":
            n = draw(st.integers(1, 200))
            data[pos:pos] = data[pos:pos + n]
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos] = draw(st.sampled_from(b"\x00\xff\xc3\x80[]=\"'\n#{}.\\"))
    return bytes(data)


SQL = ["'; DROP TABLE events; --", "\"); DELETE FROM cases; --", "x' OR '1'='1",
       "Robert'); DROP TABLE cases;--", "%' AND 1=1 --", "NULL", "\\", "''", "\x00"]
#: Strings that can't be stored as UTF-8 text.
SURROGATES = ["\ud800", "a\udfffb", "\udc80" * 3]

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.sampled_from(SQL),
    st.text(st.characters(max_codepoint=0x1F), min_size=1, max_size=10),  # control chars
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), st.sampled_from(SURROGATES),
              st.text(max_size=5)),
    st.integers(150, 20_000).map(lambda n: "æ" * n),  # around and past the limits
    st.sampled_from(["", " ", "\t", "\n", "\u200b", "\ufeff", "ﬁ", "e\u0301"]),
)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(), hostile_text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=10)
