"""benchmarks/charts.py turns the benchmarks' --json output into PNGs (run as `make bench`
runs it: ``python -m benchmarks.charts`` from the repository root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib", reason="charts need the bench extra: pip install -e '.[dev]'")


def charts(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks.charts", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def lock_row(impl: str, hold: str, mode: str, workers: int, acq: float, p99: float,
             **extra: Any) -> dict[str, Any]:
    return {"impl": impl, "hold": hold, "mode": mode, "workers": workers, "seconds": 1.0,
            "readers_only": False, "status": "ok", "acq_per_s": acq, "wait_p99_ms": p99,
            **extra}


def test_lock_benchmark_json_becomes_a_png(tmp_path: Path) -> None:
    rows = [lock_row(impl, hold, "processes", w, 1000.0 * w / (i + 1), 0.2 * w * (i + 1))
            for i, impl in enumerate(("floor", "memgang-write", "python-redis-lock"))
            for hold in ("empty", "getset") for w in (1, 2, 4)]
    rows.append(lock_row("pottery", "empty", "processes", 1, 0, 0, status="skipped",
                         note="not installed", a_field_from_the_future=1))
    source = tmp_path / "locks.json"
    source.write_text(json.dumps(rows))

    result = charts("--locks", str(source), "--out", str(tmp_path / "img"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "img" / "locks.png"
    assert result.stdout.strip() == str(out)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_unusable_input_fails_naming_the_file(tmp_path: Path) -> None:
    source = tmp_path / "locks.json"
    source.write_text(json.dumps([lock_row("floor", "empty", "processes", 1, 0, 0,
                                           status="error")]))
    result = charts("--locks", str(source), "--out", str(tmp_path))
    assert result.returncode == 1
    assert "locks" in result.stderr and "no successful rows" in result.stderr
    assert not (tmp_path / "locks.png").exists()
    assert charts("--out", str(tmp_path)).returncode == 2  # nothing to draw: usage


def demo_doc(agents: int, shared_calls: int, solo_calls: int) -> dict[str, Any]:
    """Shaped like `memgang demo --json`."""
    return {
        "input": {"agents": agents, "jobs": 3, "summarizer": "local"},
        "modes": [
            {"mode": "shared", "share": True, "summarizer_calls": shared_calls, "wall_s": 0.7,
             "hits": 66},
            {"mode": "no-share", "share": False, "summarizer_calls": solo_calls,
             "wall_s": 1.9, "hits": 0},
        ],
        "ratios": {"summarizer_calls": shared_calls / solo_calls},
    }


@pytest.mark.parametrize("shape", ["one run", "a list of runs", "runs in a document"])
def test_demo_json_becomes_a_png(tmp_path: Path, shape: str) -> None:
    runs = [demo_doc(2, 40, 103), demo_doc(4, 37, 103)]
    data: Any = {"one run": runs[0], "a list of runs": runs,
                 "runs in a document": {"runs": runs}}[shape]
    from benchmarks.charts import demo_chart

    out = demo_chart(json.loads(json.dumps(data)), tmp_path / "demo.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_demo_runs_are_labelled_by_what_differs_between_them() -> None:
    from benchmarks.charts import demo_runs

    one, two = demo_runs([demo_doc(2, 40, 103), demo_doc(4, 37, 103)])
    assert (one.label, two.label) == ("agents=2", "agents=4")
    assert one.calls == {"shared": 40, "no-share": 103}
    assert two.wall_s == {"shared": 0.7, "no-share": 1.9}
    (single,) = demo_runs(demo_doc(4, 37, 103))
    assert single.label == ""
    with pytest.raises(ValueError, match="no runs with modes"):
        demo_runs({"input": {}})
