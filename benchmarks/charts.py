"""Pictures from the benchmarks' ``--json`` output, for the README (matplotlib, bench extra).

    python -m benchmarks.charts [--locks locks.json] [--demo demo.json] [--out docs/img]

- ``--locks``: the output of ``python -m benchmarks.locks --json``. Drawn by the lock
  benchmark's own ``write_chart`` (the one behind its ``--chart`` option): acquisitions/s
  and wait p99 against workers, one line per implementation. Written as ``locks.png``.
- ``--demo``: the output of ``python -m benchmarks.demo --json`` (or of one
  ``memgang demo --json``): summarizer calls and wall time, sharing memory against not
  sharing it, per configuration. Written as ``demo.png``.

Either may be ``-`` for standard input. Prints the paths it wrote. ``make bench`` runs the
benchmarks with ``--json`` into ``bench-results/`` and then this.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._harness import INSTALL_HINT, Row, write_chart

DEFAULT_OUT = Path("docs/img")


def _load(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return json.loads(text)


def lock_rows(data: Any) -> list[Row]:
    """The rows of ``benchmarks.locks --json`` (fields this version does not know are
    ignored, so an older chart script reads a newer benchmark's output)."""
    if not isinstance(data, list):
        raise ValueError("the lock benchmark's --json output is a list of rows")
    known = {f.name for f in dataclasses.fields(Row)}
    return [Row(**{k: v for k, v in row.items() if k in known}) for row in data]


def locks_chart(data: Any, path: Path) -> Path:
    rows = lock_rows(data)
    if not any(row.status == "ok" for row in rows):
        raise ValueError("no successful rows to draw in the lock benchmark's output")
    write_chart(rows, str(path))
    return path


@dataclass(frozen=True)
class DemoRun:
    """One configuration of the demo: summarizer calls and wall time, share and no-share."""

    label: str
    calls: dict[str, float]  # mode ("shared", "no-share") -> summarizer calls
    wall_s: dict[str, float]


def demo_runs(data: Any) -> list[DemoRun]:
    """The runs in the demo's JSON: one ``memgang demo --json`` document (``{"input": ...,
    "modes": [...]}``), a list of them, or ``{"runs": [...]}`` of them (the benchmark's
    configurations). Runs are labelled by the inputs that differ between them."""
    docs = data.get("runs", data) if isinstance(data, Mapping) else data
    docs = [docs] if isinstance(docs, Mapping) else docs
    if not isinstance(docs, list) or not docs or not all(
            isinstance(d, Mapping) and isinstance(d.get("modes"), list) for d in docs):
        raise ValueError("the demo's --json output has no runs with modes")
    inputs = [d.get("input") if isinstance(d.get("input"), Mapping) else {} for d in docs]
    varying = [k for k in dict.fromkeys(k for i in inputs for k in i)
               if len({json.dumps(i.get(k), sort_keys=True) for i in inputs}) > 1]
    runs = []
    for n, (doc, inp) in enumerate(zip(docs, inputs, strict=True)):
        label = ", ".join(f"{k}={inp.get(k)}" for k in varying) or (
            f"run {n + 1}" if len(docs) > 1 else "")
        calls: dict[str, float] = {}
        wall: dict[str, float] = {}
        for mode in doc["modes"]:
            if not isinstance(mode, Mapping):
                continue
            name = str(mode.get("mode") or ("shared" if mode.get("share") else "no-share"))
            calls[name] = float(mode.get("summarizer_calls", mode.get("calls")) or 0)
            wall[name] = float(mode.get("wall_s") or 0)
        if not calls:
            raise ValueError(f"run {n + 1} of the demo's output has no modes")
        runs.append(DemoRun(label, calls, wall))
    return runs


def demo_chart(data: Any, path: Path) -> Path:
    """Summarizer calls and wall time: share against no-share, side by side per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = demo_runs(data)
    modes = list(dict.fromkeys(m for run in runs for m in run.calls))
    colors = {m: ("#94a3b8" if "no" in m else "#0ea5e9") for m in modes}
    panels = (("summarizer calls", "calls"), ("wall time (s)", "wall_s"))
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.6 * len(runs) + 5), 3.8),
                             squeeze=False)
    width = 0.8 / len(modes)
    for ax, (title, attr) in zip(axes[0], panels, strict=True):
        for j, mode in enumerate(modes):
            xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(runs))]
            values = [getattr(run, attr).get(mode, 0.0) for run in runs]
            bars = ax.bar(xs, values, width, label=mode, color=colors[mode])
            ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], padding=2,
                         fontsize="small")
        ax.set_xticks(range(len(runs)), [run.label for run in runs])
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.margins(y=0.18)
    axes[0][0].legend(fontsize="small")
    fig.suptitle("the demo: sharing memory (compute-once) against not sharing it")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.charts", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--locks", metavar="JSON", help="benchmarks.locks --json output")
    parser.add_argument("--demo", metavar="JSON", help="benchmarks.demo --json output")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory to write to")
    args = parser.parse_args(argv)
    if not args.locks and not args.demo:
        parser.error("give --locks and/or --demo")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"charts need matplotlib: {INSTALL_HINT}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (name, src, fn)
        for name, src, fn in (("locks", args.locks, locks_chart), ("demo", args.demo, demo_chart))
        if src
    ]
    status = 0
    for name, src, fn in jobs:
        try:
            print(fn(_load(src), args.out / f"{name}.png"))
        except (OSError, ValueError, TypeError) as exc:
            print(f"{name}: cannot draw {src}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
