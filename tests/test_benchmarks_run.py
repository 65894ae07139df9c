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
        # the server's CPU time during the run, read from INFO cpu, spread over acquisitions
        assert row["redis_cpu_us_per_acquisition"] > 0


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
    # memgang's write row and its reference (write.lua by a bare client), sync and asyncio,
    # each with every event received (a missed one raises in the benchmark)
    paths = {(r["flavour"], r["path"]): r["samples"] for r in report["latency"]}
    for flavour in ("sync", "asyncio"):
        for path in ("memgang write() -> handler", "write.lua by a bare client -> receive"):
            assert paths[(flavour, path)] == 300


def test_demo_benchmark_counts_are_exact() -> None:
    doc = bench("demo", "--rounds", "1", "--latency-ms", "0", "--agents", "2")
    for run in doc["runs"]:
        assert run["targets"]["counts_exact"]
        shared = next(m for m in run["modes"] if m["mode"] == "shared")
        assert shared["summarizer_calls"] == run["chunks"]["distinct_chunks"]


def test_lock_rounds_show_the_median_round_and_count_every_violation() -> None:
    from benchmarks._harness import Row, combine_rounds

    def run(acq_per_s: float, x_floor: float, violations: int = 0, wait: float = 1.0) -> Row:
        return Row("memgang-write", "getset", "processes", 16, 2.0, False, acq_per_s=acq_per_s,
                   x_floor=x_floor, overlaps=violations, violations=violations,
                   wait_p99_ms=wait)

    row = combine_rounds([run(3000, 0.9, wait=3.0), run(1000, 0.5, violations=1, wait=9.0),
                          run(2000, 0.7, wait=5.0)])
    assert row.acq_per_s == 2000 and row.wait_p99_ms == 5.0  # one real run: the median one
    assert row.x_floor == 0.7 and row.rounds_x_floor == [0.9, 0.5, 0.7]
    assert row.rounds_acq_per_s == [3000, 1000, 2000]
    assert row.violations == 1 and row.overlaps == 1  # the slow round's violation is kept
    # the ratio is the median of the rounds' own ratios, not a ratio of medians
    assert combine_rounds([run(3000, 0.6), run(1000, 0.9), run(2000, 0.8)]).x_floor == 0.8

    failed = Row("memgang-write", "getset", "processes", 16, 2.0, False, status="error",
                 note="error: boom")
    combined = combine_rounds([run(3000, 0.9), failed, run(2000, 0.7)])
    assert combined.status == "error" and "boom" in combined.note and "3 rounds" in combined.note
