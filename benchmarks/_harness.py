"""The machinery behind ``benchmarks/locks.py``: no lock implementation lives here.

What it does for one configuration (implementation x hold x workers):

1. ``ImplSpec.setup`` runs once in this process; then N worker processes start (or one process
   running N asyncio tasks). Each connects, builds its lock, and reports ``ready``.
2. When all are ready, the parent reads ``INFO commandstats``, writes the deadline into shared
   memory and sets one ``Event``: everyone starts at the same instant.
3. Each worker loops until the deadline: request -> ``acquire()`` -> hold -> ``release()``,
   recording ``(requested, acquired, released)`` from ``time.monotonic_ns()``. On Linux, macOS
   and Windows that clock is system-wide, so timestamps from different processes compare.
   A worker still waiting at the deadline keeps waiting until it is served (its wait counts,
   its acquisition does not count towards acquisitions/s).
4. The parent merges the records, reads ``INFO commandstats`` again and the shared counter,
   and computes the metrics of one ``Row``.

Workers and the private redis-server are always stopped: on errors, on Ctrl-C (workers ignore
SIGINT, the parent stops them) and on SIGTERM (``main`` turns it into ``SystemExit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import itertools
import math
import multiprocessing
import signal
import socket
import statistics
import sys
import time
import traceback
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_connections
from multiprocessing.synchronize import Event
from typing import Any, Literal, Protocol, TypeAlias

import hiredis
import redis
import redis.asyncio
import redis.connection

from memgang import scripts
from memgang.codec import Codec
from memgang.config import Config as MemgangConfig
from memgang.errors import ServerError
from memgang.keys import SwarmKeys
from memgang.memory import Settings, plan_write, target
from memgang.resp import command
from memgang.server import EmbeddedServer

Hold = Literal["empty", "getset"]
HOLDS: tuple[Hold, ...] = ("empty", "getset")
Mode = Literal["processes", "asyncio"]

INSTALL_HINT = "pip install 'memgang[bench]'"
READY_TIMEOUT_S = 60.0  # workers connect and build their locks within this
DRAIN_TIMEOUT_S = 60.0  # after the deadline, every waiting worker is served within this
SERVER_START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
# Commands that set up a connection or probe the server, not part of any acquisition.
SETUP_COMMANDS = frozenset({"info", "hello", "auth", "select", "client|setinfo"})


class SyncLock(Protocol):
    """One worker's handle on the benchmarked lock."""

    def acquire(self) -> None:
        """Block until held; raise (e.g. ``TimeoutError``) on giving up."""

    def release(self) -> None:
        """Give the lock up."""


class AsyncLock(Protocol):
    """One asyncio task's handle on the benchmarked lock."""

    async def acquire(self) -> None:
        """Wait until held; raise (e.g. ``TimeoutError``) on giving up."""

    async def release(self) -> None:
        """Give the lock up."""


@dataclass(frozen=True)
class Target:
    """Where and under which names one configuration runs.

    ``tag`` is unique per configuration and run, made of ``[a-z0-9-]`` (valid as a Redis key
    part and as a memgang swarm name); ``worker`` is the process index (0 in asyncio mode,
    where the lock maker receives the task index instead).
    """

    url: str
    tag: str
    worker: int = 0

    def key(self, suffix: str) -> str:
        return f"bench:{self.tag}:{suffix}"


OpenSync: TypeAlias = Callable[[Target], AbstractContextManager[SyncLock]]
OpenAsync: TypeAlias = Callable[[Target], AbstractAsyncContextManager[Callable[[int], AsyncLock]]]
Setup: TypeAlias = Callable[[Target], None]


@dataclass(frozen=True)
class ImplSpec:
    """A lock implementation: see the module docstring of ``benchmarks.locks``."""

    name: str
    open_sync: OpenSync
    open_async: OpenAsync | None = None
    readers_only: bool = False
    requires: tuple[str, ...] = ()
    setup: Setup | None = None


@dataclass(frozen=True)
class Config:
    hold: Hold
    mode: Mode
    workers: int  # processes, or asyncio tasks in one process
    seconds: float

    @property
    def label(self) -> str:
        if self.mode == "asyncio":
            return f"{self.workers} asyncio tasks in 1 process"
        return f"{self.workers} process" + ("es" if self.workers > 1 else "")


@dataclass
class Row:
    """One configuration's result; ``--json`` prints a list of these as dicts.

    Times are in milliseconds. ``acquisitions`` counts grants inside the window,
    ``acquisitions_total`` also those granted to workers still waiting at the deadline (every
    request made inside the window is served and its wait counted).
    """

    impl: str
    hold: Hold
    mode: Mode
    workers: int
    seconds: float
    readers_only: bool
    status: Literal["ok", "skipped", "error"] = "ok"
    note: str = ""
    acquisitions: int = 0
    acquisitions_total: int = 0
    acq_per_s: float = 0.0
    x_floor: float | None = None
    handoff_p50_ms: float | None = None  # release -> next holder's acquire (exclusive impls)
    handoff_p99_ms: float | None = None
    wait_p50_ms: float | None = None  # acquire() called -> lock held
    wait_p99_ms: float | None = None
    wait_max_ms: float | None = None
    min_per_worker: int = 0  # acquisitions inside the window, per worker
    max_per_worker: int = 0
    fairness: float = 0.0  # min_per_worker / max_per_worker
    same_holder: float | None = None  # share of consecutive grants to the same worker
    overlaps: int = 0  # grants while another exclusive holder still held the lock
    lost_updates: int = 0  # getset: acquisitions minus the final counter (readers: writes seen)
    violations: int = 0  # overlaps + |lost_updates|
    commands_per_acquisition: float | None = None  # the benchmark's own GET/SET subtracted
    commands: dict[str, float] = field(default_factory=dict)  # per acquisition, by command
    # the server's CPU time (user + sys, INFO cpu) during the run, per acquisition: where the
    # hand-off chain's time goes, beside the commands that spent it
    redis_cpu_us_per_acquisition: float | None = None
    redis_version: str = ""
    cpus: int = 0
    # one entry per round (see combine_rounds), in round order; the figures above are the
    # median round's, x_floor the median of the rounds' own ratios, violations all rounds'
    rounds_acq_per_s: list[float] = field(default_factory=list)
    rounds_x_floor: list[float | None] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """All fields; a skipped or failed row carries its config and note, no metrics."""
        fields = asdict(self)
        if self.status != "ok":
            fields = {name: fields[name] for name in _CONFIG_FIELDS}
        return fields


_CONFIG_FIELDS = (
    "impl",
    "hold",
    "mode",
    "workers",
    "seconds",
    "readers_only",
    "status",
    "note",
    "redis_version",
    "cpus",
)


class WorkerError(RuntimeError):
    """A worker failed, died, or did not report in time."""


class HarnessError(RuntimeError):
    """The benchmark cannot run (no redis-server, server did not start, ...)."""


Records: TypeAlias = "array[int]"  # flat (requested, acquired, released) triples, ns


# --- the private redis-server ---------------------------------------------------------------


@contextlib.contextmanager
def server_url(url: str | None) -> Iterator[str]:
    """``url`` if given, else a private redis-server for the run (memgang's embedded one:
    unix socket, nothing on disk, dies with us); always stopped at the end."""
    if url:
        yield url
        return
    try:
        server = EmbeddedServer().start()
    except ServerError as exc:
        raise HarnessError(f"cannot start a private redis-server: {exc}") from exc
    try:
        yield server.url
    finally:
        server.stop()


def _feed(reader: hiredis.Reader, data: bytes) -> None:
    """Give what a bare connection received to its reader; nothing means Redis closed it."""
    if not data:
        raise ConnectionError("Redis closed the connection")
    reader.feed(data)


def _checked(reply: Any) -> Any:
    """A reference call's reply; an error reply is raised (the reference must not fail)."""
    if isinstance(reply, hiredis.ReplyError):
        raise RuntimeError(f"Redis refused a reference call: {reply}")
    return reply


class BareConnection:
    """A socket to Redis and nothing on top: it sends bytes packed ahead of time and reads
    the reply with hiredis; no pool, no retries, no per-call packing or checks. The least work
    a client can do per call: with it, a reference row measures what a script costs on the
    design itself, whatever the client."""

    def __init__(self, url: str) -> None:
        kw: dict[str, Any] = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        if "path" in kw:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(kw["path"])
        else:
            self.sock = socket.create_connection((kw.get("host", "localhost"),
                                                  kw.get("port", 6379)))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = hiredis.Reader()
        if kw.get("password"):
            auth = [kw["username"], kw["password"]] if kw.get("username") else [kw["password"]]
            self.call(command("AUTH", *auth))
        if kw.get("db"):
            self.call(command("SELECT", kw["db"]))

    def read(self) -> Any:
        """The next reply (a push message, on a subscribed connection)."""
        while (reply := self._reader.gets()) is False:
            _feed(self._reader, self.sock.recv(65536))
        return _checked(reply)

    def call(self, request: bytes) -> Any:
        """The reply to ``request``, packed ahead (:func:`memgang.resp.command`)."""
        self.sock.sendall(request)
        return self.read()

    def load_script(self, name: str) -> bytes:
        """SCRIPT LOAD of memgang's script ``name``; its SHA-1, for EVALSHA."""
        sha: bytes = self.call(command("SCRIPT", "LOAD", scripts.sources()[name]))
        return sha

    def close(self) -> None:
        self.sock.close()


class AsyncBareConnection:
    """A :class:`BareConnection`'s socket (connected, authenticated, its scripts loaded)
    driven by asyncio instead: ``await call(request)`` writes bytes packed ahead and parses
    the reply with hiredis. The same least work per call, for the asyncio reference rows."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._stream, self._writer = reader, writer
        self._reader = hiredis.Reader()

    @classmethod
    async def take(cls, conn: BareConnection) -> AsyncBareConnection:
        """Take over ``conn``'s socket (``conn`` is not used again)."""
        reader, writer = await asyncio.open_connection(sock=conn.sock)
        return cls(reader, writer)

    async def call(self, request: bytes) -> Any:
        self._writer.write(request)
        while (reply := self._reader.gets()) is False:
            _feed(self._reader, await self._stream.read(65536))
        return _checked(reply)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def bare_write_calls(conn: BareConnection, swarm: str, agent: str,
                     items: Sequence[tuple[str, Any]], **options: Any) -> list[bytes]:
    """One packed call per (key, value): memgang's own write.lua call, planned ahead by
    memgang's sans-I/O core with the settings ``memgang.connect()`` uses, packed as plain
    ``EVALSHA`` for ``conn`` (whose server it loads the script on). What a write costs on
    this design with a client that does nothing per call: the reference rows of the
    throughput and events benchmarks."""
    sha = conn.load_script("write")
    ks = SwarmKeys(swarm)
    settings = Settings(Codec(), MemgangConfig().log_maxlen)
    plans = [plan_write(ks, settings, target(swarm, agent, key)[0], agent, value, **options)
             for key, value in items]
    return [p.call.evalsha(sha) for p in plans]


# --- workers ----------------------------------------------------------------------------------


# fork starts 16 workers in milliseconds and needs nothing picklable; elsewhere, specs must be
# module-level functions (or functools.partial of them) so that spawn can pickle them.
if sys.platform == "linux":
    _CONTEXT = multiprocessing.get_context("fork")
else:
    _CONTEXT = multiprocessing.get_context("spawn")


def _child_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # fork may inherit main()'s handler


def _critical_sync(counter: redis.Redis, key: str, hold: Hold, readers_only: bool) -> None:
    if hold == "getset":
        value = counter.get(key)
        if not readers_only:  # non-atomic read-modify-write: an overlap loses an update
            counter.set(key, int(value or 0) + 1)


async def _critical_async(
    counter: redis.asyncio.Redis, key: str, hold: Hold, readers_only: bool
) -> None:
    if hold == "getset":
        value = await counter.get(key)
        if not readers_only:
            await counter.set(key, int(value or 0) + 1)


def _process_worker(
    spec: ImplSpec,
    target: Target,
    hold: Hold,
    conn: Connection,
    go: Event,
    deadline: ctypes.c_int64,
) -> None:
    _child_signals()
    try:
        key = target.key("counter")
        with redis.Redis.from_url(target.url) as counter, spec.open_sync(target) as lock:
            counter.ping()  # connect now, not inside the window
            conn.send(("ready", None))
            if not go.wait(READY_TIMEOUT_S):
                raise TimeoutError("no start signal")
            records: Records = array("q")
            end = deadline.value
            while (requested := time.monotonic_ns()) < end:
                lock.acquire()
                acquired = time.monotonic_ns()
                _critical_sync(counter, key, hold, spec.readers_only)
                released = time.monotonic_ns()
                lock.release()
                records.extend((requested, acquired, released))
        conn.send(("done", [records]))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _asyncio_worker(
    spec: ImplSpec,
    target: Target,
    hold: Hold,
    tasks: int,
    conn: Connection,
    go: Event,
    deadline: ctypes.c_int64,
) -> None:
    _child_signals()
    try:
        conn.send(
            ("done", asyncio.run(_asyncio_main(spec, target, hold, tasks, conn, go, deadline)))
        )
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


async def _asyncio_main(
    spec: ImplSpec,
    target: Target,
    hold: Hold,
    tasks: int,
    conn: Connection,
    go: Event,
    deadline: ctypes.c_int64,
) -> list[Records]:
    assert spec.open_async is not None
    key = target.key("counter")
    counter = redis.asyncio.Redis.from_url(target.url)
    try:
        await counter.ping()
        async with spec.open_async(target) as make_lock:
            locks = [make_lock(task) for task in range(tasks)]
            conn.send(("ready", None))
            if not await asyncio.to_thread(go.wait, READY_TIMEOUT_S):
                raise TimeoutError("no start signal")
            end = deadline.value

            async def run(lock: AsyncLock) -> Records:
                records: Records = array("q")
                while (requested := time.monotonic_ns()) < end:
                    await lock.acquire()
                    acquired = time.monotonic_ns()
                    await _critical_async(counter, key, hold, spec.readers_only)
                    released = time.monotonic_ns()
                    await lock.release()
                    records.extend((requested, acquired, released))
                return records

            return await asyncio.gather(*(run(lock) for lock in locks))
    finally:
        await counter.aclose()


def _collect(conns: Sequence[Connection], expected: str, timeout_s: float) -> list[Any]:
    """Each worker's next message, which must be ``expected``; in worker order."""
    deadline = time.monotonic() + timeout_s
    pending = dict(enumerate(conns))
    payloads: dict[int, Any] = {}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerError(f"{len(pending)} worker(s) not {expected} after {timeout_s:.0f} s")
        ready = wait_for_connections(list(pending.values()), timeout=remaining)
        for index, conn in list(pending.items()):
            if conn not in ready:
                continue
            try:
                kind, payload = conn.recv()
            except EOFError:
                raise WorkerError(f"worker {index} exited without reporting") from None
            if kind == "error":
                raise WorkerError(f"worker {index} failed:\n{payload}")
            if kind != expected:
                raise WorkerError(f"worker {index} sent {kind!r}, expected {expected!r}")
            payloads[index] = payload
            del pending[index]
    return [payloads[index] for index in range(len(conns))]


def _stop_workers(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(STOP_TIMEOUT_S)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _command_calls(client: redis.Redis) -> dict[str, int]:
    """Total calls per command since the server started (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def _cpu_seconds(client: redis.Redis) -> float:
    """The server's user + sys CPU time since it started (``INFO cpu``), all threads."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _unlink_tagged(client: redis.Redis, tag: str) -> None:
    for key in client.scan_iter(match=f"*{tag}*", count=1000):
        client.unlink(key)


@dataclass(frozen=True)
class _Run:
    records: list[Records]  # one per worker (process or task)
    start_ns: int
    deadline_ns: int
    counter: int
    calls: dict[str, int]  # command calls during the run, setup commands excluded
    redis_cpu_s: float  # the server's user + sys CPU time during the run


def _run_workers(spec: ImplSpec, config: Config, target: Target, admin: redis.Redis) -> _Run:
    go = _CONTEXT.Event()
    deadline = _CONTEXT.RawValue(ctypes.c_int64, 0)
    procs: list[multiprocessing.process.BaseProcess] = []
    conns: list[Connection] = []

    def start(worker: Callable[..., None], *args: object) -> None:
        parent_end, child_end = _CONTEXT.Pipe(duplex=False)
        procs.append(
            _CONTEXT.Process(target=worker, args=(*args, child_end, go, deadline), daemon=True)
        )
        procs[-1].start()
        child_end.close()
        conns.append(parent_end)

    try:
        if config.mode == "processes":
            for worker in range(config.workers):
                start(_process_worker, spec, Target(target.url, target.tag, worker), config.hold)
        else:
            start(_asyncio_worker, spec, target, config.hold, config.workers)
        _collect(conns, "ready", READY_TIMEOUT_S)
        before = _command_calls(admin)
        cpu_before = _cpu_seconds(admin)
        start_ns = time.monotonic_ns()
        deadline.value = start_ns + round(config.seconds * 1e9)
        go.set()
        records = [
            r for batch in _collect(conns, "done", config.seconds + DRAIN_TIMEOUT_S) for r in batch
        ]
        cpu_after = _cpu_seconds(admin)
        after = _command_calls(admin)
        counter = int(admin.get(target.key("counter")) or 0)
    finally:
        _stop_workers(procs)
        for conn in conns:
            conn.close()
    calls = {
        name: total - before.get(name, 0)
        for name, total in after.items()
        if name not in SETUP_COMMANDS and total != before.get(name, 0)
    }
    return _Run(records, start_ns, deadline.value, counter, calls, cpu_after - cpu_before)


# --- metrics ----------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of a non-empty sorted sequence."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _ms(ns: int) -> float:
    return round(ns / 1e6, 4)


def _fill_metrics(row: Row, run: _Run, hold: Hold) -> None:
    grants: list[tuple[int, int, int, int]] = []  # (acquired, released, requested, worker)
    per_worker: list[int] = []
    for worker, records in enumerate(run.records):
        triples = [
            (records[i + 1], records[i + 2], records[i], worker) for i in range(0, len(records), 3)
        ]
        grants.extend(triples)
        per_worker.append(sum(1 for t in triples if t[0] <= run.deadline_ns))
    if not grants:
        raise WorkerError("no acquisition at all")
    grants.sort()
    total = len(grants)
    row.acquisitions = sum(per_worker)
    row.acquisitions_total = total
    row.acq_per_s = round(row.acquisitions / ((run.deadline_ns - run.start_ns) / 1e9), 1)
    row.min_per_worker, row.max_per_worker = min(per_worker), max(per_worker)
    row.fairness = round(row.min_per_worker / row.max_per_worker, 3) if row.max_per_worker else 0.0
    waits = sorted(acquired - requested for acquired, _, requested, _ in grants)
    row.wait_p50_ms = _ms(_percentile(waits, 0.50))
    row.wait_p99_ms = _ms(_percentile(waits, 0.99))
    row.wait_max_ms = _ms(waits[-1])

    bench_calls: dict[str, int] = {}
    if row.readers_only:
        row.lost_updates = run.counter  # readers never write: any value means a writer got in
        row.violations = run.counter
        if hold == "getset":
            bench_calls = {"get": total}
    else:
        handoffs: list[int] = []
        held_until = grants[0][1]
        for previous, current in itertools.pairwise(grants):
            handoffs.append(current[0] - previous[1])
            row.overlaps += current[0] < held_until
            held_until = max(held_until, current[1])
        if handoffs:
            handoffs.sort()
            row.handoff_p50_ms = _ms(_percentile(handoffs, 0.50))
            row.handoff_p99_ms = _ms(_percentile(handoffs, 0.99))
            same = sum(p[3] == c[3] for p, c in itertools.pairwise(grants))
            row.same_holder = round(same / len(handoffs), 3)
        if hold == "getset":
            row.lost_updates = total - run.counter
            bench_calls = {"get": total, "set": total}
        row.violations = row.overlaps + abs(row.lost_updates)

    calls = {name: n - bench_calls.get(name, 0) for name, n in run.calls.items()}
    row.commands_per_acquisition = round(sum(calls.values()) / total, 2)
    row.commands = {
        name: round(n / total, 3) for name, n in sorted(calls.items(), key=lambda kv: -kv[1]) if n
    }
    row.redis_cpu_us_per_acquisition = round(run.redis_cpu_s * 1e6 / total, 1)


def run_config(spec: ImplSpec, config: Config, url: str, tag: str, admin: redis.Redis) -> Row:
    """Measure one configuration; a failure becomes an ``error`` row (traceback on stderr)."""
    row = Row(
        impl=spec.name,
        hold=config.hold,
        mode=config.mode,
        workers=config.workers,
        seconds=config.seconds,
        readers_only=spec.readers_only,
    )
    missing = [name for name in spec.requires if not importable(name)]
    if missing:
        row.status, row.note = "skipped", f"skipped: {INSTALL_HINT}"
        return row
    if config.mode == "asyncio" and spec.open_async is None:
        row.status, row.note = "skipped", "n/a: no asyncio API"
        return row
    target = Target(url, tag)
    try:
        if spec.setup is not None:
            spec.setup(target)
        _fill_metrics(row, _run_workers(spec, config, target, admin), config.hold)
    except Exception as exc:  # one broken configuration must not hide the others
        detail = str(exc) if isinstance(exc, WorkerError) else traceback.format_exc()
        print(f"\n{spec.name} / {config.hold} / {config.label}: {detail}", file=sys.stderr)
        row.status, row.note = "error", f"error: {detail.strip().splitlines()[-1]}"
    finally:
        with contextlib.suppress(redis.RedisError):
            _unlink_tagged(admin, tag)
    return row


def importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def set_floor_ratios(rows: Sequence[Row], floor: str) -> None:
    """Fill ``x_floor``: each row's acquisitions/s over the floor's in the same group (rows
    of one round: the ratio of two runs made minutes apart would measure the machine)."""
    base = {
        (r.hold, r.mode, r.workers): r.acq_per_s
        for r in rows
        if r.impl == floor and r.status == "ok"
    }
    for row in rows:
        reference = base.get((row.hold, row.mode, row.workers))
        if row.status == "ok" and reference:
            row.x_floor = round(row.acq_per_s / reference, 3)


def combine_rounds(rounds: Sequence[Row]) -> Row:
    """One configuration's rounds (same impl, hold, workers; each with its x_floor from its
    own round) as one row. The round of median acquisitions/s stands for all (its figures
    stay those of one real run: percentiles of different runs do not average), ``x_floor``
    is the median of the rounds' ratios, and the violations are every round's: a median
    must never hide one. A round that failed makes the row that failure."""
    failed = next((row for row in rounds if row.status != "ok"), None)
    if failed is not None:
        if failed.status == "error" and len(rounds) > 1:
            failed = replace(failed, note=f"{failed.note} (one of {len(rounds)} rounds)")
        return failed
    ordered = sorted(rounds, key=lambda row: row.acq_per_s)
    row = replace(ordered[(len(ordered) - 1) // 2])
    row.rounds_acq_per_s = [r.acq_per_s for r in rounds]
    row.rounds_x_floor = [r.x_floor for r in rounds]  # None: that round's floor failed
    ratios = [x for x in row.rounds_x_floor if x is not None]
    row.x_floor = round(statistics.median(ratios), 3) if ratios else None
    row.overlaps = sum(r.overlaps for r in rounds)
    row.lost_updates = sum(r.lost_updates for r in rounds)
    row.violations = sum(r.violations for r in rounds)
    return row


# --- output -----------------------------------------------------------------------------------

_COLUMNS = (
    "workers",
    "impl",
    "acq/s",
    "x floor",
    "handoff p50",
    "handoff p99",
    "wait p99",
    "wait max",
    "min",
    "max",
    "min/max",
    "same",
    "viol",
    "cmd/acq",
    "redis us/acq",
)


_NOTE_WIDTH = 100


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _msf(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _cells(row: Row) -> list[str]:
    workers = f"{row.workers} tasks" if row.mode == "asyncio" else str(row.workers)
    if row.status != "ok":  # the full note is on stderr and in --json
        note = row.note if len(row.note) <= _NOTE_WIDTH else row.note[: _NOTE_WIDTH - 3] + "..."
        return [workers, row.impl, note]
    return [
        workers,
        row.impl,
        f"{row.acq_per_s:,.0f}",
        _num(row.x_floor, ".2f"),
        _msf(row.handoff_p50_ms),
        _msf(row.handoff_p99_ms),
        _msf(row.wait_p99_ms),
        _msf(row.wait_max_ms),
        str(row.min_per_worker),
        str(row.max_per_worker),
        f"{row.fairness:.2f}",
        _num(row.same_holder, ".0%"),
        str(row.violations),
        _num(row.commands_per_acquisition, ".1f"),
        _num(row.redis_cpu_us_per_acquisition, ".0f"),
    ]


def render_table(rows: Sequence[Row], header: str) -> str:
    """One aligned table per hold; a blank line between worker counts; notes span the row."""
    cells = [_cells(row) for row in rows]
    full = [list(_COLUMNS), *(values for values in cells if len(values) == len(_COLUMNS))]
    widths = [max(len(values[i]) for values in full) for i in range(len(_COLUMNS))]
    for values in cells:  # notes span the metrics but still align workers and impl
        widths[0], widths[1] = max(widths[0], len(values[0])), max(widths[1], len(values[1]))

    def line(values: Sequence[str]) -> str:
        if len(values) == 3:  # a skipped or failed row: its note spans the metrics
            return f"{values[0].ljust(widths[0])}  {values[1].ljust(widths[1])}  {values[2]}"
        left = [value.ljust(width) for value, width in zip(values[:2], widths[:2], strict=True)]
        right = [value.rjust(width) for value, width in zip(values[2:], widths[2:], strict=True)]
        return "  ".join(left + right)

    out = [
        header,
        "times in ms; handoff = release -> next holder's acquire; wait = acquire() called -> held;",
        "min/max = acquisitions per worker in the window; same = consecutive grants to one worker;",
        "viol = overlapping holds + lost counter updates; cmd/acq = commands Redis ran per "
        "acquisition,",
        "those inside Lua scripts included; redis us/acq = the server's CPU time (user + sys) per",
        "acquisition; N tasks = asyncio tasks in one process",
    ]
    previous: tuple[Hold, Mode, int] | None = None
    for row, values in zip(rows, cells, strict=True):
        group = (row.hold, row.mode, row.workers)
        if previous is None or group[0] != previous[0]:
            out += ["", f"hold: {row.hold}", line(_COLUMNS)]
        elif group != previous:
            out.append("")
        if group == previous:
            values = ["", *values[1:]]
        out.append(line(values).rstrip())
        previous = group
    return "\n".join(out)


def write_chart(rows: Sequence[Row], path: str) -> None:
    """Acquisitions/s and wait p99 against workers: one line per impl, one column per hold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [row for row in rows if row.status == "ok"]
    holds = list(dict.fromkeys(row.hold for row in ok))
    xs = list(dict.fromkeys((row.mode, row.workers) for row in ok))
    labels = [f"{w}" if m == "processes" else f"{w} tasks" for m, w in xs]
    fig, axes = plt.subplots(
        2, max(1, len(holds)), figsize=(6.5 * max(1, len(holds)), 8), squeeze=False
    )
    for col, hold in enumerate(holds):
        for color, impl in enumerate(dict.fromkeys(row.impl for row in ok)):
            for mode, style in (("processes", "-o"), ("asyncio", "s")):  # asyncio: unjoined
                mine = [row for row in ok if (row.hold, row.impl, row.mode) == (hold, impl, mode)]
                pos = [xs.index((row.mode, row.workers)) for row in mine]
                label = impl if mode == "processes" else None
                for ax, values in (
                    (axes[0][col], [row.acq_per_s for row in mine]),
                    (axes[1][col], [row.wait_p99_ms for row in mine]),
                ):
                    ax.plot(pos, values, style, color=f"C{color}", label=label)
        axes[0][col].set_title(f"hold: {hold}")
        axes[0][col].set_ylabel("acquisitions/s")
        axes[1][col].set_ylabel("wait p99 (ms)")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_yscale("log")
            ax.set_xticks(range(len(xs)), labels)
            ax.set_xlabel("workers (processes, or asyncio tasks in one process)")
            ax.grid(True, which="both", alpha=0.3)
    if ok:
        axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
