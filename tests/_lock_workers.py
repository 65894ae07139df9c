"""Agents run in child processes by tests/test_locks.py and tests/test_locks_faults.py
(importable under spawn). Each reports back through a multiprocessing queue; times are
``time.monotonic_ns()``, which is system-wide on Linux, so records of different processes
compare."""

from __future__ import annotations

import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import redis

import memgang

LOCK = "global/doc"


def counter_key(swarm: str) -> str:
    """A plain Redis counter, incremented GET-then-SET (not atomically) under the lock."""
    return f"test:{swarm}:counter"


def order_key(swarm: str) -> str:
    return f"test:{swarm}:order"


def count_under_lock(url: str, swarm: str, agent: str, seconds: float, go: Event,
                     out: Queue[Any]) -> None:
    """Non-atomic read-modify-write of a shared counter under a write lock for ``seconds``;
    puts (agent, acquisitions, [(acquired_ns, released_ns), ...])."""
    gang = memgang.connect(url)
    counter = redis.Redis.from_url(url)
    key = counter_key(swarm)
    lease = gang.swarm(swarm).agent(agent).lock(LOCK, "write", timeout_s=60, lease_ms=5000)
    held: list[tuple[int, int]] = []
    try:
        go.wait(60)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with lease:
                start = time.monotonic_ns()
                value = int(counter.get(key) or 0)
                counter.set(key, value + 1)
                held.append((start, time.monotonic_ns()))
        out.put((agent, len(held), held))
    finally:
        counter.close()
        gang.close()


def hold_in_loop(url: str, swarm: str, agent: str, mode: str, hold_s: float, seconds: float,
                 go: Event, out: Queue[Any]) -> None:
    """Take ``mode`` again and again, holding each lease ``hold_s``; puts
    (agent, mode, [(acquired_ns, released_ns), ...])."""
    gang = memgang.connect(url)
    lease = gang.swarm(swarm).agent(agent).lock(LOCK, mode, timeout_s=60, lease_ms=5000)
    held: list[tuple[int, int]] = []
    try:
        go.wait(60)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with lease:
                start = time.monotonic_ns()
                time.sleep(hold_s)
                held.append((start, time.monotonic_ns()))
        out.put((agent, mode, held))
    finally:
        gang.close()


def take_once(url: str, swarm: str, agent: str, mode: str, out: Queue[Any],
              lease_ms: int = 10_000) -> None:
    """Wait for ``mode``; once granted, RPUSH this agent's name to the order list, release."""
    gang = memgang.connect(url)
    order = redis.Redis.from_url(url)
    try:
        with gang.swarm(swarm).agent(agent).lock(LOCK, mode, timeout_s=60, lease_ms=lease_ms):
            order.rpush(order_key(swarm), agent)
        out.put((agent, "done"))
    finally:
        order.close()
        gang.close()


def hold_until_told(url: str, swarm: str, agent: str, lease_ms: int, commands: Queue[Any],
                    out: Queue[Any]) -> None:
    """Hold a write lease and obey the test: ("write", value) writes LOCK with the token
    taken at the grant, "exit" leaves the context. Reports every outcome on ``out``:
    ("holding", token), ("wrote", version) or ("refused", error type), ("exited", None) or
    ("exit-error", error type), ("on_lost", reason) from the callback."""
    gang = memgang.connect(url)
    me = gang.swarm(swarm).agent(agent)
    try:
        with me.lock(LOCK, "write", timeout_s=30, lease_ms=lease_ms,
                     on_lost=lambda err: out.put(("on_lost", err.reason))) as lease:
            token = lease.token
            out.put(("holding", token))
            while True:
                command, arg = commands.get()
                if command == "exit":
                    break
                try:
                    ref = me.write(LOCK, arg, fence=token)
                    out.put(("wrote", ref.version))
                except memgang.Error as exc:
                    out.put(("refused", type(exc).__name__))
        out.put(("exited", None))
    except memgang.Error as exc:
        out.put(("exit-error", type(exc).__name__))
    finally:
        gang.close()


def fenced_increments(url: str, swarm: str, agent: str, stop: Event, out: Queue[Any]) -> None:
    """Until ``stop``: take the write lock (short lease), read LOCK's value and write it + 1
    with the lease's fence. Survives Redis going away (errors are counted and retried); puts
    ("ready", agent) once connected, then
    (agent, [(acquired_ns, released_ns, token), ...] for holds released cleanly,
    [token, ...] of every grant, {error type: count})."""
    gang = memgang.connect(url)
    me = gang.swarm(swarm).agent(agent)
    lease = me.lock(LOCK, "write", timeout_s=20, lease_ms=500)
    clean: list[tuple[int, int, int]] = []
    tokens: list[int] = []
    errors: dict[str, int] = {}
    out.put(("ready", agent))
    try:
        while not stop.is_set():
            try:
                with lease:
                    start = time.monotonic_ns()
                    token = lease.token
                    assert token is not None
                    tokens.append(token)
                    obj = me.read(LOCK)
                    me.write(LOCK, (obj.value if obj else 0) + 1, fence=token)
                    end = time.monotonic_ns()
                clean.append((start, end, token))
            except memgang.Error as exc:
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
                if isinstance(exc, memgang.ConnectionLost):
                    time.sleep(0.05)
        out.put((agent, clean, tokens, errors))
    finally:
        gang.close()
