"""The benchmark harness keeps working: ``benchmarks/run.py --quick`` runs end to end.

No timing is asserted here (shared machines are noisy): only that the run finishes,
writes JSON, and reports every benchmark with the figures docs/performance.md cites.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"fire_full", "fire_normal", "bulk_import", "load_case", "verify", "cli",
        "peer_eventsourcing_full", "peer_eventsourcing_normal", "engine_vs_transitions",
        "migrate", "concurrent_ballots", "queries"}
RATIO_KEYS = {"fire_full", "fire_normal", "bulk_import", "verify", "cli",
              "engine_vs_transitions", "concurrent_ballots", "queries"}


def test_quick_run_writes_every_benchmark(tmp_path: Path) -> None:
    """--quick exits 0, prints the table and writes JSON with every benchmark and its ratio."""
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
         "--tmp", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| benchmark" in done.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["mode"] == "quick"
    bench = results["benchmarks"]
    assert set(bench) == KEYS
    for key in RATIO_KEYS:
        assert bench[key]["ratio"] > 0, key
    assert bench["load_case"]["growth"] > 0
    assert bench["cli"]["show_exit_code"] == 0, bench["cli"]["show_error"]
    assert bench["bulk_import"]["events"] == bench["bulk_import"]["cases"] * 10
    ballots = bench["concurrent_ballots"]
    assert ballots["all_stored"] and ballots["verified"], ballots
    assert ballots["ballots_stored"] == ballots["ballots"] == 8 * ballots["cases"]
    for key in ("peer_eventsourcing_full", "peer_eventsourcing_normal"):
        assert "ratio" in bench[key] or "skipped" in bench[key], key
    for question in ("inbox", "due", "cases_filtered"):
        assert bench["queries"][question]["ratio"] > 0, question
    assert not any(tmp_path.glob("approvalflow-bench-*")), "scratch databases were left"
