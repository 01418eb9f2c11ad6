"""The benchmark harness keeps working: ``benchmarks/run.py --quick`` runs end to end.

No timing is asserted here (shared machines are noisy): only that the run finishes,
writes JSON, and reports every benchmark with the figures docs/performance.md cites.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"fire_full", "fire_normal", "bulk_import", "load_case", "verify", "cli",
        "peer_eventsourcing_full", "peer_eventsourcing_normal", "engine_vs_transitions",
        "migrate", "concurrent_ballots", "queries", "tick", "explore"}
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
    assert bench["tick"]["due"] == bench["tick"]["cases"] // 100
    assert bench["tick"]["timer_rows"] == bench["tick"]["cases"]
    walks = bench["explore"]["workflows"]
    assert set(walks) == {"boligsocial-helhedsplan", "medfinansiering-restbeloeb"}
    assert (walks["boligsocial-helhedsplan"]["configurations"],
            walks["boligsocial-helhedsplan"]["steps"]) == (8_606, 58_107)
    assert all(w["ok"] for w in walks.values()), walks
    assert walks["boligsocial-helhedsplan"]["first_cpu_s"] > 0
    assert "| explore boligsocial-helhedsplan v3, 8,606 configurations" in done.stdout
    for question in ("inbox", "due", "cases_filtered"):
        assert bench["queries"][question]["ratio"] > 0, question
    # The peer runs whenever it is importable here (the bench extra); only then may it be
    # skipped, and only for that reason: a peer that is installed but skipped, or a skip
    # for any other reason, fails.
    peer_installed = importlib.util.find_spec("eventsourcing") is not None
    for key, durability in (("peer_eventsourcing_full", "full"),
                            ("peer_eventsourcing_normal", "normal")):
        if peer_installed:
            assert "skipped" not in bench[key], (key, bench[key])
            assert bench[key]["durability"] == durability
            assert bench[key]["ratio"] > 0, key
            assert bench[key]["eventsourcing_synchronous"] == durability.upper(), key
        else:
            assert bench[key] == {"skipped": "eventsourcing is not installed "
                                             "(pip install '.[bench]')",
                                  "seconds": bench[key]["seconds"]}, key
            assert f"| {key} " in done.stdout, key  # the table says it was skipped, and why
    assert not any(tmp_path.glob("approvalflow-bench-*")), "scratch databases were left"
