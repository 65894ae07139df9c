"""Lock benchmark: implementation x workers x hold, every worker started at the same instant.

    python -m benchmarks.locks [--json] [--quick] [--url URL] [--seconds S] [--rounds R]
                               [--workers 1,2,4] [--tasks 64] [--impl NAME,...]
                               [--hold empty,getset] [--chart PATH.png]

Workers are processes (``--workers``), plus one process running ``--tasks`` asyncio tasks.
Holds: ``empty`` (acquire, release) and ``getset`` (GET then SET of a shared counter inside the
lock: a non-atomic read-modify-write, so an overlap shows up as a lost update). Without
``--url`` a private redis-server is started (``$MEMGANG_REDIS_SERVER``, else PATH) and stopped.
With ``--url``, the server should be otherwise idle: commands per acquisition come from
``INFO commandstats`` deltas, which count everyone's commands.

Rounds: each configuration runs ``--rounds`` times (3; ``--quick`` 1), every implementation
once per round, in a rotated order each round. A ratio is taken between runs of the same
round, moments apart: on a shared machine the speed of everything drifts by tens of percent
over minutes, which a single pass would book against whichever row ran at the wrong time.
A row shows its median round (by acquisitions/s; all its figures from that one run),
``x floor`` is the median of its rounds' ratios, and ``viol`` counts every round's.

``floor`` is one token handed over with BLPOP/LPUSH, the fastest hand-off Redis allows; it
always runs, as the reference for the ``x floor`` column. Every lease is ``LEASE_S`` and every
wait is bounded by ``WAIT_S``, far above any hold, so no lease expires during a run.

``lua-write(bare)`` is a reference, not a peer: memgang's own lock scripts (acquire,
release) for a ``write`` lease, sent by a bare client (``BareConnection``: a socket and
hiredis, no client work beyond packing), a queued worker waiting for its grant on a bare
subscribed socket. It is what memgang's lock costs on its design with no memgang client
code, so ``memgang-write`` against it is the cost of memgang's client, and it against
``floor`` the cost of the design's scripts and protocol.

Exit status: 0, or 1 if a configuration failed or saw a mutual-exclusion violation, or 2 if
the benchmark could not run.

Registering an implementation
-----------------------------
``IMPLEMENTATIONS`` maps a row name to an ``ImplSpec``; add one with ``register_impl``::

    register_impl(
        "memgang-write",
        open_sync,            # (Target) -> context manager yielding a SyncLock; entered once
                              #   per worker process: connect there, close on exit
        open_async=None,      # (Target) -> async context manager yielding make_lock(task: int)
                              #   -> AsyncLock; entered once per asyncio process (share one
                              #   client), make_lock called once per task. None: row is "n/a"
        readers_only=False,   # True for shared (read) locks: no overlap check, getset only
                              #   GETs, and the counter must stay unwritten
        requires=("pkg",),    # modules that must be importable, else the row is
                              #   "skipped: pip install 'memgang[bench]'"
        setup=None,           # (Target) -> None, once in the parent before workers start
    )

``SyncLock`` has ``acquire() -> None`` (blocks until held, raises on giving up) and
``release() -> None``; ``AsyncLock`` the same as coroutines. ``Target`` has ``url``, ``tag``
(unique per configuration, ``[a-z0-9-]``, usable as a memgang swarm name), ``worker`` (process
index) and ``key(suffix)`` -> ``"bench:{tag}:{suffix}"``. Keys containing the tag are deleted
after each configuration. Build every connection inside ``open_*`` (workers are forked on Linux
and spawned elsewhere, so ``open_*`` and ``setup`` must be module-level functions or
``functools.partial`` of them). Re-registering a name replaces it.

memgang's own rows (``memgang-write``, ``memgang-exclusive``, ``memgang-read``) live in
``memgang/bench_locks.py``, which defines ``register(register_impl) -> None`` and calls
``register_impl`` for each; this module calls it on import when memgang is importable. That
module needs no import from ``benchmarks`` at run time (the types can be imported under
``TYPE_CHECKING`` from ``benchmarks._harness``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from types import FrameType
from typing import Any

import redis
import redis.asyncio

from benchmarks._harness import (
    HOLDS,
    INSTALL_HINT,
    AsyncLock,
    BareConnection,
    Config,
    HarnessError,
    Hold,
    ImplSpec,
    OpenAsync,
    OpenSync,
    Row,
    Setup,
    SyncLock,
    Target,
    combine_rounds,
    importable,
    render_table,
    run_config,
    server_url,
    set_floor_ratios,
    write_chart,
)
from memgang.config import redact
from memgang.resp import command

__all__ = [
    "IMPLEMENTATIONS",
    "AsyncLock",
    "ImplSpec",
    "SyncLock",
    "Target",
    "main",
    "register_impl",
]

LEASE_S = 30  # whole seconds: python-redis-lock takes int expiries
WAIT_S = 30
FLOOR = "floor"
QUICK_SECONDS, DEFAULT_SECONDS = 0.5, 2.0
DEFAULT_ROUNDS = 3
QUICK_WORKERS, DEFAULT_WORKERS = (1, 4), (1, 2, 4, 8, 16)
DEFAULT_TASKS = 64

IMPLEMENTATIONS: dict[str, ImplSpec] = {}


def register_impl(
    name: str,
    open_sync: OpenSync,
    *,
    open_async: OpenAsync | None = None,
    readers_only: bool = False,
    requires: Sequence[str] = (),
    setup: Setup | None = None,
) -> ImplSpec:
    """Add (or replace) the row ``name``; see the module docstring."""
    spec = ImplSpec(name, open_sync, open_async, readers_only, tuple(requires), setup)
    IMPLEMENTATIONS[name] = spec
    return spec


# --- adapters and clients ---------------------------------------------------------------------


class _Checked:
    """A lock whose ``acquire()`` returns False on timeout, made to raise instead."""

    def __init__(self, acquire: Callable[[], bool], release: Callable[[], object]) -> None:
        self._acquire, self._release = acquire, release

    def acquire(self) -> None:
        if not self._acquire():
            raise TimeoutError(f"not acquired within {WAIT_S} s")

    def release(self) -> None:
        self._release()


class _AsyncChecked:
    """``_Checked`` for coroutines."""

    def __init__(
        self, acquire: Callable[[], Awaitable[bool]], release: Callable[[], Awaitable[object]]
    ) -> None:
        self._acquire, self._release = acquire, release

    async def acquire(self) -> None:
        if not await self._acquire():
            raise TimeoutError(f"not acquired within {WAIT_S} s")

    async def release(self) -> None:
        await self._release()


@contextlib.contextmanager
def _client(target: Target) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(target.url) as client:
        client.ping()  # connect before the start signal
        yield client


@contextlib.asynccontextmanager
async def _aclient(target: Target) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(target.url)
    try:
        await client.ping()
        yield client
    finally:
        await client.aclose()


# --- floor: one token on a list ---------------------------------------------------------------

_TOKEN = b"token"


def _floor_setup(target: Target) -> None:
    with redis.Redis.from_url(target.url) as client:
        client.lpush(target.key("token"), _TOKEN)


class _FloorLock:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client, self._key = client, key

    def acquire(self) -> None:
        if self._client.blpop([self._key], timeout=WAIT_S) is None:
            raise TimeoutError(f"no token within {WAIT_S} s")

    def release(self) -> None:
        self._client.lpush(self._key, _TOKEN)


class _AsyncFloorLock:
    def __init__(self, client: redis.asyncio.Redis, key: str) -> None:
        self._client, self._key = client, key

    async def acquire(self) -> None:
        if await self._client.blpop([self._key], timeout=WAIT_S) is None:
            raise TimeoutError(f"no token within {WAIT_S} s")

    async def release(self) -> None:
        await self._client.lpush(self._key, _TOKEN)


@contextlib.contextmanager
def _floor_sync(target: Target) -> Iterator[SyncLock]:
    with _client(target) as client:
        yield _FloorLock(client, target.key("token"))


@contextlib.asynccontextmanager
async def _floor_async(target: Target) -> AsyncIterator[Callable[[int], AsyncLock]]:
    async with _aclient(target) as client:  # the pool opens one connection per blocked BLPOP
        yield lambda _task: _AsyncFloorLock(client, target.key("token"))


# --- redis-py Lock: SET NX PX, polled every `sleep` seconds -----------------------------------


@contextlib.contextmanager
def _redis_py_sync(target: Target, *, sleep_s: float) -> Iterator[SyncLock]:
    with _client(target) as client:
        lock = client.lock(
            target.key("lock"), timeout=LEASE_S, sleep=sleep_s, blocking_timeout=WAIT_S
        )
        yield _Checked(lock.acquire, lock.release)


@contextlib.asynccontextmanager
async def _redis_py_async(
    target: Target, *, sleep_s: float
) -> AsyncIterator[Callable[[int], AsyncLock]]:
    async with _aclient(target) as client:

        def make_lock(_task: int) -> AsyncLock:
            lock = client.lock(
                target.key("lock"), timeout=LEASE_S, sleep=sleep_s, blocking_timeout=WAIT_S
            )
            return _AsyncChecked(lock.acquire, lock.release)

        yield make_lock


# --- python-redis-lock: SET NX EX, waiters BLPOP a signal list (sync only) --------------------


@contextlib.contextmanager
def _python_redis_lock_sync(target: Target) -> Iterator[SyncLock]:
    import redis_lock

    with _client(target) as client:
        lock = redis_lock.Lock(client, target.key("lock"), expire=LEASE_S)
        yield _Checked(functools.partial(lock.acquire, timeout=WAIT_S), lock.release)


# --- pottery Redlock on one master: SET NX PX, retried after a random sleep up to 0.2 s -------


@contextlib.contextmanager
def _pottery_sync(target: Target) -> Iterator[SyncLock]:
    from pottery import Redlock

    with _client(target) as client:
        lock = Redlock(key=target.key("lock"), masters={client}, auto_release_time=LEASE_S)
        yield _Checked(functools.partial(lock.acquire, timeout=WAIT_S), lock.release)


@contextlib.asynccontextmanager
async def _pottery_async(target: Target) -> AsyncIterator[Callable[[int], AsyncLock]]:
    from pottery import AIORedlock

    async with _aclient(target) as client:

        def make_lock(_task: int) -> AsyncLock:
            lock = AIORedlock(key=target.key("lock"), masters={client}, auto_release_time=LEASE_S)
            return _AsyncChecked(functools.partial(lock.acquire, timeout=WAIT_S), lock.release)

        yield make_lock


# --- reference: memgang's own lock scripts, sent by a bare client --------------------------------
# What a write lock costs on memgang's design with no memgang client code: lock_acquire.lua
# and lock_release.lua, planned by memgang's sans-I/O core and sent on a bare socket
# (BareConnection: one hiredis pack, sendall, hiredis reply); a queued worker waits for its
# grant on a second bare socket subscribed to its own wake channel. A reference for the
# scripts and the protocol, not a usable lock (no lease renewal, no cancel on timeout, no
# LockLost): it is no peer, and it has no asyncio row.

SCRIPTS_REF = "lua-write(bare)"


class _ScriptsLock:
    def __init__(self, target: Target) -> None:
        from memgang.config import Config
        from memgang.keys import SwarmKeys
        from memgang.locks import lock_call, new_lock_id
        from memgang.memory import target as resolve

        self._new_id = new_lock_id
        ks = SwarmKeys(target.tag)
        self._agent = f"w{target.worker}"
        self._call = lock_call(ks, resolve(ks.swarm, self._agent, "global/bench")[0],
                               Config().log_maxlen)
        self._wake = ks.wake(new_lock_id())
        self._conn = BareConnection(target.url)
        self._sub = BareConnection(target.url)
        self._sub.call(command("SUBSCRIBE", self._wake))  # its confirmation
        self._acquire_sha = self._conn.load_script("lock_acquire")
        self._release_sha = self._conn.load_script("lock_release")
        self._holder = ""

    def _eval(self, sha: bytes, args: Sequence[Any]) -> Any:
        keys = self._call.keys
        return self._conn.call(command("EVALSHA", sha, len(keys), *keys, *args))

    def acquire(self) -> None:
        from memgang.locks import Queued, interpret_acquire, parse_wake

        waiter = self._new_id()

        def ask(recheck: bool) -> object:
            args = self._call.acquire(waiter, self._agent, "write", LEASE_S * 1000, self._wake,
                                      False, recheck=recheck)
            return interpret_acquire(self._eval(self._acquire_sha, args), name="bench",
                                     agent=self._agent, mode="write")

        outcome = ask(False)
        deadline = time.monotonic() + WAIT_S
        while isinstance(outcome, Queued):
            self._sub.sock.settimeout(outcome.recheck_ms / 1000)
            try:
                message = self._sub.read()  # [b"message", channel, data]
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not acquired within {WAIT_S} s") from None
                outcome = ask(True)
                continue
            wake = parse_wake(message[2])
            if wake is not None and wake[0] == waiter:
                break
        if outcome is None:
            raise RuntimeError("lock_acquire.lua queued nothing")
        self._holder = waiter

    def release(self) -> None:
        from memgang.locks import interpret_release

        if not interpret_release(self._eval(self._release_sha, self._call.release(self._holder))):
            raise RuntimeError("the lease had ended before it was released")

    def close(self) -> None:
        self._conn.close()
        self._sub.close()


@contextlib.contextmanager
def _scripts_sync(target: Target) -> Iterator[SyncLock]:
    lock = _ScriptsLock(target)
    try:
        lock.acquire()  # load the scripts and settle the subscription before the start
        lock.release()
        yield lock
    finally:
        lock.close()


register_impl(FLOOR, _floor_sync, open_async=_floor_async, setup=_floor_setup)
register_impl(SCRIPTS_REF, _scripts_sync)
for _sleep_s in (0.1, 0.001):
    register_impl(
        f"redis-py({_sleep_s:g})",
        functools.partial(_redis_py_sync, sleep_s=_sleep_s),
        open_async=functools.partial(_redis_py_async, sleep_s=_sleep_s),
    )
register_impl("python-redis-lock", _python_redis_lock_sync, requires=("redis_lock",))
register_impl("pottery", _pottery_sync, open_async=_pottery_async, requires=("pottery",))


def _register_memgang() -> None:
    # memgang's own implementations live in memgang/bench_locks.py. Imported by name, not
    # `from memgang.bench_locks import register`, so that mypy passes before that module
    # exists; only its absence is tolerated: a broken memgang fails loudly.
    try:
        module = importlib.import_module("memgang.bench_locks")
    except ModuleNotFoundError as exc:
        if exc.name in ("memgang", "memgang.bench_locks"):
            return
        raise
    module.register(register_impl)


_register_memgang()


# --- command line -----------------------------------------------------------------------------


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text}") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1: {text}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.locks",
        description="Lock benchmark: implementation x workers x hold, all started at once.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (a list of rows) instead of the tables",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SECONDS} s per configuration, workers "
        f"{','.join(map(str, QUICK_WORKERS))} (for CI)",
    )
    parser.add_argument("--url", help="an otherwise idle Redis to use instead of starting one")
    parser.add_argument(
        "--seconds",
        type=_positive,
        help=f"measured window per configuration (default {DEFAULT_SECONDS})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"runs of every configuration, implementations in another order each round "
        f"(default {DEFAULT_ROUNDS}; --quick: 1)",
    )
    parser.add_argument(
        "--workers",
        type=_counts,
        help=f"worker process counts (default {','.join(map(str, DEFAULT_WORKERS))})",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=DEFAULT_TASKS,
        help=f"asyncio tasks in one process; 0 skips (default {DEFAULT_TASKS})",
    )
    parser.add_argument(
        "--impl",
        type=_names,
        default=tuple(IMPLEMENTATIONS),
        help=f"comma-separated, of: {', '.join(IMPLEMENTATIONS)} (default all)",
    )
    parser.add_argument(
        "--hold",
        type=_names,
        default=HOLDS,
        help=f"comma-separated, of: {', '.join(HOLDS)} (default both)",
    )
    parser.add_argument(
        "--chart", metavar="PATH.png", help="also plot acquisitions/s and wait p99 against workers"
    )
    parser.add_argument("--save-json", metavar="PATH", help="also write the --json document here")
    args = parser.parse_args(argv)
    unknown = [name for name in args.impl if name not in IMPLEMENTATIONS]
    if unknown:
        parser.error(f"unknown --impl {', '.join(unknown)}; known: {', '.join(IMPLEMENTATIONS)}")
    if not args.hold or any(hold not in HOLDS for hold in args.hold):
        parser.error(f"--hold takes {', '.join(HOLDS)}")
    if args.tasks < 0:
        parser.error("--tasks must be >= 0")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit, so that finally blocks stop workers and the server."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_on(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _configs(
    holds: Sequence[Hold], workers: Sequence[int], tasks: int, seconds: float
) -> list[Config]:
    configs: list[Config] = []
    for hold in holds:
        configs += [Config(hold, "processes", count, seconds) for count in workers]
        if tasks:
            configs.append(Config(hold, "asyncio", tasks, seconds))
    return configs


def _run(
    specs: Sequence[ImplSpec], configs: Sequence[Config], url: str, rounds: int
) -> tuple[list[Row], str]:
    """Every configuration ``rounds`` times, every implementation once per round, each round
    in another order (no implementation always runs first or last, next to the same one);
    each round's ratios against that round's floor, then one row per implementation."""
    prefix = f"lk{secrets.token_hex(3)}"
    cpus = os.cpu_count() or 0
    progress = sys.stderr.isatty()
    rows: list[Row] = []
    runs = 0
    with redis.Redis.from_url(url) as admin:
        version = str(admin.info("server")["redis_version"])
        for config in configs:
            by_impl: dict[str, list[Row]] = {spec.name: [] for spec in specs}
            for r in range(rounds):
                shift = r * len(specs) // rounds
                this_round: list[Row] = []
                for spec in [*specs[shift:], *specs[:shift]]:
                    if progress:
                        print(
                            f"\r\033[K{spec.name} / {config.hold} / {config.label}"
                            f" / round {r + 1} of {rounds} ...",
                            end="",
                            file=sys.stderr,
                            flush=True,
                        )
                    row = run_config(spec, config, url, f"{prefix}-{runs:04d}", admin)
                    runs += 1
                    row.redis_version, row.cpus = version, cpus
                    this_round.append(row)
                    by_impl[spec.name].append(row)
                set_floor_ratios(this_round, FLOOR)
            rows += [combine_rounds(by_impl[spec.name]) for spec in specs]
    if progress:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    return rows, version


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    seconds: float = args.seconds or (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    workers: Sequence[int] = args.workers or (QUICK_WORKERS if args.quick else DEFAULT_WORKERS)
    names = [FLOOR, *(name for name in args.impl if name != FLOOR)]
    specs = [IMPLEMENTATIONS[name] for name in names]
    configs = _configs(args.hold, workers, args.tasks, seconds)
    if args.chart and not importable("matplotlib"):  # say so now, not after the whole run
        print(f"--chart needs matplotlib: {INSTALL_HINT}", file=sys.stderr)
        return 2
    rounds: int = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
    try:
        with _sigterm_exits(), server_url(args.url) as url:
            rows, version = _run(specs, configs, url, rounds)
    except (HarnessError, redis.RedisError) as exc:
        print(f"benchmarks.locks: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    document = json.dumps([row.as_dict() for row in rows], indent=2)
    if args.save_json:
        with open(args.save_json, "w", encoding="utf-8") as file:
            file.write(document + "\n")
    if args.json:
        print(document)
    else:
        where = (redact(args.url) or "") if args.url else "a private redis-server (unix socket)"
        print(
            render_table(
                rows,
                f"memgang lock benchmark: Redis {version} at {where}, "
                f"{os.cpu_count()} CPUs, {seconds:g} s per configuration and round, "
                f"{rounds} round{'s' if rounds > 1 else ''} (figures: the median round's; "
                f"x floor: the median of each round's ratio to that round's floor)",
            )
        )
    if args.chart:
        write_chart(rows, args.chart)
    failed = [row for row in rows if row.status == "error" or row.violations]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
