"""Figures the reliability tests measure, and the script that puts them in docs/reliability.md.

The tests record what they did (kill rounds survived, processes and events written,
inputs tried) with the ``figures`` fixture into one JSON file: the path in
``APPROVALFLOW_FIGURES``, or ``reliability-figures.json`` in pytest's temporary folder.
After a run, copy them into the docs' table:

    APPROVALFLOW_FIGURES=/tmp/figures.json pytest tests/test_concurrency.py \\
        tests/test_crash.py tests/test_hostile.py tests/test_tamper.py tests/test_migration.py
    python tests/figures.py /tmp/figures.json docs/reliability.md

Only numbers a test wrote reach the table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ENV = "APPROVALFLOW_FIGURES"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def figures_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get(ENV)
    return Path(env) if env else tmp_path_factory.getbasetemp() / "reliability-figures.json"


def record(path: Path, name: str, value: int, what: str) -> None:
    """Merge one figure into the JSON file (tests run one at a time, so no lock)."""
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = {"value": value, "what": what,
                  "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int, str], None]:
    """``figures(name, value, what)`` records a figure of this run."""
    path = figures_path(tmp_path_factory)
    return lambda name, value, what: record(path, name, value, what)


def table(data: dict[str, Any]) -> str:
    lines = ["| figure | value | what it counts |", "|---|---:|---|"]
    for name in sorted(data):
        item = data[name]
        lines.append(f"| `{name}` | {item['value']:,} | {item['what']} |")
    stamps = sorted({(d["at"][:10], d["python"], d["sqlite"]) for d in data.values()})
    lines.append("")
    lines.append("Recorded " + "; ".join(f"{day} (Python {py}, SQLite {sq})"
                                         for day, py, sq in stamps) + ".")
    return "\n".join(lines)


def rewrite(doc: Path, data: dict[str, Any]) -> None:
    text = doc.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{doc} has no {START} ... {END} block")
    doc.write_text(pattern.sub(lambda _: f"{START}\n{table(data)}\n{END}", text))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tests/figures.py FIGURES.json docs/reliability.md")
    rewrite(Path(sys.argv[2]), json.loads(Path(sys.argv[1]).read_text()))
