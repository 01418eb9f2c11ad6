"""The docs cannot rot: every python block in README.md and docs/*.md runs, the API is covered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow import guards

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's python blocks run in order, in one namespace, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    before = set(guards.registered_guards())
    try:
        for line, code in python_blocks(page):
            where = f"{page.relative_to(ROOT)}:{line}"
            try:
                exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the docs' code
            except Exception as e:  # report the page and line, not this test's frame
                pytest.fail(f"the python block at {where} raised {type(e).__name__}: {e}")
    finally:  # guards a page registers must not leak into other tests
        for name in set(guards.registered_guards()) - before:
            guards.unregister_guard(name)


def test_the_pages_with_examples_have_python_blocks() -> None:
    """The tutorial, the API page and the README each carry runnable examples."""
    for name in ("README.md", "docs/tutorial.md", "docs/api.md", "docs/workflow-files.md",
                 "docs/concepts.md"):
        assert python_blocks(ROOT / name), f"{name} has no ```python block"


def test_api_page_names_every_public_name() -> None:
    """docs/api.md mentions every name in approvalflow.__all__, and the main methods."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [n for n in af.__all__ if f"`{n}" not in text and f"{n}(" not in text]
    assert not missing, f"docs/api.md does not mention {missing}"
    methods = {
        af.Case: ["fire", "why_not", "allowed", "awaiting", "regions", "decisions", "ballots",
                  "history_table", "history_frame"],
        af.Store: ["create_case", "case", "cases", "events", "verify", "heads", "bulk",
                   "events_frame"],
        af.Workflow: ["diagram", "state", "label_of", "regions"],
    }
    for cls, names in methods.items():
        for name in names:
            assert hasattr(cls, name), f"{cls.__name__}.{name} is gone; update the test"
            assert f".{name}(" in text or f"`{name}(" in text, \
                f"docs/api.md does not document {cls.__name__}.{name}"


def test_every_page_is_linked_from_the_index() -> None:
    """docs/index.md links every page in docs/, so none is an orphan."""
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"


def test_workflow_file_reference_names_every_key() -> None:
    """docs/workflow-files.md documents every key the loader accepts."""
    from approvalflow import definition as d

    text = (ROOT / "docs" / "workflow-files.md").read_text(encoding="utf-8")
    keys = {"[workflow]": d.WORKFLOW_KEYS, "[states.ID]": d.STATE_KEYS,
            "[votes.ID]": d.VOTE_KEYS, "[[transitions]]": d.TRANSITION_KEYS}
    for table, allowed in keys.items():
        for key in allowed:
            assert f"`{key}`" in text, f"docs/workflow-files.md does not document {table} {key}"
    assert "[actors]" in text
