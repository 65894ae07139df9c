"""Compute-once across agents: one computation however many agents ask at once, takeover
when the computing agent dies, errors handed to the waiters, and a stable content hash."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner

import memgang
import memgang.aio
from memgang import memo
from memgang.cli import main
from memgang.testing import fresh_swarm_name

import _agent_workers as workers
from _helpers import until

SPAWN = multiprocessing.get_context("spawn")


class Agents:
    """Agent processes sharing one result queue; killed (if still alive) at the end."""

    def __init__(self, url: str, swarm: str) -> None:
        self.url, self.swarm = url, swarm
        self.out: Any = SPAWN.Queue()
        self.procs: list[Any] = []

    def start(self, agent: str, behaviour: str, go: Any = None, **kw: Any) -> Any:
        proc = SPAWN.Process(target=workers.compute_worker,
                             args=(self.url, self.swarm, agent, behaviour, go, self.out),
                             kwargs=kw, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def results(self, n: int) -> list[tuple[Any, ...]]:
        return [self.out.get(timeout=60) for _ in range(n)]

    def close(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)


@pytest.fixture
def agents(url: str, swarm: memgang.Swarm) -> Iterator[Agents]:
    group = Agents(url, swarm.name)
    try:
        yield group
    finally:
        group.close()


def count(raw: redis.Redis, swarm: memgang.Swarm, what: str) -> int:
    return int(raw.get(workers.counter_key(swarm.name, what)) or 0)


def memo_hash(raw: redis.Redis, swarm: memgang.Swarm) -> dict[bytes, bytes]:
    d = memo.digest("summarize", workers.INPUTS)
    return raw.hgetall(swarm.keys.memo(d))  # type: ignore[return-value]


@pytest.mark.parametrize("n", [2, 8])
def test_agents_asking_at_once_compute_exactly_once(
        n: int, agents: Agents, swarm: memgang.Swarm, raw: redis.Redis) -> None:
    go = SPAWN.Event()
    for i in range(n):
        agents.start(f"a{i}", "slow", go)
    go.set()
    results = agents.results(n)
    assert count(raw, swarm, "started") == 1
    assert count(raw, swarm, "finished") == 1
    assert {r[0] for r in results} == {"ok"}
    assert len({repr(r[1]) for r in results}) == 1  # everyone has the one result
    stats = [r[2] for r in results]
    assert sum(s["misses"] for s in stats) == 1
    assert sum(s["hits"] + s["waits"] for s in stats) == n - 1
    # each reuse is credited with the time the computation took
    compute_ms = sum(s["compute_ms"] for s in stats)
    assert sum(s["saved_ms"] for s in stats) == compute_ms * (n - 1)
    # and the counters reached Redis (flushed when each agent's gang closed)
    kept = swarm.stats()
    assert sum(s["misses"] for s in kept.values()) == 1
    assert sum(s["hits"] + s["waits"] for s in kept.values()) == n - 1


def test_computing_agent_killed_one_waiter_takes_over(
        agents: Agents, swarm: memgang.Swarm, raw: redis.Redis) -> None:
    claimer = agents.start("claimer", "hang", lease_s=0.3)
    until(lambda: count(raw, swarm, "started") == 1, "the claimer to start computing")
    for i in range(3):
        agents.start(f"w{i}", "fast", lease_s=0.3)
    until(lambda: memo_hash(raw, swarm).get(b"waiters") == b"3", "three waiters")
    claimer.kill()
    claimer.join(10)
    results = agents.results(3)
    assert {r[0] for r in results} == {"ok"}
    values = {r[1]["by"] for r in results}
    assert len(values) == 1 and values != {"claimer"}  # one result, by the one that took over
    assert count(raw, swarm, "started") == 2  # the dead claimer's try and one takeover
    assert count(raw, swarm, "finished") == 1
    stats = [r[2] for r in results]
    assert sum(s["takeovers"] for s in stats) == 1
    # every call is exactly one of hit, wait (got another's result) or miss (computed)
    assert sum(s["waits"] for s in stats) == 2
    assert sum(s["misses"] for s in stats) == 1
    stored = memo_hash(raw, swarm)
    assert stored[b"state"] == b"done" and stored[b"agent"].decode() in values


def test_error_reaches_every_waiter_as_compute_failed(
        agents: Agents, swarm: memgang.Swarm, raw: redis.Redis) -> None:
    agents.start("claimer", "raise")
    until(lambda: count(raw, swarm, "started") == 1, "the claimer to start computing")
    for i in range(2):
        agents.start(f"w{i}", "fast")
    until(lambda: memo_hash(raw, swarm).get(b"waiters") == b"2", "two waiters")
    raw.rpush(workers.counter_key(swarm.name, "go-raise"), 1)
    results = sorted(agents.results(3))
    assert [r[:3] for r in results] == [
        ("failed", "ValueError", "boom from claimer"),
        ("failed", "ValueError", "boom from claimer"),
        ("raised", "ValueError", "boom from claimer"),  # the claimer gets its own exception
    ]
    assert count(raw, swarm, "started") == 1  # nobody computed again
    # an error is not cached: the next caller computes
    me = swarm.agent("later")
    assert me.compute_once("summarize", workers.INPUTS, lambda: "fresh") == "fresh"


def test_on_error_retry_one_waiter_computes_again(
        agents: Agents, swarm: memgang.Swarm, raw: redis.Redis) -> None:
    agents.start("claimer", "raise", on_error="retry")
    until(lambda: count(raw, swarm, "started") == 1, "the claimer to start computing")
    for i in range(3):
        agents.start(f"w{i}", "slow", on_error="retry")
    until(lambda: memo_hash(raw, swarm).get(b"waiters") == b"3", "three waiters")
    raw.rpush(workers.counter_key(swarm.name, "go-raise"), 1)
    results = agents.results(4)
    assert sorted(r[0] for r in results) == ["ok", "ok", "ok", "raised"]
    assert len({r[1]["by"] for r in results if r[0] == "ok"}) == 1
    assert count(raw, swarm, "started") == 2  # the failed try and exactly one retry
    assert count(raw, swarm, "finished") == 1


def test_stored_result_is_a_hit_and_credits_the_saved_time(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    calls: list[int] = []

    def work() -> list[int]:
        calls.append(1)
        time.sleep(0.02)
        return [1, 2, 3]

    assert a.compute_once("work", {"x": 1, "y": [1, 2]}, work) == [1, 2, 3]
    # same inputs, keys in another order: the same content hash
    assert b.compute_once("work", {"y": [1, 2], "x": 1}, work) == [1, 2, 3]
    assert b.compute_once("work", {"y": (1, 2), "x": 1}, work) == [1, 2, 3]
    assert len(calls) == 1
    assert b.stats["hits"] == 2
    assert b.stats["saved_ms"] == 2 * a.stats["compute_ms"] > 0
    # another name or other inputs: computed
    b.compute_once("other", {"x": 1, "y": [1, 2]}, work)
    b.compute_once("work", {"x": 2, "y": [1, 2]}, work)
    assert len(calls) == 3


def test_wait_false_raises_computing_and_timeout_bounds_the_wait(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    d = memo.digest("busy", 1)
    # a claim held by an agent that keeps it alive: written as memo_claim would
    raw.hset(swarm.keys.memo(d), mapping={"state": "running", "owner": "other", "token": "t",
                                          "lease_until": 2**50, "waiters": 0})
    with pytest.raises(memgang.Computing) as busy:
        me.compute_once("busy", 1, lambda: 1, wait=False)
    assert busy.value.agent == "other" and busy.value.digest == d
    with pytest.raises(memgang.ComputeTimeout):
        me.compute_once("busy", 1, lambda: 1, timeout_s=0.1)


def test_shared_decorator_keys_by_bound_arguments(swarm: memgang.Swarm) -> None:
    calls: list[tuple[int, int]] = []

    @swarm.shared(ttl_s=60, agent="deco")
    def add(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a + b

    assert add(1) == add(1, 2) == add(a=1, b=2) == 3
    assert add(2) == 4
    assert calls == [(1, 2), (2, 2)]
    assert add.__name__ == "add"


def test_results_that_cannot_be_stored_or_inputs_that_cannot_be_hashed_are_refused(
        swarm: memgang.Swarm) -> None:
    me = swarm.agent("a")
    with pytest.raises(memgang.InvalidValue, match="object"):
        me.compute_once("f", {"x": object()}, lambda: 1)
    with pytest.raises(memgang.InvalidValue, match="msgpack"):
        me.compute_once("g", 1, lambda: object())
    with pytest.raises(memgang.InvalidValue, match="lease_s"):
        me.compute_once("g", 1, lambda: 1, lease_s=0)
    with pytest.raises(memgang.InvalidValue, match="on_error"):
        me.compute_once("g", 1, lambda: 1, on_error="ignore")
    # the failed store released the claim: the next caller computes
    assert me.compute_once("g", 1, lambda: 5) == 5


def test_content_hash_is_the_same_in_every_process() -> None:
    inputs = {"s": {"b", "a", "c"}, "t": (1, 2.0, True, None, b"\x00"), "n": {3: "x"}}
    here = memo.digest("f", inputs)
    code = ("from memgang import memo; print(memo.digest('f', {'s': {'b', 'a', 'c'}, "
            "'t': (1, 2.0, True, None, b'\\x00'), 'n': {3: 'x'}}))")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""}, check=True)
        assert out.stdout.strip() == here
    assert memo.digest("f", 1) != memo.digest("f", 1.0) != memo.digest("f", True)
    assert memo.digest("f", [1]) == memo.digest("f", (1,))


def test_async_twin_computes_once_and_a_cancelled_claimer_hands_over(url: str) -> None:
    async def main() -> None:
        gang = await memgang.aio.connect(url)
        try:
            swarm = gang.swarm(fresh_swarm_name())
            calls: list[str] = []

            async def work() -> str:
                calls.append("x")
                await asyncio.sleep(0.1)
                return "done"

            results = await asyncio.gather(*(swarm.agent(f"a{i}").compute_once("w", 1, work)
                                             for i in range(5)))
            assert results == ["done"] * 5 and calls == ["x"]

            @swarm.shared(agent="deco")
            async def double(x: int) -> int:
                calls.append("d")
                return 2 * x

            assert await double(2) == await double(x=2) == 4 and calls == ["x", "d"]

            async def forever() -> str:
                await asyncio.sleep(60)
                return "never"

            # an hour-long lease: only the abandoned claim can let the waiter through
            claimer = asyncio.create_task(
                swarm.agent("c").compute_once("h", 1, forever, lease_s=3600))
            await asyncio.sleep(0.05)
            waiter = asyncio.create_task(swarm.agent("w").compute_once("h", 1, work))
            await asyncio.sleep(0.05)
            claimer.cancel()  # abandons the claim: the waiter takes over at once
            assert await asyncio.wait_for(waiter, 60) == "done"
        finally:
            await gang.close()

    asyncio.run(main())


def test_counters_reach_redis_and_memgang_stats_shows_them(swarm: memgang.Swarm,
                                                           url: str) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write("x", 1)
    b.read("a/x")
    a.compute_once("f", 1, lambda: 2)
    b.compute_once("f", 1, lambda: 2)
    b.stats.incr("summarizer_calls", 3)  # an agent's own counter
    swarm.gang.flush_stats()
    result = CliRunner().invoke(main, ["stats", swarm.name, "--json", "--url", url])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.output)
    assert (shown["a"]["writes"], shown["a"]["misses"], shown["a"]["live"]) == (1, 1, False)
    assert (shown["b"]["reads"], shown["b"]["hits"], shown["b"]["summarizer_calls"]) == (1, 1, 3)
    table = CliRunner().invoke(main, ["stats", swarm.name, "--url", url])
    assert table.exit_code == 0
    header, *rows = table.output.splitlines()
    assert header.split()[:4] == ["agent", "role", "reads", "writes"]
    assert "summarizer" in header and [r.split()[0] for r in rows] == ["a", "b"]
    bad = CliRunner().invoke(main, ["stats", "bad/name", "--url", url])
    assert bad.exit_code == 2 and "forbidden character" in bad.output


def test_a_waiter_outlasts_a_short_socket_timeout(url: str, swarm: memgang.Swarm) -> None:
    """The waiter's BLPOP must end before the client's socket timeout, then wait again."""
    computing = threading.Event()

    def slow() -> int:
        computing.set()
        time.sleep(1.5)  # longer than the waiter's socket timeout below
        return 42

    claimer = memgang.connect(url)
    waiter = memgang.connect(url, socket_timeout_s=0.5)
    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(
        claimer.swarm(swarm.name).agent("c").compute_once("f", 1, slow, lease_s=5)))
    try:
        thread.start()
        until(computing.is_set, "the claimer to start computing")
        got = waiter.swarm(swarm.name).agent("w").compute_once(
            "f", 1, lambda: pytest.fail("the waiter must not compute"), lease_s=5)
        assert got == 42
    finally:
        thread.join(30)  # before its Gang closes under it, even when the waiter failed
        claimer.close()
        waiter.close()
    assert results == [42]
