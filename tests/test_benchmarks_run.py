"""Every benchmark still runs (smallest configuration) and its correctness columns hold.

Only what must be true on any machine is asserted: exit status, the document's shape, zero
mutual-exclusion violations, zero lost or duplicated events, exact summarizer counts. The
speed figures are the benchmarks' business (make bench), never a test's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent


def bench(module: str, *args: str) -> Any:
    run = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--json", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return orjson.loads(run.stdout)


def test_throughput_benchmark_runs() -> None:
    rows = bench("throughput", "--seconds", "0.1", "--rounds", "1", "--clients", "1")
    assert {r["op"] for r in rows} == {"write", "read", "write_many"}
    assert all(r["memgang_ops_s"] > 0 and r["raw_ops_s"] > 0 for r in rows)


def test_lock_benchmark_runs_with_no_violations() -> None:
    rows = bench("locks", "--seconds", "0.2", "--workers", "2", "--tasks", "4", "--hold",
                 "getset", "--impl", "memgang-write,memgang-exclusive,memgang-read")
    assert {r["impl"] for r in rows} == {"floor", "memgang-write", "memgang-exclusive",
                                         "memgang-read"}
    for row in rows:
        assert row["status"] == "ok", row["note"]
        assert row["violations"] == 0 and row["lost_updates"] == 0
        assert row["acquisitions"] > 0


def test_lock_scripts_reference_row_hands_the_lock_over_without_overlap() -> None:
    rows = bench("locks", "--seconds", "0.3", "--workers", "4", "--tasks", "0", "--hold",
                 "getset", "--impl", "lua-write(bare)")
    (row,) = [r for r in rows if r["impl"] == "lua-write(bare)"]
    assert row["status"] == "ok", row["note"]
    assert row["violations"] == 0 and row["lost_updates"] == 0
    assert row["min_per_worker"] > 0  # every worker was granted: queued ones were woken


def test_events_benchmark_loses_nothing_under_client_kill() -> None:
    report = bench("events", "--quick")
    faults = report["faults"]
    assert faults["delivered"] == faults["events"] > 0 and faults["kills"] > 0
    assert faults["lost"] == faults["duplicated"] == faults["out_of_order"] == 0


def test_demo_benchmark_counts_are_exact() -> None:
    doc = bench("demo", "--rounds", "1", "--latency-ms", "0", "--agents", "2")
    for run in doc["runs"]:
        assert run["targets"]["counts_exact"]
        shared = next(m for m in run["modes"] if m["mode"] == "shared")
        assert shared["summarizer_calls"] == run["chunks"]["distinct_chunks"]
