"""Agents run in child processes by tests/test_memo.py and tests/test_agent.py (importable
under spawn). Each reports back through a multiprocessing queue."""

from __future__ import annotations

import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import redis

import memgang

INPUTS = {"doc": "the same report", "chunk": 3, "opts": {"words": 60, "lang": "en"}}


def counter_key(swarm: str, what: str) -> str:
    """A plain Redis counter the test reads: how many computations started / finished."""
    return f"test:{swarm}:{what}"


def compute_worker(url: str, swarm: str, agent: str, behaviour: str, go: Event | None,
                   out: Queue[Any], lease_s: float = 10.0, on_error: str = "raise") -> None:
    """Ask for the shared result once; put ("ok", value, stats) or ("error", type, message,
    stats) on ``out``.

    ``behaviour`` is what this agent's function does if it gets to compute: "slow" (count,
    sleep 0.3 s, count), "fast", "hang" (count the start, then sleep a minute: a test kills
    it), "raise" (count, wait until the test says go, raise ValueError).
    """
    gang = memgang.connect(url)
    counters = redis.Redis.from_url(url)
    me = gang.swarm(swarm).agent(agent)

    def fn() -> dict[str, Any]:
        counters.incr(counter_key(swarm, "started"))
        if behaviour == "slow":
            time.sleep(0.3)
        elif behaviour == "hang":
            time.sleep(60)
        elif behaviour == "raise":
            counters.blpop([counter_key(swarm, "go-raise")], timeout=30)
            raise ValueError(f"boom from {agent}")
        counters.incr(counter_key(swarm, "finished"))
        return {"summary": "computed once", "by": agent}

    try:
        if go is not None:
            go.wait(30)
        try:
            value = me.compute_once("summarize", INPUTS, fn, lease_s=lease_s,
                                    on_error=on_error)
            out.put(("ok", value, me.stats.snapshot()))
        except memgang.ComputeFailed as exc:
            out.put(("failed", exc.remote_type, exc.remote_message, me.stats.snapshot()))
        except ValueError as exc:
            out.put(("raised", type(exc).__name__, str(exc), me.stats.snapshot()))
    finally:
        counters.close()
        gang.close()


class Idle(memgang.AgentMixin):
    """An agent with one handler that counts what it sees."""

    def __init__(self) -> None:
        self.seen = 0

    @memgang.on("knowledge_shared")
    def on_knowledge(self, event: memgang.Event) -> None:
        self.seen += 1


def presence_worker(url: str, swarm: str, name: str, heartbeat_s: float,
                    presence_ttl_s: float) -> None:
    """Join ``swarm`` as ``name`` and run until SIGTERM/SIGINT (a clean leave) or SIGKILL."""
    gang = memgang.connect(url)
    try:
        agent = Idle().join_gang(gang.swarm(swarm), name, role="worker",
                                 heartbeat_s=heartbeat_s, presence_ttl_s=presence_ttl_s)
        agent.run()
    finally:
        gang.close()
