"""Event delivery: memgang subscriptions beside raw redis-py pub/sub, in one run.

    python -m benchmarks.events [--json] [--quick] [--url URL]

1. Latency, one event in flight at a time, sync (threads) and asyncio:
   - raw:      ``PUBLISH`` -> a redis-py PubSub reader gets it (the floor);
   - script: memgang's write.lua call, planned and packed ahead, sent on a bare socket
     (no client work per call; asyncio: the same socket driven by asyncio) -> a redis-py
     PubSub reader gets its event (what the write itself costs on this design, with no
     memgang client on either side: the reference for memgang's own write row);
   - delivery: ``PUBLISH`` of a well-formed event JSON on a swarm channel -> a memgang
     subscription's handler (what the event machinery adds: hub, parsing, sequence check,
     per-listener queue, hand-over);
   - write:    ``me.write(...)`` -> a memgang handler in the same process gets its event
     (the whole path: planning, the Lua write with its XADD + PUBLISH, delivery).
   Rounds of raw and memgang alternate; the percentiles are over all samples.
2. Fan-out: one writer process, 100 listeners, events/s delivered (deliveries / time from
   the first write to the last delivery): 100 asyncio listeners in one process, and 4
   processes x 25. memgang: 100 subscriptions on one Gang per process (one connection),
   fed by ``write_many``; raw: 100 redis.asyncio PubSub connections, fed by pipelined
   PUBLISH of payloads of the same size.
3. Catch-up: replaying a swarm's log (``since="start"``), sync and asyncio, beside raw
   ``XRANGE`` in batches of 1000 with JSON decoding.
4. Faults: a subscriber whose connection is killed (``CLIENT KILL TYPE pubsub``) every 100
   events while 5000 are written; lost and duplicated events are counted against the log.

Without ``--url`` a private redis-server is started and stopped. Targets (issue 4): write p50
<= 1.3 x raw p50, write p99 <= 2 x raw p99, fan-out >= 0.5 x raw, 0 lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis
import redis.asyncio

import memgang
import memgang.aio
from benchmarks._harness import (
    AsyncBareConnection,
    BareConnection,
    bare_write_calls,
    server_url,
)
from memgang.events import parse_id
from memgang.keys import SwarmKeys
from memgang.tables import aligned
from memgang.testing import fresh_swarm_name

SPAWN = multiprocessing.get_context("spawn")
LISTENERS = 100
PROCESSES = 4


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def event_json(swarm: str, i: int, base: int) -> bytes:
    """A well-formed event, as write.lua publishes it (n = i on a fresh swarm)."""
    return orjson.dumps({
        "id": f"{base}-{i}", "n": i, "type": "memory_updated", "swarm": swarm,
        "key": f"{{{swarm}}}/w/k", "agent": "w", "version": i, "ts": base, "size": 24,
        "scope": {"group": None, "context": None}})


# --- 1. latency -----------------------------------------------------------------------------


Sample = tuple[float, float]  # (event handed over, call returned), seconds after the call


def _bare_write(url: str) -> tuple[BareConnection, str, bytes]:
    """(connection, channel, call): memgang's own write.lua call, planned and packed ahead by
    its sans-I/O core, for a bare socket, whose PUBLISH on the swarm's channel is the event:
    what a write costs on this design, whatever the client (no client work per call)."""
    conn = BareConnection(url)
    swarm = SwarmKeys(fresh_swarm_name("bench"))
    (call,) = bare_write_calls(conn, swarm.swarm, "w", [("k", {"i": 1, "text": "latency probe"})])
    return conn, swarm.channel, call


def _raw_sender(url: str, pub: redis.Redis, script: bool
                ) -> tuple[str, Callable[[], Any], Callable[[], None]]:
    """(channel, send, close): a bare PUBLISH by redis-py; or, with ``script``, write.lua
    sent on a bare socket (:func:`_bare_write`)."""
    if not script:
        payload = event_json("x", 1, 1)
        return "bench:lat", lambda: pub.publish("bench:lat", payload), lambda: None
    conn, channel, call = _bare_write(url)
    return channel, lambda: conn.call(call), conn.close


def lat_raw_sync(url: str, n: int, script: bool = False) -> list[Sample]:
    pub = redis.Redis.from_url(url)
    channel, send, close = _raw_sender(url, pub, script)
    sub = redis.Redis.from_url(url).pubsub()  # type: ignore[no-untyped-call]
    sub.subscribe(channel)
    sub.get_message(timeout=1)
    got = threading.Event()
    stamps: list[float] = []

    def reader() -> None:
        for _ in range(n):
            while True:
                m = sub.get_message(timeout=1)
                if m is not None and m["type"] == "message":
                    break
            stamps.append(time.perf_counter())
            got.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    out = []
    for _ in range(n):
        got.clear()
        t0 = time.perf_counter()
        send()
        t1 = time.perf_counter()
        got.wait(5)
        out.append((stamps[-1] - t0, t1 - t0))
    thread.join(5)
    sub.close()
    close()
    pub.close()
    return out


def lat_mg_sync(url: str, n: int, mode: str) -> list[Sample]:
    gang = memgang.connect(url)
    pub = redis.Redis.from_url(url)
    try:
        swarm = gang.swarm(fresh_swarm_name("bench"))
        me = swarm.agent("w")
        got = threading.Event()
        stamps: list[float] = []

        def handler(event: memgang.Event) -> None:
            stamps.append(time.perf_counter())
            got.set()

        sub = swarm.subscribe(handler)
        base = int(time.time() * 1000)
        out = []
        for i in range(1, n + 1):
            got.clear()
            if mode == "write":
                t0 = time.perf_counter()
                me.write("k", {"i": i, "text": "latency probe"})
            else:
                payload = event_json(swarm.name, i, base)
                t0 = time.perf_counter()
                pub.publish(swarm.keys.channel, payload)
            t1 = time.perf_counter()
            got.wait(5)
            out.append((stamps[-1] - t0, t1 - t0))
        sub.stop()
        return out
    finally:
        pub.close()
        gang.close()


async def lat_raw_async(url: str, n: int, script: bool = False) -> list[Sample]:
    """The asyncio twin of :func:`lat_raw_sync`: redis.asyncio PUBLISH, or with ``script``
    write.lua on a bare socket driven by asyncio; read by a redis.asyncio PubSub."""
    pub = redis.asyncio.Redis.from_url(url)
    payload = event_json("x", 1, 1)
    channel = "bench:lat"
    bare: AsyncBareConnection | None = None
    if script:
        conn, channel, call = _bare_write(url)
        bare = await AsyncBareConnection.take(conn)
    client = redis.asyncio.Redis.from_url(url)
    sub = client.pubsub()
    await sub.subscribe(channel)
    await sub.get_message(timeout=1)
    got = asyncio.Event()
    stamps: list[float] = []

    async def reader() -> None:
        for _ in range(n):
            while True:
                m = await sub.get_message(timeout=1)
                if m is not None and m["type"] == "message":
                    break
            stamps.append(time.perf_counter())
            got.set()

    task = asyncio.create_task(reader())
    out = []
    for _ in range(n):
        got.clear()
        t0 = time.perf_counter()
        if bare is not None:
            await bare.call(call)
        else:
            await pub.publish(channel, payload)
        t1 = time.perf_counter()
        await asyncio.wait_for(got.wait(), 5)
        out.append((stamps[-1] - t0, t1 - t0))
    await task
    await sub.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()
    await pub.aclose()
    if bare is not None:
        await bare.close()
    return out


async def lat_mg_async(url: str, n: int, mode: str) -> list[Sample]:
    gang = await memgang.aio.connect(url)
    pub = redis.asyncio.Redis.from_url(url)
    try:
        swarm = gang.swarm(fresh_swarm_name("bench"))
        me = swarm.agent("w")
        got = asyncio.Event()
        stamps: list[float] = []

        def handler(event: memgang.aio.Event) -> None:
            stamps.append(time.perf_counter())
            got.set()

        sub = await swarm.subscribe(handler)
        base = int(time.time() * 1000)
        out = []
        for i in range(1, n + 1):
            got.clear()
            if mode == "write":
                t0 = time.perf_counter()
                await me.write("k", {"i": i, "text": "latency probe"})
            else:
                payload = event_json(swarm.name, i, base)
                t0 = time.perf_counter()
                await pub.publish(swarm.keys.channel, payload)
            t1 = time.perf_counter()
            await asyncio.wait_for(got.wait(), 5)
            out.append((stamps[-1] - t0, t1 - t0))
        await sub.stop()
        return out
    finally:
        await pub.aclose()
        await gang.close()


@dataclass
class LatencyRow:
    flavour: str
    path: str
    p50_us: float
    p99_us: float
    call_p50_us: float
    samples: int
    x_raw_p50: float = 0.0
    x_raw_p99: float = 0.0


def latency(url: str, n: int, rounds: int) -> list[LatencyRow]:
    per = max(1, n // rounds)
    sync: dict[str, list[Sample]] = {"raw": [], "delivery": [], "write": [], "script": []}
    asyn: dict[str, list[Sample]] = {"raw": [], "delivery": [], "write": [], "script": []}
    for _ in range(rounds):  # alternate, so load from elsewhere hits every path alike
        sync["raw"] += lat_raw_sync(url, per)
        sync["delivery"] += lat_mg_sync(url, per, "publish")
        sync["write"] += lat_mg_sync(url, per, "write")
        sync["script"] += lat_raw_sync(url, per, script=True)
        asyn["raw"] += asyncio.run(lat_raw_async(url, per))
        asyn["delivery"] += asyncio.run(lat_mg_async(url, per, "publish"))
        asyn["write"] += asyncio.run(lat_mg_async(url, per, "write"))
        asyn["script"] += asyncio.run(lat_raw_async(url, per, script=True))
    rows = []
    for flavour, data in (("sync", sync), ("asyncio", asyn)):
        raw = [h for h, _ in data["raw"]]
        raw50, raw99 = pct(raw, 0.5), pct(raw, 0.99)
        for path, label in (("raw", "raw PUBLISH -> receive"),
                            ("delivery", "memgang PUBLISH'd event -> handler"),
                            ("write", "memgang write() -> handler"),
                            ("script", "write.lua by a bare client -> receive")):
            handed = [h for h, _ in data[path]]
            p50, p99 = pct(handed, 0.5), pct(handed, 0.99)
            call50 = pct([c for _, c in data[path]], 0.5)
            rows.append(LatencyRow(flavour, label, round(p50 * 1e6, 1), round(p99 * 1e6, 1),
                                   round(call50 * 1e6, 1), len(handed), round(p50 / raw50, 2),
                                   round(p99 / raw99, 2)))
    return rows


# --- 2. fan-out --------------------------------------------------------------------------------


def _listen_raw(url: str, channel: str, listeners: int, expected: int, ready: Any,
                out: Any) -> None:
    async def main() -> tuple[int, float]:
        clients = [redis.asyncio.Redis.from_url(url) for _ in range(listeners)]
        subs = [c.pubsub() for c in clients]
        for s in subs:
            await s.subscribe(channel)
            await s.get_message(timeout=1)
        counts = [0] * listeners
        last = [0.0]

        async def reader(i: int) -> None:
            sub = subs[i]
            while counts[i] < expected:
                m = await sub.get_message(timeout=1)
                if m is not None and m["type"] == "message":
                    orjson.loads(m["data"])  # a listener looks at what it gets
                    counts[i] += 1
                    last[0] = time.monotonic()

        tasks = [asyncio.create_task(reader(i)) for i in range(listeners)]
        ready.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        for s, c in zip(subs, clients, strict=True):
            await s.aclose()  # type: ignore[no-untyped-call]
            await c.aclose()
        return sum(counts), last[0]

    out.put(asyncio.run(main()))


def _listen_memgang(url: str, swarm: str, listeners: int, expected: int, ready: Any,
                    out: Any) -> None:
    async def main() -> tuple[int, float]:
        gang = await memgang.aio.connect(url)
        counts = [0] * listeners
        last = [0.0]
        done = asyncio.Event()
        total = listeners * expected

        def make(i: int) -> Callable[[memgang.aio.Event], None]:
            def handler(event: memgang.aio.Event) -> None:
                counts[i] += 1
                last[0] = time.monotonic()
                if counts[i] == expected and sum(counts) == total:
                    done.set()
            return handler

        subs = [await gang.swarm(swarm).subscribe(make(i)) for i in range(listeners)]
        ready.set()
        await asyncio.wait_for(done.wait(), 120)
        for s in subs:
            await s.stop()
        await gang.close()
        return sum(counts), last[0]

    out.put(asyncio.run(main()))


def _write_raw(url: str, channel: str, count: int) -> float:
    client = redis.Redis.from_url(url)
    payload = event_json("fanout", 1, 1)
    start = time.monotonic()
    for i in range(0, count, 50):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(50, count - i)):
            pipe.publish(channel, payload)
        pipe.execute()
    client.close()
    return start


def _write_memgang(url: str, swarm: str, count: int) -> float:
    gang = memgang.connect(url)
    me = gang.swarm(swarm).agent("writer")
    start = time.monotonic()
    for i in range(0, count, 50):
        me.write_many([(f"k{j}", {"j": j}) for j in range(i, min(count, i + 50))])
    gang.close()
    return start


@dataclass
class FanoutRow:
    layout: str
    impl: str
    events: int
    deliveries: int
    delivered_per_s: float
    x_raw: float = 0.0


def fanout(url: str, events: int, processes: int, impl: str) -> FanoutRow:
    per = LISTENERS // processes
    ready = [SPAWN.Event() for _ in range(processes)]
    out: Any = SPAWN.Queue()
    name = fresh_swarm_name("fan")
    if impl == "raw":
        target: Callable[..., None] = _listen_raw
        where = f"bench:fan:{name}"
    else:
        target, where = _listen_memgang, name
    procs = [SPAWN.Process(target=target, args=(url, where, per, events, ready[i], out),
                           daemon=True) for i in range(processes)]
    for p in procs:
        p.start()
    for r in ready:
        if not r.wait(60):
            raise RuntimeError("listeners did not start")
    start = _write_raw(url, where, events) if impl == "raw" else \
        _write_memgang(url, where, events)
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(10)
    deliveries = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results) - start
    layout = f"{LISTENERS} listeners, " + ("1 asyncio process" if processes == 1 else
                                          f"{processes} processes x {per}")
    return FanoutRow(layout, impl, events, deliveries, round(deliveries / elapsed))


# --- 3. catch-up --------------------------------------------------------------------------------


@dataclass
class CatchupRow:
    impl: str
    events: int
    per_s: float
    x_raw: float = 0.0


def catchup(url: str, events: int) -> list[CatchupRow]:
    gang = memgang.connect(url, log_maxlen=max(100_000, events))
    swarm = gang.swarm(fresh_swarm_name("replay"))
    me = swarm.agent("w")
    for i in range(0, events, 500):
        me.write_many([(f"k{j}", {"j": j}) for j in range(i, min(events, i + 500))])
    rows = []
    client = redis.Redis.from_url(url)
    t0 = time.perf_counter()
    start, n = "-", 0
    while True:
        batch: Any = client.xrange(swarm.keys.log, start, "+", count=1000)
        for _, fields in batch:
            orjson.loads(fields[b"e"])
            n += 1
        if len(batch) < 1000:
            break
        start = "(" + batch[-1][0].decode()
    raw_rate = n / (time.perf_counter() - t0)
    rows.append(CatchupRow("raw XRANGE + JSON", n, round(raw_rate)))
    client.close()
    t0 = time.perf_counter()
    with swarm.events(since="start") as stream:
        got = 0
        while got < events and stream.get(timeout_s=5) is not None:
            got += 1
    rows.append(CatchupRow("memgang sync", got, round(got / (time.perf_counter() - t0))))

    async def replay() -> int:
        agang = await memgang.aio.connect(url)
        try:
            count = 0
            async with agang.swarm(swarm.name).events(since="start") as stream:
                while count < events and await stream.get(timeout_s=5) is not None:
                    count += 1
            return count
        finally:
            await agang.close()

    t0 = time.perf_counter()
    got = asyncio.run(replay())
    rows.append(CatchupRow("memgang asyncio", got, round(got / (time.perf_counter() - t0))))
    gang.close()
    for row in rows:
        row.x_raw = round(row.per_s / raw_rate, 2)
    return rows


# --- 4. faults ---------------------------------------------------------------------------------


@dataclass
class FaultRow:
    events: int
    kills: int
    delivered: int
    lost: int
    duplicated: int
    out_of_order: int


def faults(url: str, events: int) -> FaultRow:
    gang = memgang.connect(url)
    admin = redis.Redis.from_url(url)
    try:
        swarm = gang.swarm(fresh_swarm_name("faults"))
        got: list[str] = []
        kills = 0
        with swarm.events() as stream:
            def write() -> None:
                writer = memgang.connect(url)
                me = writer.swarm(swarm.name).agent("w")
                for i in range(0, events, 10):
                    me.write_many([(f"k{j}", j) for j in range(i, i + 10)])
                writer.close()

            thread = threading.Thread(target=write)
            thread.start()
            deadline = time.monotonic() + 120
            while len(got) < events and time.monotonic() < deadline:
                event = stream.get(timeout_s=1)
                if event is None:
                    continue
                got.append(event.id)
                if len(got) % 100 == 0 and thread.is_alive():
                    kills += admin.client_kill_filter(_type="pubsub")
            thread.join()
        entries: Any = admin.xrange(swarm.keys.log)
        log = [i.decode() for i, _ in entries]
        unique = set(got)
        order = [parse_id(i) or (0, 0) for i in got]
        return FaultRow(events, kills, len(got), len(set(log) - unique), len(got) - len(unique),
                        sum(1 for a, b in itertools.pairwise(order) if a >= b))
    finally:
        admin.close()
        gang.close()


# --- output ------------------------------------------------------------------------------------


@dataclass
class Report:
    redis_version: str
    latency: list[LatencyRow] = field(default_factory=list)
    fanout: list[FanoutRow] = field(default_factory=list)
    catchup: list[CatchupRow] = field(default_factory=list)
    faults: FaultRow | None = None
    targets: dict[str, bool] = field(default_factory=dict)


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(aligned([header, *rows], left=(0, 1)))


def render(report: Report) -> str:
    out = [f"memgang events benchmark (redis {report.redis_version})", "",
           "1. latency, one event in flight (us)"]
    out.append(_table(["api", "path", "p50", "p99", "x raw p50", "x raw p99", "call p50",
                       "n"], [
        [r.flavour, r.path, f"{r.p50_us:.0f}", f"{r.p99_us:.0f}", f"{r.x_raw_p50:.2f}",
         f"{r.x_raw_p99:.2f}", f"{r.call_p50_us:.0f}", str(r.samples)]
        for r in report.latency]))
    out.append("call p50: until PUBLISH / write() itself returned (the write is one Lua "
               "script: value, version, indexes, XADD, PUBLISH)")
    out.append("write.lua by a bare client: memgang's write script, planned and packed ahead, "
               "sent on a bare socket, its event read by a plain redis-py subscriber (no "
               "memgang client): the design's own cost, the reference for memgang's write row")
    for flavour in ("sync", "asyncio"):
        rows = {r.path: r for r in report.latency if r.flavour == flavour}
        mine = rows.get("memgang write() -> handler")
        ref = rows.get("write.lua by a bare client -> receive")
        if mine is not None and ref is not None:
            out.append(f"{flavour}: memgang's client adds {mine.p50_us - ref.p50_us:+.0f} us "
                       f"at p50 over the reference ({ref.x_raw_p50:.2f} x raw -> "
                       f"{mine.x_raw_p50:.2f} x raw)")
    out += ["", "2. fan-out: one writer, events delivered per second to all listeners"]
    out.append(_table(["layout", "impl", "events", "deliveries", "delivered/s", "x raw"], [
        [r.layout, r.impl, str(r.events), str(r.deliveries), f"{r.delivered_per_s:,.0f}",
         f"{r.x_raw:.2f}"] for r in report.fanout]))
    out += ["", "3. catch-up: replaying the log"]
    out.append(_table(["impl", "", "events", "events/s", "x raw"], [
        [r.impl, "", str(r.events), f"{r.per_s:,.0f}", f"{r.x_raw:.2f}"]
        for r in report.catchup]))
    if report.faults is not None:
        f = report.faults
        out += ["", "4. faults: CLIENT KILL TYPE pubsub every 100 events while writing",
                f"events {f.events}  kills {f.kills}  delivered {f.delivered}  lost {f.lost}  "
                f"duplicated {f.duplicated}  out of order {f.out_of_order}"]
    out += ["", "targets:"] + [f"  {'PASS' if ok else 'MISS'}  {name}"
                               for name, ok in report.targets.items()]
    return "\n".join(out)


def run(url: str, quick: bool) -> Report:
    version = redis.Redis.from_url(url).info("server")["redis_version"]
    report = Report(str(version))
    report.latency = latency(url, 300 if quick else 3000, 3 if quick else 5)
    events = 200 if quick else 1000
    for processes in (1, PROCESSES):
        rows = [fanout(url, events, processes, impl) for impl in ("raw", "memgang")]
        rows[1].x_raw = round(rows[1].delivered_per_s / rows[0].delivered_per_s, 2)
        rows[0].x_raw = 1.0
        report.fanout += rows
    report.catchup = catchup(url, 5000 if quick else 50_000)
    report.faults = faults(url, 2000 if quick else 5000)
    for lat in report.latency:
        if lat.path.startswith("memgang write"):
            report.targets[f"{lat.flavour} write->handler p50 <= 1.3 x raw "
                           f"({lat.x_raw_p50:.2f})"] = lat.x_raw_p50 <= 1.3
            report.targets[f"{lat.flavour} write->handler p99 <= 2 x raw "
                           f"({lat.x_raw_p99:.2f})"] = lat.x_raw_p99 <= 2.0
    for fan in report.fanout:
        if fan.impl == "memgang":
            report.targets[f"fan-out {fan.layout} >= 0.5 x raw ({fan.x_raw:.2f})"] = \
                fan.x_raw >= 0.5
    f = report.faults
    report.targets["0 lost, duplicated or out of order under CLIENT KILL"] = \
        f.lost == f.duplicated == f.out_of_order == 0 and f.delivered == f.events
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--url", help="an otherwise idle Redis (default: a private one)")
    args = parser.parse_args(argv)
    # the fault run makes the hub log each reconnect; the table says what matters
    logging.getLogger("memgang.events").setLevel(logging.ERROR)
    with server_url(args.url) as url:
        report = run(url, args.quick)
    if args.json:
        print(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2).decode())
    else:
        print(render(report))
    return 0 if report.faults and report.targets.get(
        "0 lost, duplicated or out of order under CLIENT KILL") else 1


if __name__ == "__main__":
    sys.exit(main())
