"""Diagrams: Mermaid and DOT text for every bundled workflow, highlighting, escaping, SVG."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import approvalflow as af
from approvalflow.demo import build_demo
from approvalflow.errors import MissingDependencyError
from approvalflow.views.diagram import to_dot, to_mermaid

HAS_DOT = shutil.which("dot") is not None

TRICKY = textwrap.dedent('''
    [workflow]
    name = "tricky"
    version = 1
    initial = "3b-start"
    label = 'Quotes "here" & <there>'

    [actors]
    a = "A"

    [states.3b-start]
    label = 'Start; "quoted" {braces} # hash %% <script>alert(1)</script> back\\slash'

    [states.par]
    parallel = true
    label = "Parallel: two regions"

    [states.end]
    parent = "par"
    initial = "end-a"
    label = "end (a Mermaid keyword as id)"

    [states.end-a]
    parent = "end"
    label = "Region one, first"

    [states.end-b]
    parent = "end"
    label = "Region one, done"
    final = true

    [states.r2]
    parent = "par"
    initial = "r2_a"

    [states.r2_a]
    parent = "r2"

    [states.r2_b]
    parent = "r2"
    final = true

    [states.done]
    final = true

    [[transitions]]
    trigger = "go"
    source = "3b-start"
    target = "par"
    actors = ["a"]

    [[transitions]]
    trigger = "one"
    source = "end-a"
    target = "end-b"
    actors = ["a"]

    [[transitions]]
    trigger = "two"
    source = "r2_a"
    target = "r2_b"
    actors = ["a"]

    [[transitions]]
    trigger = "finish"
    source = "par"
    target = "done"
    actors = ["a"]
''')


@pytest.fixture
def tricky() -> af.Workflow:
    return af.loads_workflow(TRICKY, source="tricky.toml")


@pytest.fixture
def demo_case(store):
    return build_demo(store)


def _mermaid_ids(text: str) -> set[str]:
    return set(re.findall(r'state "[^"]*" as (\S+)', text))


@pytest.mark.parametrize("name", af.bundled_workflows())
def test_mermaid_declares_every_state_and_transition(name: str) -> None:
    """Every state is declared once with its label and every transition is an edge."""
    wf = af.load_workflow(name)
    text = to_mermaid(wf)
    assert text.startswith("stateDiagram-v2\n")
    ids = _mermaid_ids(text)
    assert len(ids) == len(wf.state_defs)
    assert text.count("-->") >= len(wf.transitions)
    for t in wf.transitions:
        assert f": {t.trigger} · " in text
    assert text.count("{") == text.count("}")


@pytest.mark.parametrize("name", af.bundled_workflows())
def test_dot_declares_every_state_and_transition(name: str) -> None:
    """Every leaf is a node, every composite a cluster, every transition an edge."""
    wf = af.load_workflow(name)
    text = to_dot(wf)
    for sid, d in wf.state_defs.items():
        if d.is_leaf:
            assert f'\n    {"    " * len(wf.ancestors(sid))}"{sid}" [' in text
        else:
            assert f'subgraph "cluster_{sid}"' in text
    assert len(re.findall(r"\[label=\"[^\"]+\"", text)) >= len(wf.transitions)


def test_mermaid_parallel_regions_are_separated(flagship: af.Workflow) -> None:
    """The approval stage's four regions sit in one composite state, split by three '--'."""
    text = to_mermaid(flagship)
    block = text.split('as s_approval {\n', 1)[1]
    depth, inner = 1, []
    for line in block.splitlines():
        depth += line.count("{") - line.count("}")
        if depth == 0:
            break
        inner.append(line)
    separators = [line for line in inner if line.strip() == "--"]
    assert len(separators) == len(flagship.regions("approval")) - 1 == 3
    for region in ("committee", "aab", "3b", "vibo"):
        assert any(f"as s_{region} {{" in line for line in inner)


def test_mermaid_ids_are_safe(tricky: af.Workflow) -> None:
    """Ids with '-', a leading digit or a Mermaid keyword are aliased to safe identifiers."""
    text = to_mermaid(tricky)
    ids = _mermaid_ids(text)
    assert all(re.fullmatch(r"s_[A-Za-z0-9_]+", i) for i in ids), ids
    assert "s_3b_start" in ids and "s_end_a" in ids and "s_end" in ids


def test_mermaid_escapes_labels(tricky: af.Workflow) -> None:
    """Quotes, semicolons, braces, '#', '%' and '<' in labels become Mermaid entity codes."""
    text = to_mermaid(tricky)
    line = next(x for x in text.splitlines() if x.strip().endswith("as s_3b_start"))
    label = line.split('state "', 1)[1].rsplit('" as', 1)[0]
    bare = re.sub(r"#\w+;", "", label)
    for raw in ('"', ";", "{", "}", "<", ">", "%", "#"):
        assert raw not in bare
    assert "#quot;quoted#quot;" in label and "#lt;script#gt;" in label


def test_dot_escapes_labels(tricky: af.Workflow) -> None:
    """Quotes and backslashes in DOT labels are escaped inside double-quoted strings."""
    text = to_dot(tricky)
    assert r'\"quoted\"' in text and "back\\\\slash" in text


@pytest.mark.skipif(not HAS_DOT, reason="the Graphviz program 'dot' is not installed")
def test_dot_with_hostile_labels_is_valid_graphviz(tricky: af.Workflow) -> None:
    """Graphviz itself accepts the DOT text of a workflow with hostile labels."""
    out = subprocess.run(["dot", "-Tsvg"], input=to_dot(tricky), capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "&lt;script&gt;" in out.stdout and "<script>" not in out.stdout


def test_mermaid_highlights_active_leaves(flagship: af.Workflow, demo_case: af.Case) -> None:
    """A case's active leaves get the 'active' class; others do not."""
    text = flagship.diagram(demo_case)
    assert "classDef active" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("class "))
    marked = set(line.split()[1].split(","))
    assert marked == {f"s_{s}" for s in demo_case.state}
    assert "s_draft" not in marked


def test_dot_highlights_active_states(flagship: af.Workflow, demo_case: af.Case) -> None:
    """A case's active leaves are filled; inactive leaves are not."""
    text = flagship.diagram(demo_case, format="dot")
    for sid in flagship.leaves:
        line = next(x for x in text.splitlines() if x.strip().startswith(f'"{sid}" ['))
        assert ("filled" in line) == (sid in demo_case.state), line
    assert "filled" not in flagship.diagram(format="dot")


def test_case_of_another_workflow_is_refused(demo_case: af.Case) -> None:
    """Highlighting a case on a diagram of another workflow raises InvalidInputError."""
    other = af.load_workflow("medfinansiering-restbeloeb")
    with pytest.raises(af.InvalidInputError, match="boligsocial-helhedsplan"):
        other.diagram(demo_case)


def test_unknown_format_is_refused(flagship: af.Workflow) -> None:
    """An unknown format names the ones allowed."""
    with pytest.raises(af.InvalidInputError, match="'mermaid', 'dot', 'svg'"):
        flagship.diagram(format="png")


@pytest.mark.skipif(not HAS_DOT, reason="the Graphviz program 'dot' is not installed")
def test_svg_renders_with_graphviz(flagship: af.Workflow, demo_case: af.Case) -> None:
    """With Graphviz installed, format='svg' returns an SVG holding the Danish labels."""
    pytest.importorskip("graphviz")
    svg = flagship.diagram(demo_case, format="svg")
    assert "<svg" in svg and "</svg>" in svg
    assert "Godkendt af udvalget" in svg and "Landsbyggefonden" in svg


def _run_svg(env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = prelude + textwrap.dedent("""
        import approvalflow as af
        try:
            af.load_workflow("boligsocial-helhedsplan").diagram(format="svg")
        except af.ApprovalflowError as e:
            print(type(e).__name__, isinstance(e, ImportError))
            print(e)
        else:
            print("rendered")
    """)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=False)


def test_svg_without_dot_program_names_graphviz(tmp_path) -> None:
    """With 'dot' off PATH, format='svg' raises MissingDependencyError naming Graphviz."""
    env = {**os.environ, "PATH": str(tmp_path)}
    out = _run_svg(env)
    assert out.returncode == 0, out.stderr
    first, message = out.stdout.split("\n", 1)
    assert first == "MissingDependencyError True"
    assert "Graphviz" in message and "'dot'" in message


def test_svg_without_graphviz_package_names_the_extra() -> None:
    """Without the graphviz package, format='svg' names the 'diagrams' extra."""
    out = _run_svg(dict(os.environ), prelude="import sys; sys.modules['graphviz'] = None\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MissingDependencyError True")
    assert "approvalflow[diagrams]" in out.stdout


def test_missing_dependency_error_is_an_approvalflow_error() -> None:
    """MissingDependencyError is caught by ApprovalflowError and by ImportError."""
    assert issubclass(MissingDependencyError, af.ApprovalflowError)
    assert issubclass(MissingDependencyError, ImportError)


def test_edges_say_who_the_threshold_guards_and_deadline() -> None:
    """Mermaid and DOT edges name the actors, a vote's threshold, guards and deadlines."""
    wf = af.load_workflow("boligsocial-helhedsplan")
    mermaid, dot = wf.diagram(), wf.diagram(format="dot")
    send = next(t for t in wf.transitions if t.trigger == "send_to_lbf")
    assert f"send_to_lbf · by {', '.join(send.actors)} · if {', '.join(send.guards)}" in mermaid
    assert f"send_to_lbf\\nby {', '.join(send.actors)}\\nif {', '.join(send.guards)}" in dot
    vibo = wf.votes["vibo"]
    need = "all" if vibo.need is None else str(vibo.need)
    assert f"vibo.approve · a yes in vote vibo (passes with {need} " in mermaid
    due = next(t for t in wf.transitions if t.deadline is not None)
    assert f"due {due.deadline.describe()}" in dot


def test_custom_workflow_edges_show_two_of_three() -> None:
    """A 2-of-3 vote on a small workflow is drawn as 'passes with 2 of 3 yes'."""
    wf = af.loads_workflow(_TWO_OF_THREE)
    assert "a yes in vote panel (passes with 2 of 3 yes)" in wf.diagram()
    assert "by clerk" in wf.diagram(format="dot")


_TWO_OF_THREE = """
[workflow]
name = "panel"
version = 1
initial = "voting"
[actors]
clerk = "Clerk"
a = "A"
b = "B"
c = "C"
[states.voting]
[states.passed]
final = true
[states.closed]
final = true
[votes.panel]
state = "voting"
voters = ["a", "b", "c"]
need = 2
[[transitions]]
trigger = "yes"
source = "voting"
target = "passed"
vote = "panel"
[[transitions]]
trigger = "close"
source = "voting"
target = "closed"
actors = ["clerk"]
"""
