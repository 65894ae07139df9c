"""What compute-once saves in the MapReduce demo: the same agents with sharing and without.

    python -m benchmarks.demo [--json] [--rounds N] [--latency-ms MS] [--agents M] [--url URL]

Each scenario runs ``memgang demo``'s pipeline (memgang/demo/mapreduce.py: readers, M mapper
agents in their own processes, a reducer) on the generated sample report, both modes in one
run on one private redis-server, ``--rounds`` times; wall times are medians, counts must be
the same in every round.

- ``one input``: 3 jobs over the very same report (teams asking for the same report).
  Targets: summarizer calls with sharing == distinct chunks, exactly; without == 3 x that;
  wall time with sharing <= 0.5 x without (local summarizer at 50 ms per call, 4 mappers).
- ``overlapping``: 3 jobs over overlapping variants of it (each leaves out one section).
  Targets: with sharing == distinct chunks; without == the chunks of all jobs.

The wall time runs from the moment the readers start to the last report written (agents already
up); summarizer calls and words are counted by the mappers themselves (their stats in Redis).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchmarks._harness import server_url
from memgang.demo.mapreduce import Settings, run_demo
from memgang.demo.report import sample_report
from memgang.tables import aligned

WALL_TARGET = 0.5


@dataclass
class Row:
    scenario: str
    jobs: int
    agents: int
    latency_ms: float
    chunk_tasks: int
    distinct_chunks: int
    calls_shared: int = 0
    calls_solo: int = 0
    words_shared: int = 0
    words_solo: int = 0
    wall_shared_s: float = 0.0
    wall_solo_s: float = 0.0
    hits: int = 0
    waits: int = 0
    walls_shared: list[float] = field(default_factory=list)
    walls_solo: list[float] = field(default_factory=list)
    counts_exact: bool = True

    @property
    def calls_ratio(self) -> float:
        return self.calls_shared / self.calls_solo if self.calls_solo else 0.0

    @property
    def wall_ratio(self) -> float:
        return self.wall_shared_s / self.wall_solo_s if self.wall_solo_s else 0.0

    @property
    def expected_solo(self) -> int:
        return self.chunk_tasks

    @property
    def wall_target_met(self) -> bool | None:
        return self.wall_ratio <= WALL_TARGET if self.scenario == "one input" else None

    def to_json(self) -> dict[str, Any]:
        """The scenario as one ``memgang demo --json`` document (medians of the rounds),
        plus its rounds and targets."""
        return {
            "input": {"scenario": self.scenario, "jobs": self.jobs, "agents": self.agents,
                      "llm_latency_ms": self.latency_ms},
            "chunks": {"chunk_tasks": self.chunk_tasks, "distinct_chunks": self.distinct_chunks},
            "modes": [
                {"mode": "shared", "summarizer_calls": self.calls_shared,
                 "words_sent": self.words_shared, "wall_s": self.wall_shared_s,
                 "hits": self.hits, "waits": self.waits, "rounds_wall_s": self.walls_shared},
                {"mode": "no-share", "summarizer_calls": self.calls_solo,
                 "words_sent": self.words_solo, "wall_s": self.wall_solo_s, "hits": 0,
                 "waits": 0, "rounds_wall_s": self.walls_solo},
            ],
            "ratios": {"summarizer_calls": round(self.calls_ratio, 4),
                       "wall_time": round(self.wall_ratio, 4)},
            "targets": {"counts_exact": self.counts_exact,
                        "wall_ratio_max": WALL_TARGET if self.wall_target_met is not None
                        else None, "wall_target_met": self.wall_target_met},
        }


def run_scenario(name: str, url: str, *, same_input: bool, jobs: int, agents: int,
                 latency_ms: float, rounds: int) -> Row:
    settings = Settings(sample_report(), jobs=jobs, agents=agents, latency_ms=latency_ms,
                        same_input=same_input)
    row: Row | None = None
    for _ in range(rounds):
        report = run_demo(settings, url=url, echo=lambda line: None)
        inp = report["input"]
        shared, solo = report["modes"]
        if row is None:
            row = Row(name, jobs, agents, latency_ms, inp["chunk_tasks"],
                      inp["distinct_chunks"], calls_shared=shared["summarizer_calls"],
                      calls_solo=solo["summarizer_calls"], words_shared=shared["words_sent"],
                      words_solo=solo["words_sent"], hits=shared["hits"],
                      waits=shared["waits"])
        row.walls_shared.append(shared["wall_s"])
        row.walls_solo.append(solo["wall_s"])
        row.counts_exact &= (shared["summarizer_calls"] == inp["distinct_chunks"]
                             and solo["summarizer_calls"] == inp["chunk_tasks"]
                             and shared["reports"] == solo["reports"] == jobs)
    assert row is not None
    row.wall_shared_s = statistics.median(row.walls_shared)
    row.wall_solo_s = statistics.median(row.walls_solo)
    return row


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def table(rows: list[Row]) -> str:
    header = ["scenario", "chunks", "distinct", "calls shared", "calls no-share", "ratio",
              "words shared", "words no-share", "wall shared", "wall no-share", "ratio",
              "hits", "waits", "targets"]
    lines = [header]
    for r in rows:
        checks = [f"shared calls == distinct: {_yes(r.calls_shared == r.distinct_chunks)}",
                  f"no-share == all chunks: {_yes(r.calls_solo == r.expected_solo)}"]
        if r.wall_target_met is not None:
            checks.append(f"wall <= {WALL_TARGET}x: {_yes(r.wall_target_met)}")
        lines.append([r.scenario, str(r.chunk_tasks), str(r.distinct_chunks),
                      str(r.calls_shared), str(r.calls_solo), f"{r.calls_ratio:.3f}",
                      f"{r.words_shared:,}", f"{r.words_solo:,}", f"{r.wall_shared_s:.3f} s",
                      f"{r.wall_solo_s:.3f} s", f"{r.wall_ratio:.3f}", str(r.hits),
                      str(r.waits), "; ".join(checks)])
    out = aligned(lines, left=(0, -1))
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="benchmark on this server (default: a private one)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per scenario (median)")
    parser.add_argument("--latency-ms", type=float, default=50.0,
                        help="cost of one local summarizer call")
    parser.add_argument("--agents", type=int, default=4, help="mapper agents (processes)")
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--save-json", metavar="PATH", help="also write the JSON document here")
    args = parser.parse_args(argv)
    with server_url(args.url) as url:
        rows = [run_scenario(name, url, same_input=same, jobs=args.jobs, agents=args.agents,
                             latency_ms=args.latency_ms, rounds=args.rounds)
                for name, same in (("one input", True), ("overlapping", False))]
    document = orjson.dumps({"runs": [r.to_json() for r in rows]}).decode() + "\n"
    if args.save_json:
        with open(args.save_json, "w", encoding="utf-8") as file:
            file.write(document)
    if args.json:
        sys.stdout.write(document)
    else:
        print(f"MapReduce demo, {args.jobs} jobs, {args.agents} mapper processes, local "
              f"summarizer at {args.latency_ms:g} ms per call; median of {args.rounds} "
              f"round(s); wall = readers start -> last report written")
        print(table(rows))
    return 0 if all(r.counts_exact for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
