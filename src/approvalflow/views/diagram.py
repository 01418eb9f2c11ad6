"""Diagrams of a workflow: Mermaid and Graphviz DOT text, and SVG through Graphviz.

A workflow is drawn as its statechart: compound states as boxes holding their
children, parallel states as boxes whose regions are separated (``--`` in Mermaid,
dashed clusters in DOT), the initial state of each level marked with a start dot,
and final states marked as such. Given a case, its active states are highlighted.

Text output needs nothing beyond approvalflow. SVG needs the ``diagrams`` extra
(the ``graphviz`` Python package) and the Graphviz program ``dot``; without them
:class:`MissingDependencyError` says what to install.

This module only reads a :class:`~approvalflow.definition.Workflow`; the library
never imports it except when a diagram is asked for.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, MissingDependencyError

if TYPE_CHECKING:
    from ..case import Case
    from ..definition import TransitionDef, Workflow

__all__ = ["FORMATS", "MissingDependencyError", "render", "to_dot", "to_mermaid", "to_svg"]

FORMATS = ("mermaid", "dot", "svg")

#: Highlight of active states (a warm yellow, readable on light and dark backgrounds).
ACTIVE_FILL = "#fde68a"
ACTIVE_STROKE = "#b45309"


# --------------------------------------------------------------------------- helpers


def _active(workflow: Workflow, case: Case | None) -> frozenset[str]:
    """The case's active states (leaves and their ancestors), checked against ``workflow``."""
    if case is None:
        return frozenset()
    name = getattr(case, "workflow", None)
    if name != workflow.name or not hasattr(case, "active_states"):
        raise InvalidInputError(
            f"case {getattr(case, 'id', case)!r} runs on workflow {name!r}, not "
            f"{workflow.name!r}; pass a case of this workflow (or case=None).")
    return frozenset(s for s in case.active_states if s in workflow.state_defs)


def edge_words(workflow: Workflow, t: TransitionDef) -> list[str]:
    """What an edge says besides its trigger: who takes it, the vote's threshold, the
    guards it needs and its deadline; e.g. ``['by tmf', 'if financing_ok']``."""
    words = []
    if t.vote is not None:
        vg = workflow.votes[t.vote]
        need = f"all {len(vg.voters)}" if vg.need is None else f"{vg.need} of {len(vg.voters)}"
        ballot = {"yes": "a yes", "no": "a no", "withdraw": "a withdrawal"}.get(t.ballot,
                                                                               t.ballot)
        words.append(f"{ballot} in vote {vg.id} (passes with {need} yes)")
    else:
        words.append("by " + ", ".join(t.actors))
    if t.guards:
        words.append("if " + ", ".join(t.guards))
    if t.deadline is not None:
        words.append("due " + t.deadline.describe())
    if t.timer is not None:  # a timed step: the clock takes it on this date
        words.append("on " + t.timer.describe())
    return words


def _top_level(workflow: Workflow) -> list[str]:
    return [s for s, d in workflow.state_defs.items() if d.parent is None]


def _lineage(workflow: Workflow, state_id: str) -> list[str]:
    return [state_id, *workflow.ancestors(state_id)]


def _edge_home(workflow: Workflow, t: TransitionDef) -> str | None:
    """The compound state whose block holds the edge: the common parent, or None (top)."""
    src = workflow.state_defs[t.source].parent
    dst = workflow.state_defs[t.target].parent
    if src is not None and src == dst and workflow.state_defs[src].kind == "compound":
        return src
    return None


def _check_format(fmt: object) -> str:
    if fmt not in FORMATS:
        raise InvalidInputError(f"format {fmt!r} is not a diagram format; allowed: "
                                f"{', '.join(repr(f) for f in FORMATS)}.")
    return str(fmt)


# --------------------------------------------------------------------------- Mermaid

#: Characters that would end or break a Mermaid label, written as Mermaid entity codes.
_MERMAID_ENTITIES = {'"': "#quot;", "#": "#35;", ";": "#59;", "%": "#37;", "<": "#lt;",
                     ">": "#gt;", "{": "#123;", "}": "#125;", "&": "#amp;", ":": "#58;",
                     "`": "#96;", "|": "#124;", "[": "#91;", "]": "#93;"}
_MERMAID_RE = re.compile("|".join(re.escape(c) for c in _MERMAID_ENTITIES))


def _mermaid_text(text: str) -> str:
    """A label safe inside Mermaid: one line, special characters as entity codes."""
    one_line = " ".join(text.split())
    return _MERMAID_RE.sub(lambda m: _MERMAID_ENTITIES[m.group(0)], one_line)


def _mermaid_ids(workflow: Workflow) -> dict[str, str]:
    """State id -> Mermaid id: 's_' + the id with '-' as '_', unique.

    Mermaid reads '-' as part of an arrow and some words ('end', 'state', 'note') as
    keywords; a prefix and an alias keep every id safe, ids starting with a digit
    ('3b_pending') included. The label shown is the state's own label.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for sid in workflow.state_defs:
        base = "s_" + re.sub(r"[^A-Za-z0-9_]", "_", sid)
        alias, n = base, 1
        while alias in used:
            n += 1
            alias = f"{base}_{n}"
        used.add(alias)
        out[sid] = alias
    return out


def to_mermaid(workflow: Workflow, case: Case | None = None) -> str:
    """The workflow as a Mermaid ``stateDiagram-v2``; ``case``'s active states highlighted.

    Paste the text into any Mermaid renderer (GitHub and GitLab Markdown, the Mermaid
    live editor, JupyterLab with a Mermaid extension).
    """
    active = _active(workflow, case)
    ids = _mermaid_ids(workflow)
    defs = workflow.state_defs
    homes: dict[str | None, list[TransitionDef]] = {}
    for t in workflow.transitions:
        homes.setdefault(_edge_home(workflow, t), []).append(t)

    lines = ["stateDiagram-v2"]

    def edge(t: TransitionDef) -> str:
        label = " · ".join([t.trigger, *edge_words(workflow, t)])
        return f"{ids[t.source]} --> {ids[t.target]} : {_mermaid_text(label)}"

    def block(state_ids: Iterable[str], indent: str, initial: str | None,
              home: str | None) -> None:
        if initial is not None:
            lines.append(f"{indent}[*] --> {ids[initial]}")
        for sid in state_ids:
            d = defs[sid]
            label = _mermaid_text(d.label or sid)
            if d.kind == "atomic":
                lines.append(f'{indent}state "{label}" as {ids[sid]}')
                if d.final:
                    lines.append(f"{indent}{ids[sid]} --> [*]")
                continue
            lines.append(f'{indent}state "{label}" as {ids[sid]} {{')
            if d.kind == "compound":
                block(d.children, indent + "    ", d.initial, sid)
            else:  # parallel: one region after the other, separated by --
                for i, region in enumerate(d.children):
                    if i:
                        lines.append(f"{indent}    --")
                    block([region], indent + "    ", region, None)
            lines.append(f"{indent}}}")
        for t in homes.get(home, []) if home is not None else []:
            lines.append(indent + edge(t))

    block(_top_level(workflow), "    ", workflow.initial, None)
    # Edges that cross a box go last, at the top level, once every state is declared.
    lines.extend("    " + edge(t) for t in homes.get(None, []))
    lines.append(f"    classDef active fill:{ACTIVE_FILL},stroke:{ACTIVE_STROKE},"
                 f"stroke-width:2px")
    leaves = [ids[s] for s in defs if s in active and defs[s].kind == "atomic"]
    if leaves:
        lines.append(f"    class {','.join(leaves)} active")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- DOT


def _dot_text(text: str) -> str:
    """A double-quoted DOT string (backslashes and quotes escaped, one line)."""
    one_line = " ".join(text.split())
    return '"' + one_line.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _anchor(state_id: str) -> str:
    return _dot_text(f"{state_id}::anchor")


def _cluster(state_id: str) -> str:
    return _dot_text(f"cluster_{state_id}")


def to_dot(workflow: Workflow, case: Case | None = None) -> str:
    """The workflow as Graphviz DOT; ``case``'s active states filled.

    Compound and parallel states are clusters; each region of a parallel state is a
    dashed cluster of its own. An edge into or out of a composite state ends at the
    cluster's border (``compound=true`` with ``lhead``/``ltail``).
    """
    active = _active(workflow, case)
    defs = workflow.state_defs
    lines = [
        f"digraph {_dot_text(workflow.name)} {{",
        "    compound=true;",
        "    rankdir=TB;",
        f"    label={_dot_text(workflow.label or workflow.name)};",
        "    labelloc=t;",
        '    fontname="Helvetica";',
        '    node [shape=box, style="rounded", fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
        '    "__start__" [shape=point, width=0.15, label=""];',
    ]
    if defs[workflow.initial].kind == "atomic":
        lines.append(f"    \"__start__\" -> {_dot_text(workflow.initial)};")
    else:
        lines.append(f"    \"__start__\" -> {_anchor(workflow.initial)} "
                     f"[lhead={_cluster(workflow.initial)}];")

    def node(sid: str, indent: str) -> None:
        d = defs[sid]
        attrs = [f"label={_dot_text(d.label or sid)}"]
        style = ["rounded"]
        if d.final:
            attrs.append("peripheries=2")
        if sid in active:
            style += ["filled", "bold"]
            attrs += [f'fillcolor="{ACTIVE_FILL}"', f'color="{ACTIVE_STROKE}"']
        attrs.append(f'style="{",".join(style)}"')
        if d.description:
            attrs.append(f"tooltip={_dot_text(d.description)}")
        lines.append(f"{indent}{_dot_text(sid)} [{', '.join(attrs)}];")

    def cluster(sid: str, indent: str, region: bool) -> None:
        d = defs[sid]
        lines.append(f"{indent}subgraph {_cluster(sid)} {{")
        inner = indent + "    "
        style = ["rounded"] + (["dashed"] if region else [])
        if sid in active:
            style.append("bold")
            lines.append(f'{inner}color="{ACTIVE_STROKE}";')
        kind = " (parallel)" if d.kind == "parallel" else ""
        lines.append(f"{inner}label={_dot_text((d.label or sid) + kind)};")
        lines.append(f'{inner}style="{",".join(style)}";')
        if d.kind == "compound":
            lines.append(f'{inner}{_anchor(sid)} [shape=point, width=0.12, label=""];')
            if d.initial is not None:
                target = (_anchor(d.initial) if defs[d.initial].kind != "atomic"
                          else _dot_text(d.initial))
                extra = (f" [lhead={_cluster(d.initial)}]" if defs[d.initial].kind != "atomic"
                         else "")
                lines.append(f"{inner}{_anchor(sid)} -> {target}{extra};")
        else:  # parallel: an invisible anchor for edges that enter or leave the whole state
            lines.append(f'{inner}{_anchor(sid)} [shape=point, style=invis, width=0.01, '
                         f'label=""];')
        for child in d.children:
            if defs[child].kind == "atomic":
                node(child, inner)
            else:
                cluster(child, inner, region=d.kind == "parallel")
        lines.append(f"{indent}}}")

    for sid in _top_level(workflow):
        if defs[sid].kind == "atomic":
            node(sid, "    ")
        else:
            cluster(sid, "    ", region=False)

    for t in workflow.transitions:
        src, dst = defs[t.source], defs[t.target]
        # one line each: the trigger, then who, the threshold, guards and deadline
        words = "\\n".join(_dot_text(w)[1:-1] for w in [t.trigger, *edge_words(workflow, t)])
        attrs = [f'label="{words}"']
        if t.label:
            attrs.append(f"tooltip={_dot_text(t.label)}")
        if src.kind != "atomic":
            attrs.append(f"ltail={_cluster(t.source)}")
        if dst.kind != "atomic":
            attrs.append(f"lhead={_cluster(t.target)}")
        if t.vote is not None:
            attrs.append('style="dashed"' if t.ballot != "yes" else 'style="solid"')
        a = _anchor(t.source) if src.kind != "atomic" else _dot_text(t.source)
        b = _anchor(t.target) if dst.kind != "atomic" else _dot_text(t.target)
        lines.append(f"    {a} -> {b} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- SVG


def to_svg(workflow: Workflow, case: Case | None = None) -> str:
    """The DOT diagram rendered to SVG text by Graphviz.

    Needs the ``diagrams`` extra (``pip install 'approvalflow[diagrams]'``, the
    ``graphviz`` Python package) and the Graphviz program ``dot``
    (``apt-get install graphviz``, ``brew install graphviz``).
    """
    source = to_dot(workflow, case)
    try:
        import graphviz
    except ImportError as e:
        raise MissingDependencyError(
            "format='svg' needs the 'graphviz' Python package: install the diagrams extra "
            "with pip install 'approvalflow[diagrams]' (and the Graphviz program 'dot'). "
            "format='mermaid' and format='dot' need nothing extra.") from e
    if shutil.which("dot") is None:
        raise MissingDependencyError(
            "format='svg' needs the Graphviz program 'dot', which is not on PATH: install "
            "Graphviz (apt-get install graphviz, brew install graphviz, or "
            "https://graphviz.org/download/). format='mermaid' and format='dot' need "
            "nothing extra.")
    try:
        svg: Any = graphviz.Source(source).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError) as e:
        raise MissingDependencyError(f"Graphviz could not render the diagram: {e}") from e
    return str(svg)


def render(workflow: Workflow, case: Case | None = None, *, format: str = "mermaid") -> str:
    """The diagram in ``format``: "mermaid" (default), "dot" or "svg"."""
    fmt = _check_format(format)
    if fmt == "mermaid":
        return to_mermaid(workflow, case)
    if fmt == "dot":
        return to_dot(workflow, case)
    return to_svg(workflow, case)
