"""The agent mixin: handlers on any class, errors counted without stopping the agent,
presence (join, leave, death), a clean stop from a thread, a task or a signal."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import memgang
import memgang.aio
from memgang.testing import fresh_swarm_name

import _agent_workers as workers
from _helpers import until

SPAWN = multiprocessing.get_context("spawn")


def next_event(stream: memgang.EventStream, what: str, timeout_s: float = 30) -> memgang.Event:
    event = stream.get(timeout_s)
    if event is None:
        raise AssertionError(f"no {what} event within {timeout_s}s")
    return event


class Framework:
    """Stands for another framework's agent base class: its own __init__, its own state."""

    def __init__(self, model: str, *, temperature: float = 0.0) -> None:
        self.model = model
        self.temperature = temperature
        self.memory_of_framework = ["framework state"]


class Planner(Framework, memgang.AgentMixin):
    def __init__(self, model: str) -> None:
        super().__init__(model, temperature=0.5)
        self.plans: list[str] = []
        self.knowledge: list[Any] = []

    @memgang.on("memory_updated", match="tasks/*")
    def on_task(self, event: memgang.Event) -> None:
        obj = self.memory.read(event.ref) if event.ref else None
        assert obj is not None
        if obj.value == "explode":
            raise RuntimeError("this task makes the handler fail")
        self.plans.append(obj.value)
        self.memory.write(f"plan-{obj.id}", {"task": obj.value, "model": self.model},
                          derived_from=[event.ref])

    @memgang.on("knowledge_shared")
    def on_knowledge(self, event: memgang.Event) -> None:
        self.knowledge.append(event.value)


@pytest.fixture
def planner(swarm: memgang.Swarm) -> Iterator[tuple[Planner, threading.Thread]]:
    agent = Planner("gpt-x").join_gang(swarm, "planner", role="planner", heartbeat_s=0.1)
    thread = threading.Thread(target=agent.run, kwargs={"handle_signals": False})
    thread.start()
    try:
        yield agent, thread
    finally:
        agent.stop()
        thread.join(30)


def test_mixin_on_a_class_with_its_own_base_and_init_handles_matching_events(
        swarm: memgang.Swarm, planner: tuple[Planner, threading.Thread]) -> None:
    agent, _ = planner
    assert (agent.model, agent.temperature, agent.memory_of_framework) == (
        "gpt-x", 0.5, ["framework state"])
    until(lambda: [a.name for a in swarm.agents()] == ["planner"], "the planner to join")
    boss = swarm.agent("boss")
    boss.write("tasks/t1", "write the intro")
    boss.write("other/t2", "not a task")  # does not match tasks/*
    boss.write("tasks/t3", "write the outro")
    boss.share_knowledge("tip", {"use": "refs"})
    until(lambda: len(agent.plans) == 2 and agent.knowledge, "two plans and one tip")
    assert agent.plans == ["write the intro", "write the outro"]  # in order, only matches
    assert agent.knowledge == [{"use": "refs"}]
    plan = boss.read("planner/plan-t3")
    assert plan is not None and plan.value == {"task": "write the outro", "model": "gpt-x"}
    [source] = plan.derived_from
    assert source.key == f"{{{swarm.name}}}/tasks/t3"


def test_handler_errors_are_counted_and_the_agent_keeps_running(
        swarm: memgang.Swarm, planner: tuple[Planner, threading.Thread],
        caplog: pytest.LogCaptureFixture) -> None:
    agent, thread = planner
    until(lambda: bool(swarm.agents()), "the planner to join")
    boss = swarm.agent("boss")
    with caplog.at_level("ERROR", logger="memgang.agent"):
        boss.write("tasks/a", "explode")
        boss.write("tasks/b", "first")
        boss.write("tasks/c", "explode")
        boss.write("tasks/d", "second")
        until(lambda: len(agent.plans) == 2, "the two good tasks")
    assert agent.plans == ["first", "second"]
    assert agent.handler_errors == 2
    failures = [r for r in caplog.records if r.name == "memgang.agent"]
    assert len(failures) == 2 and "on_task" in failures[0].getMessage()
    assert failures[0].exc_info is not None  # the traceback is logged
    agent.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert swarm.stats()["planner"]["handler_errors"] == 2  # flushed to Redis on leaving


def test_presence_join_and_clean_leave_with_events(swarm: memgang.Swarm) -> None:
    with swarm.events(["agent_joined", "agent_left"], since="start") as stream:
        agent = Planner("m").join_gang(swarm, "p1", role="planner", heartbeat_s=0.1,
                                       info={"team": "blue"})
        thread = threading.Thread(target=agent.run, kwargs={"handle_signals": False})
        thread.start()
        joined = next_event(stream, "agent_joined")
        assert (joined.type, joined.agent) == ("agent_joined", "p1")
        assert joined.data["info"]["role"] == "planner"
        [info] = swarm.agents()
        assert (info.name, info.role, info.extra) == ("p1", "planner", {"team": "blue"})
        agent.stop()  # from another thread than run()'s
        thread.join(30)
        left = next_event(stream, "agent_left")
        assert (left.type, left.agent, left.data["reason"]) == ("agent_left", "p1", "stopped")
    assert swarm.agents() == []


def test_a_killed_agent_is_reaped_by_the_living_with_agent_left(
        swarm: memgang.Swarm, url: str) -> None:
    proc = SPAWN.Process(target=workers.presence_worker,
                         args=(url, swarm.name, "doomed", 0.05, 0.4), daemon=True)
    proc.start()
    try:
        until(lambda: [a.name for a in swarm.agents()] == ["doomed"], "doomed to join")
        with swarm.events(["agent_left"]) as stream:
            proc.kill()
            proc.join(10)
            watcher = workers.Idle().join_gang(swarm, "watcher", heartbeat_s=0.05,
                                               presence_ttl_s=5)
            thread = threading.Thread(target=watcher.run, kwargs={"handle_signals": False})
            thread.start()
            try:
                left = next_event(stream, "agent_left")
            finally:
                watcher.stop()
                thread.join(30)
        assert (left.agent, left.data["reason"]) == ("doomed", "expired")
        assert left.data["info"]["role"] == "worker"
    finally:
        if proc.is_alive():
            proc.kill()


def test_sigterm_stops_an_agent_process_cleanly(swarm: memgang.Swarm, url: str) -> None:
    proc = SPAWN.Process(target=workers.presence_worker,
                         args=(url, swarm.name, "worker-1", 0.1, 5.0))
    proc.start()
    try:
        until(lambda: [a.name for a in swarm.agents()] == ["worker-1"], "the worker to join")
        with swarm.events(["agent_left"]) as stream:
            assert proc.pid is not None
            proc.terminate()  # SIGTERM
            proc.join(30)
            left = next_event(stream, "agent_left")
        assert proc.exitcode == 0
        assert (left.agent, left.data["reason"]) == ("worker-1", "stopped")
        assert swarm.agents() == []
    finally:
        if proc.is_alive():
            proc.kill()


def test_using_an_agent_before_join_gang_or_with_async_handlers_is_refused(
        swarm: memgang.Swarm) -> None:
    with pytest.raises(memgang.AgentError, match="join_gang"):
        _ = Planner("m").memory

    class AsyncInSync(memgang.AgentMixin):
        @memgang.on("memory_updated")
        async def handle(self, event: memgang.Event) -> None:  # pragma: no cover
            pass

    with pytest.raises(memgang.AgentError, match=r"memgang\.aio\.AgentMixin"):
        AsyncInSync().join_gang(swarm, "a")
    with pytest.raises(memgang.InvalidValue, match="unknown event type"):
        memgang.on("memory_changed")
    agent = Planner("m").join_gang(swarm, "twice")
    with pytest.raises(memgang.AgentError, match="already joined"):
        agent.join_gang(swarm, "again")


def test_async_agent_runs_coroutine_handlers_and_stops_from_another_task(url: str) -> None:
    class Echo(memgang.aio.AgentMixin):
        def __init__(self) -> None:
            self.got: list[str] = []

        @memgang.aio.on("memory_updated", group="inbox")
        async def on_inbox(self, event: memgang.Event) -> None:
            obj = await self.memory.read(event.ref) if event.ref else None
            assert obj is not None
            if obj.value == "bad":
                raise ValueError("bad input")
            await asyncio.sleep(0)
            self.got.append(obj.value)
            await self.memory.write(f"echo-{obj.id}", obj.value.upper(),
                                    derived_from=[event.ref])

    async def main() -> None:
        gang = await memgang.aio.connect(url)
        try:
            swarm = gang.swarm(fresh_swarm_name())
            echo = Echo().join_gang(swarm, "echo", role="echo", heartbeat_s=0.1)
            task = asyncio.create_task(echo.run(handle_signals=False))
            while not await swarm.agents():
                await asyncio.sleep(0.01)
            sender = swarm.agent("sender")
            for value in ("hi", "bad", "there"):
                await sender.write(f"m-{value}", value, group="inbox")
            while len(echo.got) < 2:
                await asyncio.sleep(0.01)
            echo.stop()
            await asyncio.wait_for(task, 30)
            assert echo.got == ["hi", "there"] and echo.handler_errors == 1
            reply = await sender.read("echo/echo-m-there")
            assert reply is not None and reply.value == "THERE"
            assert await swarm.agents() == []
            assert (await swarm.stats())["echo"]["handler_errors"] == 1
        finally:
            await gang.close()

    asyncio.run(main())
