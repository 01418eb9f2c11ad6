"""Plant known bugs in a copy of approvalflow, one at a time, and show which tests catch each.

    .venv/bin/python tests/mutation_check.py               # every bug (several minutes)
    .venv/bin/python tests/mutation_check.py vote-twice    # the named ones only
    .venv/bin/python tests/mutation_check.py --list

The source tree is copied to a temporary folder; each bug is one exact text replacement
in one file of the copy (refused unless the text occurs exactly once, so a refactoring
that moves the code makes this script say so instead of silently testing nothing). The
whole suite then runs against the copy (``PYTHONPATH`` points at it, so test processes,
spawned writers and the console script all import the mutated package) with the
Hypothesis "mutation" profile: the CI profile's fixed examples, without shrinking. A
first run with no bug planted gives the tests that fail anyway; they are left out of
every bug's list.

The table printed at the end says, for each bug, the tests that fail (file::name) and
whether a test other than the unit tests of the function itself catches it: every bug
should be caught by the property, store, concurrency or attack tests too, not only by
the one test written next to the code. This file is not collected by pytest (its name
does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    path: str  # relative to the repository
    old: str  # must occur exactly once in the file
    new: str
    unit: tuple[str, ...]  # test ids (or their prefixes) that unit-test the function itself


ENGINE_UNIT = ("tests/test_engine.py::",)
MUTANTS = (
    Mutant("vote-twice", "a voter may vote twice in one round",
           "src/approvalflow/engine.py",
           "            elif cast is not None:\n", "            elif False:\n", ENGINE_UNIT),
    Mutant("join-pending", "a join fires while a region is still pending",
           "src/approvalflow/engine.py",
           "            if waiting:\n", "            if False:\n", ENGINE_UNIT),
    Mutant("guard-none", "a guard returning None lets the step through",
           "src/approvalflow/guards.py",
           "    if result is None:\n        return [", "    if result is None:\n"
           "        return []\n        return [", ENGINE_UNIT),
    Mutant("json-unsorted", "canonical JSON without key sorting",
           "src/approvalflow/canonical.py",
           "json.dumps(value, sort_keys=True,", "json.dumps(value, sort_keys=False,",
           ("tests/test_pinned.py::test_canonical_json_of_nested_data_is_one_fixed_text",)),
    Mutant("actor-check", "anyone who is an actor of the workflow may take any step",
           "src/approvalflow/engine.py",
           "        if actor in wf.actors and actor not in permitted:\n",
           "        if False:\n", ENGINE_UNIT),
    Mutant("date-backwards", "a step may be dated before the case's last event",
           "src/approvalflow/engine.py",
           "        if state.last_on is not None and on < state.last_on:\n",
           "        if False:\n", ENGINE_UNIT),
    Mutant("withdrawn-votes", "a voter who withdrew may vote again",
           "src/approvalflow/engine.py",
           "            if actor in state.withdrawn.get(vg.id, frozenset()):\n",
           "            if False:\n", ENGINE_UNIT),
    Mutant("verify-hash", "verify no longer compares an event's content with its hash",
           "src/approvalflow/store/verification.py",
           "        if selected_hash(r) != digest:\n", "        if False:\n",
           ("tests/test_store.py::test_verify",)),
    Mutant("memo-date", "a decision remembered on the last event's date is reused for an "
           "earlier date", "src/approvalflow/engine.py",
           "        if on != last and (self.timed or on < last):\n",
           "        if on != last and self.timed:\n", ENGINE_UNIT),
    Mutant("join-not-done", "a join ignores a region outside its quorum that ended not done",
           "src/approvalflow/engine.py",
           "                   and self.region_outcome(r, config) == \"not done\"]",
           "                   and False]", ENGINE_UNIT),
    Mutant("not-by-untaken", "four eyes stops at the first named step not taken yet",
           "src/approvalflow/engine.py",
           "                continue  # not taken (yet) in this case: nothing to compare with\n",
           "                return  # not taken (yet) in this case: nothing to compare with\n",
           ENGINE_UNIT),
    Mutant("creation-source", "verify accepts a creation recorded as leaving a state",
           "src/approvalflow/replay.py", "    if first.source:\n", "    if False:\n",
           ("tests/test_store.py::test_verify",)),
    Mutant("creation-data", "verify accepts a creation with data its workflow does not take",
           "src/approvalflow/replay.py",
           "    for reason in engine.creation_reasons(first.data):\n",
           "    for reason in []:\n",
           ("tests/test_store.py::test_verify",)),
)

IGNORE = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis",
                                ".mypy_cache", ".ruff_cache", "*.db-wal", "*.db-shm")


def plant(tree: Path, mutant: Mutant) -> None:
    path = tree / mutant.path
    text = path.read_text(encoding="utf-8")
    found = text.count(mutant.old)
    if found != 1:
        raise SystemExit(f"{mutant.name}: the text to replace occurs {found} times in "
                         f"{mutant.path}, not once; update MUTANTS in {Path(__file__).name}.")
    path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


def check_all_plantable(tree: Path = ROOT) -> list[str]:
    """Problems with MUTANTS against ``tree`` (each text must occur exactly once)."""
    problems = []
    for m in MUTANTS:
        found = (tree / m.path).read_text(encoding="utf-8").count(m.old)
        if found != 1:
            problems.append(f"{m.name}: {found} occurrences in {m.path}")
    return problems


def environment(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), str(tree),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    env["APPROVALFLOW_HYPOTHESIS_PROFILE"] = "mutation"
    env.pop("APPROVALFLOW_FIGURES", None)  # don't touch the figures of a real run
    return env


def run_suite(tree: Path, extra: list[str]) -> tuple[set[str], str, float]:
    """Run pytest in ``tree``: the ids of failing tests, the summary line, the seconds."""
    env = environment(tree)
    where = subprocess.run(
        [sys.executable, "-c", "import approvalflow; print(approvalflow.__file__)"],
        env=env, cwd=tree, capture_output=True, text=True, check=True)
    if not where.stdout.strip().startswith(str(tree)):
        raise SystemExit(f"the copy is not the package imported: {where.stdout.strip()}")
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rfE", "-o", "addopts=", *extra], env=env, cwd=tree,
                          capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - t0
    # "FAILED tests/x.py::name[param with spaces] - message": the id ends at " - "
    failed = {line.split(" ", 1)[1].split(" - ", 1)[0].strip()
              for line in done.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))}
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    summary = lines[-1].strip("= ") if lines else f"(no output; exit {done.returncode})"
    if done.returncode not in (0, 1):  # 1: tests failed; anything else: pytest itself broke
        raise SystemExit(f"pytest exited {done.returncode}:\n{done.stdout[-3000:]}"
                         f"{done.stderr[-3000:]}")
    return failed, summary, seconds


#: Tests left out of every bug's list: this check's own test fails whenever a bug is
#: planted (the text it looks for has been replaced), which says nothing about the bug.
SELF_TEST = "tests/test_suite_setup.py::test_every_planted_bug_still_matches_the_source"


def is_unit(test_id: str, mutant: Mutant) -> bool:
    return any(test_id.startswith(u) for u in mutant.unit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="bugs to plant (default: all)")
    parser.add_argument("--list", action="store_true", help="list the bugs and stop")
    parser.add_argument("--pytest", default="", help="extra pytest arguments, one string")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:16} {m.bug} ({m.path})")
        return 0
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"unknown bugs {sorted(unknown)}; --list shows them")
    extra = shlex.split(args.pytest)
    rows = []
    with tempfile.TemporaryDirectory(prefix="approvalflow-mutation-") as tmp:
        clean = Path(tmp) / "clean"
        shutil.copytree(ROOT, clean, ignore=IGNORE)
        baseline, summary, seconds = run_suite(clean, extra)
        print(f"no bug planted: {summary} ({seconds:.0f} s); failing anyway: "
              f"{sorted(baseline) or 'none'}", flush=True)
        for m in chosen:
            tree = Path(tmp) / m.name
            shutil.copytree(clean, tree, ignore=IGNORE)
            plant(tree, m)
            failed, summary, seconds = run_suite(tree, extra)
            caught = sorted(failed - baseline - {SELF_TEST})
            others = [t for t in caught if not is_unit(t, m)]
            rows.append((m, caught, others))
            print(f"{m.name}: {summary} ({seconds:.0f} s); {len(caught)} tests catch it, "
                  f"{len(others)} of them not its unit tests", flush=True)
            shutil.rmtree(tree, ignore_errors=True)
    print()
    print("| bug | tests that fail | caught by a test other than its unit tests |")
    print("|---|---|---|")
    for m, caught, others in rows:
        names = "<br>".join(f"`{t}`" for t in caught) or "**none: the bug survives**"
        print(f"| {m.bug} (`{m.name}`) | {names} | {'yes' if others else '**no**'} |")
    if baseline:
        print(f"\nFailing with no bug planted (left out above): "
              f"{', '.join(f'`{t}`' for t in sorted(baseline))}")
    return 0 if all(others for _, _, others in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
