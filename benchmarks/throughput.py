"""Write and read throughput: memgang beside raw redis-py HSET / HGETALL of the same data.

    python -m benchmarks.throughput [--json] [--seconds S] [--quick] [--url URL]

Each row runs memgang and its raw peer alternately, ``--rounds`` times each, on the same
private redis-server, and keeps each one's median: a ratio of two figures from one run on
one machine, never an absolute time on its own.

- write: ``me.write(key, value, group=...)`` (value + metadata, version, indexes, event
  PUBLISH and log XADD, one Lua script) against ``HSET key v <msgpack> agent .. group ..``
  of the same fields, then ``msgpack`` packing on both sides.
- read: ``me.read(key)`` (a Lua script honouring access lists and locks, decoding to a
  MemoryObject) against ``HGETALL`` + msgpack decoding of the same hash.
- write_many: pipelined batches against pipelined HSETs of the same batches.
Single client, and 4 processes whose timed loops start at the same instant. Only the loops
are timed: each client first connects, prepares its data and makes one warm-up call, and
the rate of 4 processes is the sum of theirs.

The write rows also run a reference in the same rotation: memgang's own write.lua call,
planned and packed ahead, sent on a bare socket (``BareConnection``: no client work per
call). It is what a write costs on memgang's design whatever the client: memgang against it
is the cost of memgang's client, it against raw the cost of the script.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import orjson
import redis

import memgang
from benchmarks._harness import BareConnection, bare_write_calls, server_url
from memgang.tables import aligned

VALUE = {
    "text": "The reducer merges every summary by reference instead of copying it. " * 3,
    "score": 0.87,
    "tags": ["summary", "draft", "chunk-7"],
    "n": 42,
}
KEYSPACE = 1000  # objects cycled through, so reads hit existing keys
BATCH = 200


@dataclass
class Row:
    op: str
    clients: int
    memgang_ops_s: float
    raw_ops_s: float
    target: float | None
    script_ops_s: float | None = None  # write.lua packed ahead, sent on a bare socket

    @property
    def ratio(self) -> float:
        return self.memgang_ops_s / self.raw_ops_s if self.raw_ops_s else 0.0


# -- one client's loops ----------------------------------------------------------------------
# Each is a context manager (url, swarm, worker id) that connects and prepares its data, then
# yields ``step(ops_so_far) -> ops done``. Only the steps are timed: connecting, writing the
# objects a read loop reads, and closing happen outside the measured window, for both sides.

Step = Callable[[int], int]
Loop = Callable[[str, str, int], contextlib.AbstractContextManager[Step]]


def _timed(seconds: float, step: Step) -> int:
    """Call ``step(ops_so_far)`` (which returns the ops it did) until ``seconds`` pass."""
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        n += step(n)
    return n


def _fields(agent: str) -> dict[str, Any]:
    """The raw peer stores the same value and scope fields memgang does."""
    return {"v": msgpack.packb(VALUE), "agent": agent, "group": "bench"}


@contextlib.contextmanager
def _memgang_write(url: str, swarm: str, wid: int) -> Iterator[Step]:
    with memgang.connect(url) as gang:
        me = gang.swarm(swarm).agent(f"w{wid}")

        def step(n: int) -> int:
            me.write(f"k{n % KEYSPACE}", VALUE, group="bench")
            return 1

        yield step


@contextlib.contextmanager
def _raw_write(url: str, swarm: str, wid: int) -> Iterator[Step]:
    with redis.Redis.from_url(url) as client:
        agent = f"w{wid}"

        def step(n: int) -> int:
            client.hset(f"raw:{swarm}:{agent}:{n % KEYSPACE}", mapping=_fields(agent))
            return 1

        yield step


@contextlib.contextmanager
def _bare_write(url: str, swarm: str, wid: int) -> Iterator[Step]:
    """The reference: memgang's own write.lua call, planned and packed ahead by memgang's
    sans-I/O core outside the timed loop, sent on a bare socket (no client work per call:
    no planning, packing, hashing, checks or pool). What a write costs on this design,
    whatever the client."""
    conn = BareConnection(url)
    try:
        calls = bare_write_calls(conn, swarm, f"w{wid}",
                                 [(f"k{i}", VALUE) for i in range(KEYSPACE)], group="bench")

        def step(n: int) -> int:
            reply = conn.call(calls[n % KEYSPACE])
            if type(reply[0]) is not int:  # a written object's reply is its version
                raise RuntimeError(f"write.lua refused the benchmark write: {reply!r}")
            return 1

        yield step
    finally:
        conn.close()


@contextlib.contextmanager
def _memgang_read(url: str, swarm: str, wid: int) -> Iterator[Step]:
    with memgang.connect(url) as gang:
        me = gang.swarm(swarm).agent(f"w{wid}")
        me.write_many({f"r{i}": VALUE for i in range(KEYSPACE)}, group="bench")

        def step(n: int) -> int:
            if me.read(f"r{n % KEYSPACE}") is None:
                raise RuntimeError("benchmark object vanished")
            return 1

        yield step


@contextlib.contextmanager
def _raw_read(url: str, swarm: str, wid: int) -> Iterator[Step]:
    with redis.Redis.from_url(url) as client:
        agent = f"w{wid}"
        with client.pipeline(transaction=False) as pipe:
            for i in range(KEYSPACE):
                pipe.hset(f"raw:{swarm}:{agent}:r{i}", mapping=_fields(agent))
            pipe.execute()

        def step(n: int) -> int:
            fields = client.hgetall(f"raw:{swarm}:{agent}:r{n % KEYSPACE}")
            msgpack.unpackb(fields[b"v"])
            return 1

        yield step


@contextlib.contextmanager
def _memgang_batch(url: str, swarm: str, wid: int) -> Iterator[Step]:
    with memgang.connect(url) as gang:
        me = gang.swarm(swarm).agent(f"w{wid}")

        def step(n: int) -> int:
            me.write_many([(f"b{(n + i) % KEYSPACE}", VALUE) for i in range(BATCH)],
                          group="bench")
            return BATCH

        yield step


@contextlib.contextmanager
def _raw_batch(url: str, swarm: str, wid: int) -> Iterator[Step]:
    with redis.Redis.from_url(url) as client:
        agent = f"w{wid}"

        def step(n: int) -> int:
            with client.pipeline(transaction=False) as pipe:
                for i in range(BATCH):
                    pipe.hset(f"raw:{swarm}:{agent}:b{(n + i) % KEYSPACE}",
                              mapping=_fields(agent))
                pipe.execute()
            return BATCH

        yield step


LOOPS: dict[str, tuple[Loop, Loop]] = {
    "write": (_memgang_write, _raw_write),
    "read": (_memgang_read, _raw_read),
    "write_many": (_memgang_batch, _raw_batch),
}
# a third side, measured in the same rotation: the same script call without memgang's client
REFERENCES: dict[str, Loop] = {"write": _bare_write}
TARGETS = {"write": 0.7, "read": 0.8, "write_many": None}


SETUP_S = 120.0  # the longest a client may take to connect and prepare its data


def _rate(loop: Loop, url: str, swarm: str, seconds: float, wid: int,
          barrier: Any | None = None) -> float:
    """This client's ops/s over its timed loop. Set-up (and one warm-up step: the first
    call connects) comes first; with ``barrier``, every client starts its loop at once."""
    with loop(url, swarm, wid) as step:
        step(0)
        if barrier is not None:
            barrier.wait(SETUP_S)
        start = time.perf_counter()
        n = _timed(seconds, step)
        return n / (time.perf_counter() - start)


def _worker(loop: Loop, url: str, swarm: str, seconds: float, wid: int, barrier: Any,
            out: Any) -> None:
    try:
        out.put(_rate(loop, url, swarm, seconds, wid, barrier))
    except BaseException as exc:  # the others must not wait for this one at the barrier
        barrier.abort()
        out.put(f"worker {wid}: {type(exc).__name__}: {exc}")


def measure(loop: Loop, url: str, clients: int, seconds: float, tag: str) -> float:
    """ops/s of ``loop`` run by ``clients`` processes whose timed loops start together
    (1: in-process): the sum of their rates."""
    swarm = f"bench-{tag}-{time.monotonic_ns()}"
    if clients == 1:
        return _rate(loop, url, swarm, seconds, 0)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(clients)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(loop, url, swarm, seconds, i, barrier, out))
        for i in range(clients)
    ]
    try:
        for p in procs:
            p.start()
        rates = [out.get(timeout=SETUP_S + seconds + 30) for _ in procs]
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
    failed = [r for r in rates if isinstance(r, str)]
    if failed:
        raise RuntimeError(f"{loop.__name__} failed: {'; '.join(failed)}")
    return float(sum(rates))


def run(url: str, seconds: float, rounds: int, ops: list[str], clients: list[int]) -> list[Row]:
    rows = []
    for op in ops:
        mine, peer = LOOPS[op]
        for c in clients:
            runs: dict[str, list[float]] = {"raw": [], "mg": [], "lua": []}
            sides = [("raw", peer), ("mg", mine)]
            if (reference := REFERENCES.get(op)) is not None:
                sides.append(("lua", reference))
            for r in range(rounds):
                # each round in another order, so that no side always runs first or last
                for side, loop in sides[r % len(sides):] + sides[:r % len(sides)]:
                    runs[side].append(measure(loop, url, c, seconds, f"{op}-{side}-{r}"))
            m_runs, r_runs, s_runs = runs["mg"], runs["raw"], runs["lua"]
            rows.append(
                Row(op, c, statistics.median(m_runs), statistics.median(r_runs), TARGETS[op],
                    statistics.median(s_runs) if s_runs else None)
            )
            redis.Redis.from_url(url).flushall()
    return rows


def table(rows: list[Row]) -> str:
    lines = [["operation", "clients", "memgang ops/s", "raw ops/s", "ratio", "target",
              "same script, bare client", "its ratio"]]
    for r in rows:
        script = ["-", "-"] if r.script_ops_s is None else [
            f"{r.script_ops_s:,.0f}", f"{r.script_ops_s / r.raw_ops_s:.2f}"]
        lines.append([r.op, str(r.clients), f"{r.memgang_ops_s:,.0f}", f"{r.raw_ops_s:,.0f}",
                      f"{r.ratio:.2f}", f">={r.target:.2f}" if r.target else "-", *script])
    out = aligned(lines)
    out.insert(1, "-" * len(out[0]))
    out.append("same script, bare client: memgang's write.lua call, planned and packed ahead, "
               "sent on a bare socket (no client work per call)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="benchmark this server (default: a private one)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per side")
    parser.add_argument("--quick", action="store_true", help="0.3 s, 1 round (CI smoke)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--ops", default="write,read,write_many")
    parser.add_argument("--clients", default="1,4")
    args = parser.parse_args(argv)
    seconds, rounds = (0.3, 1) if args.quick else (args.seconds, args.rounds)
    ops = args.ops.split(",")
    for op in ops:
        if op not in LOOPS:
            parser.error(f"unknown op {op!r}; choose from {', '.join(LOOPS)}")
    clients = [int(c) for c in args.clients.split(",")]
    with server_url(args.url) as url:
        rows = run(url, seconds, rounds, ops, clients)
    if args.json:
        sys.stdout.write(
            orjson.dumps([{**asdict(r), "ratio": r.ratio} for r in rows]).decode() + "\n"
        )
    else:
        print(
            f"throughput: {seconds}s x {rounds} alternating rounds per side, median; "
            f"value {len(msgpack.packb(VALUE))} bytes msgpack; batches of {BATCH}"
        )
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
