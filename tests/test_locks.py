"""Locks: read / write / exclusive leases that the store enforces, fair (FIFO), fenced, with
wake-ups that need no polling. Real processes contend on a real (private) Redis."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from itertools import combinations, pairwise
from typing import Any

import pytest
import redis
from click.testing import CliRunner

import memgang
import memgang.aio
from memgang.cli import main as cli
from memgang.codec import loads_json
from memgang.keys import parse_full
from memgang.locks import LockState
from memgang.testing import fresh_swarm_name

import _lock_workers as workers
from _helpers import until

SPAWN = multiprocessing.get_context("spawn")
LOCK = workers.LOCK


def state(swarm: memgang.Swarm, name: str = LOCK) -> LockState | None:
    full = swarm.agent("observer").key(name)
    return next((s for s in swarm.locks() if s.name == full), None)


def queued(swarm: memgang.Swarm, name: str = LOCK) -> list[tuple[str, str]]:
    s = state(swarm, name)
    return [(w.agent, w.mode) for w in s.queue] if s else []


def holders(swarm: memgang.Swarm, name: str = LOCK) -> list[tuple[str, str]]:
    s = state(swarm, name)
    return sorted((h.agent, h.mode) for h in s.live) if s else []


def overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


class Procs:
    """Child processes sharing one result queue; killed (if still alive) at the end."""

    def __init__(self) -> None:
        self.out: Any = SPAWN.Queue()
        self.go: Any = SPAWN.Event()
        self.procs: list[Any] = []

    def start(self, fn: Callable[..., None], *args: Any) -> Any:
        proc = SPAWN.Process(target=fn, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def results(self, n: int, timeout_s: float = 90) -> list[Any]:
        return [self.out.get(timeout=timeout_s) for _ in range(n)]

    def close(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)


@pytest.fixture
def procs() -> Iterator[Procs]:
    group = Procs()
    try:
        yield group
    finally:
        group.close()


# -- many processes ---------------------------------------------------------------------------


def test_sixteen_processes_read_modify_write_under_write_lock_lose_no_update(
        url: str, swarm: memgang.Swarm, raw: redis.Redis, procs: Procs) -> None:
    for i in range(16):
        procs.start(workers.count_under_lock, url, swarm.name, f"w{i}", 2.5, procs.go,
                    procs.out)
    procs.go.set()
    results = procs.results(16)
    acquisitions = sum(n for _, n, _ in results)
    assert int(raw.get(workers.counter_key(swarm.name)) or 0) == acquisitions
    held = sorted(iv for _, _, ivs in results for iv in ivs)
    assert not [pair for pair in pairwise(held) if overlap(*pair)]
    # every worker got its turns (FIFO): nobody starved
    assert min(n for _, n, _ in results) > 0


def test_readers_overlap_each_other_and_a_writer_never_an_exclusive_holder(
        url: str, swarm: memgang.Swarm, procs: Procs) -> None:
    plan = [("r1", "read", 0.03), ("r2", "read", 0.03), ("w1", "write", 0.03),
            ("x1", "exclusive", 0.01)]
    for agent, mode, hold in plan:
        procs.start(workers.hold_in_loop, url, swarm.name, agent, mode, hold, 1.5, procs.go,
                    procs.out)
    procs.go.set()
    by_mode: dict[str, list[tuple[int, int]]] = {"read": [], "write": [], "exclusive": []}
    for _, mode, held in procs.results(len(plan)):
        by_mode[mode] += held
    assert all(by_mode.values()), "every mode was granted"
    others = by_mode["read"] + by_mode["write"]
    for x in by_mode["exclusive"]:
        assert not [iv for iv in others if overlap(x, iv)], "an exclusive holder shared the lock"
    reads = by_mode["read"]
    assert any(overlap(a, b) for a, b in combinations(reads, 2)), "readers overlapped"
    assert any(overlap(r, w) for r in reads for w in by_mode["write"]), "read+write overlapped"


def test_waiters_are_granted_in_the_order_they_queued(
        url: str, swarm: memgang.Swarm, raw: redis.Redis, procs: Procs) -> None:
    me = swarm.agent("first")
    names = [f"q{i}" for i in range(5)]
    with me.lock(LOCK, "write"):
        for i, name in enumerate(names):
            procs.start(workers.take_once, url, swarm.name, name, "write", procs.out)
            until(lambda i=i: len(queued(swarm)) == i + 1, f"{name} queued")
        assert queued(swarm) == [(n, "write") for n in names]
    procs.results(len(names))
    assert [v.decode() for v in raw.lrange(workers.order_key(swarm.name), 0, -1)] == names


def test_exclusive_is_not_starved_by_a_stream_of_readers(
        url: str, swarm: memgang.Swarm, procs: Procs) -> None:
    for i in range(3):
        procs.start(workers.hold_in_loop, url, swarm.name, f"r{i}", "read", 0.05, 1.5,
                    procs.go, procs.out)
    procs.go.set()
    until(lambda: len(holders(swarm)) >= 2, "readers holding")
    me = swarm.agent("boss")
    with me.lock(LOCK, "exclusive", timeout_s=20) as lease:  # FIFO: granted, not starved
        assert lease.token is not None
        assert holders(swarm) == [("boss", "exclusive")]
    procs.results(3)


# -- modes, fairness and refusals, in one process ------------------------------------------------


def test_compatible_modes_are_granted_together_and_others_refused(swarm: memgang.Swarm) -> None:
    a, b, c, d = (swarm.agent(n) for n in "abcd")
    with a.lock(LOCK, "read"), b.lock(LOCK, "read", timeout_s=0), \
            c.lock(LOCK, "write", timeout_s=0):
        assert holders(swarm) == [("a", "read"), ("b", "read"), ("c", "write")]
        with pytest.raises(memgang.LockTimeout):
            d.lock(LOCK, "write", timeout_s=0).acquire()
        with pytest.raises(memgang.LockTimeout):
            d.lock(LOCK, "exclusive", timeout_s=0).acquire()
    with a.lock(LOCK, "exclusive", timeout_s=0):
        for mode in ("read", "write", "exclusive"):
            with pytest.raises(memgang.LockTimeout):
                b.lock(LOCK, mode, timeout_s=0).acquire()
    assert state(swarm) is None  # nothing left behind: no holder, no queue, not indexed


def test_a_waiting_exclusive_blocks_readers_that_come_after_it(swarm: memgang.Swarm) -> None:
    r1, r2, x = swarm.agent("r1"), swarm.agent("r2"), swarm.agent("x")
    first = r1.lock(LOCK, "read").acquire()
    granted = threading.Event()

    def boss() -> None:
        with x.lock(LOCK, "exclusive", timeout_s=20):
            granted.set()

    thread = threading.Thread(target=boss)
    thread.start()
    until(lambda: queued(swarm) == [("x", "exclusive")], "the exclusive queued")
    with pytest.raises(memgang.LockTimeout):  # compatible with r1, but behind x: no barging
        r2.lock(LOCK, "read", timeout_s=0).acquire()
    assert not granted.is_set()
    first.release()  # the release grants x in the same step
    thread.join(20)
    assert granted.is_set()


def test_timeout_leaves_the_queue_and_grants_whoever_it_blocked(swarm: memgang.Swarm) -> None:
    r1, r2, x = swarm.agent("r1"), swarm.agent("r2"), swarm.agent("x")
    with r1.lock(LOCK, "read"):
        timed_out: list[memgang.LockTimeout] = []

        def boss() -> None:
            try:
                x.lock(LOCK, "exclusive", timeout_s=1.5).acquire()
            except memgang.LockTimeout as exc:
                timed_out.append(exc)

        got: list[Any] = []
        waiting = threading.Thread(target=boss)
        waiting.start()
        until(lambda: queued(swarm) == [("x", "exclusive")], "x queued")
        thread = threading.Thread(target=lambda: got.append(r2.lock(LOCK, "read",
                                                                      timeout_s=20).acquire()))
        thread.start()
        until(lambda: queued(swarm) == [("x", "exclusive"), ("r2", "read")],
              "r2 queued behind x")
        waiting.join(20)
        assert timed_out and timed_out[0].mode == "exclusive"
        thread.join(20)
        assert got and got[0].held  # x's timeout let r2 in next to r1
        assert holders(swarm) == [("r1", "read"), ("r2", "read")]
        assert queued(swarm) == []
        got[0].release()


def test_an_agent_waiting_on_its_own_hold_is_refused(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    with a.lock(LOCK, "read"):
        with pytest.raises(memgang.LockUpgradeRefused) as info:
            a.lock(LOCK, "exclusive", timeout_s=5).acquire()
        assert (info.value.held, info.value.asked) == ("read", "exclusive")
        with a.lock(LOCK, "write", timeout_s=0):  # read -> write with nobody queued: fine
            pass
        waiting = threading.Thread(target=lambda: b.lock(LOCK, "exclusive", timeout_s=20)
                                   .acquire().release())
        waiting.start()
        until(lambda: queued(swarm) == [("b", "exclusive")], "b queued")
        with pytest.raises(memgang.LockUpgradeRefused) as info:  # behind b, who waits for a
            a.lock(LOCK, "write", timeout_s=5).acquire()
        assert info.value.blocker == "b"
        assert queued(swarm) == [("b", "exclusive")]  # the refusal queued nothing
    waiting.join(20)
    with a.lock(LOCK, "write"), pytest.raises(memgang.LockUpgradeRefused):
        a.lock(LOCK, "write").acquire()


# -- mandatory locking and fencing -------------------------------------------------------------


def test_foreign_and_unfenced_writes_to_a_locked_key_are_refused(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write(LOCK, "v0")
    with a.lock(LOCK, "write") as lease:
        with pytest.raises(memgang.Locked) as info:
            b.write(LOCK, "by b")
        assert (info.value.holder, info.value.mode) == ("a", "write")
        with pytest.raises(memgang.Locked):
            b.delete(LOCK)
        with pytest.raises(memgang.Locked):  # the holder itself must show its token
            a.write(LOCK, "no fence")
        assert lease.token is not None
        with pytest.raises(memgang.StaleFence):
            a.write(LOCK, "old fence", fence=lease.token - 1 or 99)
        a.write(LOCK, "v1", fence=lease.token)
        obj = b.read(LOCK)  # a write lock lets readers read committed values
        assert obj is not None and obj.value == "v1"
    b.write(LOCK, "v2")  # released: anyone may write again
    obj = a.read(LOCK)
    assert obj is not None and obj.value == "v2"


def test_read_of_an_exclusive_key_is_refused_or_waits(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write(LOCK, "before")
    lease = a.lock(LOCK, "exclusive").acquire()
    with pytest.raises(memgang.Locked) as info:
        b.read(LOCK)
    assert info.value.mode == "exclusive"
    with pytest.raises(memgang.Locked):
        b.read(LOCK, wait_s=0.2)  # still held after the wait: refused
    own = a.read(LOCK)  # the holder reads its own key
    assert own is not None and own.value == "before"
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(b.read(LOCK, wait_s=20)))
    reader.start()
    until(lambda: queued(swarm) == [("b", "read")], "the read waiting behind the exclusive")
    a.write(LOCK, "after", fence=lease.token)
    lease.release()
    reader.join(20)
    assert got and got[0].value == "after"


def test_fencing_tokens_only_grow_even_after_the_lock_keys_are_gone(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    tokens = []
    for mode in ("write", "exclusive", "write"):
        with me.lock(LOCK, mode) as lease:
            tokens.append(lease.token)
        with me.lock(LOCK, "read") as lease:
            assert lease.token is None  # read leases carry no token
    key = swarm.agent("a").key(LOCK)
    k = parse_full(key)
    raw.delete(swarm.keys.lock(k), swarm.keys.lock_queue(k), swarm.keys.lock_waiters(k))
    assert raw.ttl(swarm.keys.fence(k)) == -1  # the counter never expires
    with me.lock(LOCK, "write") as lease:
        tokens.append(lease.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


def test_lock_events_are_in_the_swarm_log(swarm: memgang.Swarm, raw: redis.Redis) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    with a.lock(LOCK, "write") as lease:
        token = lease.token
    b.lock(LOCK, "read", lease_ms=20).acquire()  # dropped without release: it expires
    until(lambda: all(h.lease_left_ms <= 0 for h in state(swarm).holders),  # type: ignore[union-attr]
          "b's lease to end")
    with a.lock(LOCK, "exclusive"):  # finds the expired read lease and drops it
        pass
    events = [loads_json(f[b"e"]) for _, f in raw.xrange(swarm.keys.log)]
    seen = [(e["type"], e["agent"], e["mode"]) for e in events]
    assert seen == [
        ("lock_acquired", "a", "write"), ("lock_released", "a", "write"),
        ("lock_acquired", "b", "read"),
        ("lock_expired", "b", "read"), ("lock_acquired", "a", "exclusive"),
        ("lock_released", "a", "exclusive"),
    ]
    assert events[0]["version"] == token and events[0]["key"] == a.key(LOCK)


def test_a_lost_lease_raises_lock_lost_on_the_next_call_and_calls_back(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    lost: list[memgang.LockLost] = []
    lease = me.lock(LOCK, "write", on_lost=lost.append)
    with pytest.raises(memgang.LockLost), lease:  # raised by the exit, after the body
        k = parse_full(me.key(LOCK))
        raw.delete(swarm.keys.lock(k))  # the lease vanishes behind the holder's back
        with pytest.raises(memgang.LockLost):
            lease.renew()
        assert len(lost) == 1
        with pytest.raises(memgang.LockLost):
            _ = lease.token
    assert len(lost) == 1  # called once
    with lease:  # the same lease can be taken again
        assert lease.held


def test_the_async_watchdog_reports_a_lost_lease_by_itself(url: str, raw: redis.Redis) -> None:
    async def run() -> None:
        gang = await memgang.aio.connect(url)
        try:
            swarm = gang.swarm(fresh_swarm_name())
            me = swarm.agent("a")
            lost: list[memgang.LockLost] = []
            lease = await me.lock(LOCK, "write", lease_ms=300, on_lost=lost.append).acquire()
            raw.delete(swarm.keys.lock(parse_full(me.key(LOCK))))  # taken away behind its back
            for _ in range(2000):  # the watchdog's next renewal (every 100 ms) finds out
                if lost:
                    break
                await asyncio.sleep(0.005)
            assert len(lost) == 1 and lost[0].name == me.key(LOCK)
            with pytest.raises(memgang.LockLost):
                _ = lease.token
            with pytest.raises(memgang.LockLost):
                await lease.release()
            assert not lease.held and len(lost) == 1
        finally:
            await gang.close()

    asyncio.run(run())


def test_the_watchdog_keeps_a_short_lease_alive_while_its_holder_lives(
        swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    with a.lock(LOCK, "write", lease_ms=300) as lease:
        time.sleep(1.0)  # three leases long: renewed all along
        with pytest.raises(memgang.LockTimeout):
            b.lock(LOCK, "write", timeout_s=0).acquire()
        a.write(LOCK, "still mine", fence=lease.token)


def test_the_wake_connection_recovers_when_redis_kills_it(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    first = a.lock(LOCK, "write", lease_ms=60_000).acquire()
    got: list[Any] = []
    # 60 s leases: the re-check timer (30 s) cannot be what brings the grant
    thread = threading.Thread(target=lambda: got.append(
        b.lock(LOCK, "write", timeout_s=20, lease_ms=60_000).acquire()))
    thread.start()
    until(lambda: queued(swarm) == [("b", "write")], "b queued")
    # the wake connection is named for what it does (CLIENT LIST tells it from the events')
    assert any(c.get("name") == "memgang-locks" and int(c["sub"]) >= 1
               for c in raw.client_list())
    assert raw.client_kill_filter(_type="pubsub") >= 1
    first.release()
    thread.join(20)
    assert got and got[0].held
    got[0].release()


def test_async_leases_are_fifo_among_tasks(url: str) -> None:
    async def run() -> list[str]:
        gang = await memgang.aio.connect(url)
        try:
            swarm = gang.swarm(fresh_swarm_name())
            order: list[str] = []
            first = await swarm.agent("first").lock(LOCK).acquire()

            async def take(name: str) -> None:
                async with swarm.agent(name).lock(LOCK, timeout_s=20) as lease:
                    order.append(name)
                    await swarm.agent(name).write(LOCK, name, fence=lease.token)

            tasks = []
            for i in range(5):
                tasks.append(asyncio.create_task(take(f"t{i}")))
                while len((await swarm.locks())[0].queue) < i + 1:
                    await asyncio.sleep(0.005)
            await first.release()
            await asyncio.gather(*tasks)
            obj = await swarm.agent("first").read(LOCK)
            assert obj is not None and obj.value == "t4"
            return order
        finally:
            await gang.close()

    assert asyncio.run(run()) == [f"t{i}" for i in range(5)]


def test_cli_locks_shows_mode_holders_lease_and_queue(url: str, swarm: memgang.Swarm) -> None:
    a = swarm.agent("a")
    with a.lock(LOCK, "write", lease_ms=30_000):
        thread = threading.Thread(target=lambda: swarm.agent("b").lock(
            LOCK, "exclusive", timeout_s=20).acquire().release())
        thread.start()
        until(lambda: queued(swarm) == [("b", "exclusive")], "b queued")
        result = CliRunner().invoke(cli, ["locks", swarm.name, "--url", url, "--json"])
        assert result.exit_code == 0, result.output
        [lock] = loads_json(result.output)
        assert lock["name"] == a.key(LOCK) and lock["mode"] == "write"
        [holder] = lock["holders"]
        assert holder["agent"] == "a" and 0 < holder["lease_left_ms"] <= 30_000
        assert [(w["agent"], w["mode"]) for w in lock["queue"]] == [("b", "exclusive")]
        text = CliRunner().invoke(cli, ["locks", swarm.name, "--url", url])
        assert text.exit_code == 0 and "exclusive" in text.output and "lease left" in text.output
    thread.join(20)
    empty = CliRunner().invoke(cli, ["locks", swarm.name, "--url", url, "--json"])
    assert empty.exit_code == 0 and loads_json(empty.output) == []


def test_bad_lock_arguments_are_refused_before_redis(swarm: memgang.Swarm) -> None:
    me = swarm.agent("a")
    with pytest.raises(memgang.InvalidValue, match="mode"):
        me.lock(LOCK, "upgrade")
    with pytest.raises(memgang.InvalidValue, match="lease_ms"):
        me.lock(LOCK, lease_ms=0)
    with pytest.raises(memgang.InvalidValue, match="timeout_s"):
        me.lock(LOCK, timeout_s=-1)
    with pytest.raises(memgang.InvalidKey):
        me.lock("a/b/c/d")
    with pytest.raises(memgang.LockError, match="not held"):
        me.lock(LOCK).release()
