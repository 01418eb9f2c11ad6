"""The package's imports point one way: cli -> views -> model, with named seams only.

Every module under src/approvalflow is parsed with ``ast``; every import it makes is an
edge of the graph: module-level and function-level ones, relative ones resolved, and the
names a package's lazy ``_EXPORTS`` map imports on first use. Imports inside
``if TYPE_CHECKING:`` never run, so they are left out of the cycle check (they count for
the layering check). The only edges allowed to close a cycle, or to reach from the model
up to the views, are the seams listed in ``SEAMS``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "approvalflow"

#: The edges that go upward, each the one way its class or module reaches above itself,
#: through a single function-level import.
SEAMS: dict[tuple[str, str], str] = {
    ("approvalflow.definition", "approvalflow.views"):
        "Workflow.diagram and Workflow._repr_html_ draw the workflow (definition._views)",
    ("approvalflow.definition", "approvalflow.explore"):
        "Workflow.explore walks the workflow on the engine (definition._explore)",
    ("approvalflow.case", "approvalflow.views"):
        "Case.history_table, history_frame, _repr_html_ and timeline (case._views)",
    ("approvalflow.store", "approvalflow.views"):
        "Store.timeline and Store.events_frame (store._views)",
    ("approvalflow.store", "approvalflow.store.importing"):
        "Store.import_events loads the batched importer when asked; the importer uses "
        "the package's check_case_id",
    ("approvalflow.store.queries", "approvalflow.store"):
        "find_cases builds the package's CaseSummary rows (imported in the function)",
}

#: The model: what the views and the command line stand on.
MODEL = ("errors", "canonical", "records", "files", "definition", "validation", "loading", "guards",
         "rules", "engine", "case", "replay", "versioning", "invariants", "forecast", "store")


@attrs.frozen
class Import:
    source: str
    target: str
    in_function: bool
    type_only: bool
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every import ``name`` makes of a module of the package, resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(base: str, names: list[str]) -> list[str]:
        found = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
        if len(found) < len(names) and base in modules:  # a name defined in base itself
            found.append(base)
        return found

    def walk(node: ast.AST, in_function: bool, type_only: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names if a.name in modules]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                targets = resolve(base, [a.name for a in child.names])
            elif (isinstance(child, ast.Assign) and not in_function
                  and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in child.targets)
                  and isinstance(child.value, ast.Dict)):
                lazy = {v.value for v in child.value.values
                        if isinstance(v, ast.Constant) and isinstance(v.value, str)}
                targets = [f"{name}.{m}" for m in sorted(lazy)]
                assert all(t in modules for t in targets), (name, targets)
            for target in targets:
                yield Import(name, target, in_function, type_only, child.lineno)
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for inner in child.body:
                    yield from walk(ast.Module(body=[inner], type_ignores=[]), in_function, True)
                for inner in child.orelse:
                    yield from walk(ast.Module(body=[inner], type_ignores=[]), in_function,
                                    type_only)
            else:
                yield from walk(child, in_function or isinstance(
                    child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda), type_only)

    yield from walk(tree, False, False)


def _all_imports() -> list[Import]:
    modules = _modules()
    return [i for name, path in modules.items() for i in _imports(name, path, modules)
            if i.source != i.target]


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _is_model(module: str) -> bool:
    return any(module == f"{PACKAGE}.{m}" or module.startswith(f"{PACKAGE}.{m}.")
               for m in MODEL)


def _is_above_model(module: str) -> bool:
    return any(module == f"{PACKAGE}.{m}" or module.startswith(f"{PACKAGE}.{m}.")
               for m in ("views", "cli"))


def test_the_parser_sees_function_level_and_relative_imports() -> None:
    """The graph has the edges it must: a function-level seam, a relative one, a lazy map's."""
    edges = {(i.source, i.target): i for i in _all_imports()}
    assert edges[("approvalflow.case", "approvalflow.views")].in_function
    assert ("approvalflow.views.html", "approvalflow.views.summary") in edges
    assert ("approvalflow.store", "approvalflow.loading") in edges
    assert ("approvalflow.views", "approvalflow.views.timeline") in edges
    assert ("approvalflow.cli", "approvalflow.views.summary") in edges


def test_the_imports_have_no_cycle_but_the_named_seams() -> None:
    """Without the seams the package's run-time import graph has no cycle."""
    edges = {(i.source, i.target) for i in _all_imports() if not i.type_only}
    missing = sorted(set(SEAMS) - edges)
    assert missing == [], f"seams listed but no longer in the code (remove them): {missing}"
    cycles = _cycles(edges - set(SEAMS))
    assert cycles == [], f"import cycles: {cycles}"


def test_the_model_reaches_up_only_through_its_seams() -> None:
    """No model module imports the views or the CLI (type-only imports included) but
    through a seam, and each seam is one function-level import in its module."""
    imports = _all_imports()
    upward = [i for i in imports if _is_model(i.source) and _is_above_model(i.target)
              and (i.source, i.target) not in SEAMS]
    assert upward == [], f"the model imports the views or the CLI: {upward}"
    for source, target in SEAMS:
        at_run_time = [i for i in imports
                       if (i.source, i.target) == (source, target) and not i.type_only]
        assert len(at_run_time) == 1 and at_run_time[0].in_function, (
            f"{source} -> {target} must be one function-level import, not {at_run_time}")


def test_the_views_never_import_the_cli() -> None:
    """The views sit below the command line: no module under views imports cli."""
    imports = _all_imports()
    assert any(i.source.startswith("approvalflow.views") for i in imports)
    wrong = [i for i in imports if i.source.startswith("approvalflow.views")
             and i.target == "approvalflow.cli"]
    assert wrong == []


def test_the_guard_registry_imports_no_guards() -> None:
    """guards.py is the registry alone: rules and plugins import it, never the reverse."""
    targets = {i.target for i in _all_imports() if i.source == "approvalflow.guards"}
    assert targets == {"approvalflow.errors"}
    assert ("approvalflow.rules", "approvalflow.guards") in {
        (i.source, i.target) for i in _all_imports()}
