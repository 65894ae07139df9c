"""The dashboard's sans-I/O state, fed with real events and real polls from a real server.

Events are read from the swarm's log and parsed by memgang.events (``Event.to_dict()``: the
JSON the scripts publish, with the log id), which is what the dashboard's subscription hands
over. Presence, locks and counters come from the dashboard's own poller.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis

import memgang
import memgang.aio
from memgang._sync.presence import beat, leave
from memgang.agent import describe
from memgang.dashboard.sources import Polled, poll_swarm
from memgang.dashboard.state import (
    ACTIVE_FOR_MS,
    RATE_WINDOW_S,
    DashboardState,
    local_key,
    space_of,
)
from memgang.events import parse_entry
from memgang.testing import fresh_swarm_name

T0 = 1_700_000_000_000


def logged_events(raw: redis.Redis, swarm: memgang.Swarm, after: str = "-") -> list[Any]:
    """Every event in the swarm's log after ``after``, as the subscription delivers it."""
    start = after if after == "-" else "(" + after
    return [parse_entry(swarm.name, entry_id, fields).to_dict()
            for entry_id, fields in raw.xrange(swarm.keys.log, min=start)]


def poll(url: str, swarm: memgang.Swarm) -> Polled:
    async def run() -> Polled:
        async with await memgang.aio.connect(url) as gang:
            return await poll_swarm(gang, swarm.name)

    return asyncio.run(run())


def feed(state: DashboardState, events: list[Any], now_ms: int = T0) -> None:
    for event in events:
        assert state.apply(event, now_ms), event


def test_objects_are_counted_by_agent_and_group_like_the_store(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    reader, summarizer = swarm.agent("reader-1"), swarm.agent("summarizer-1")
    for i in range(3):
        reader.write(f"chunk-{i}", {"text": "x" * (10 * i)}, group="chunks")
    summarizer.write("summary-0", {"text": "s"}, group="summaries")
    summarizer.write("summary-0", {"text": "s2"}, group="summaries")  # a rewrite, not a new one
    state = DashboardState(swarm.name)
    feed(state, logged_events(raw, swarm))

    objects = state.snapshot(None, T0)["objects"]
    assert objects["total"] == len(swarm.read_scope()) == 4
    assert objects["by_agent"] == {"reader-1": 3, "summarizer-1": 1}
    assert objects["by_group"] == {"chunks": 3, "summaries": 1}
    assert objects["by_agent"]["reader-1"] == len(swarm.read_scope(agent="reader-1"))
    assert [o["local"] for o in objects["latest"][:2]] == ["summarizer-1/summary-0"] * 2
    assert objects["latest"][0]["version"] > objects["latest"][1]["version"]
    # sizes are the stored msgpack sizes: the sum over the current objects
    sizes = [ev["size"] for ev in logged_events(raw, swarm)]
    assert objects["bytes"] == sum(sizes[:3]) + sizes[4]


def test_derived_from_draws_weighted_edges_from_the_writer_not_the_space(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    reader, summarizer = swarm.agent("reader-1"), swarm.agent("summarizer-1")
    reducer = swarm.agent("reducer")
    chunk = reader.write("chunk-1", {"text": "t"})
    plan = reducer.write("global/plan", {"step": 1})  # a shared space, written by reducer
    summarizer.write("summary-1", {"text": "s"}, derived_from=[chunk])
    summarizer.write("summary-2", {"text": "s"}, derived_from=[chunk, plan])
    own = summarizer.write("summary-3", {"text": "s"})
    summarizer.write("summary-4", {"text": "s"}, derived_from=[own])  # on its own work
    state = DashboardState(swarm.name)
    feed(state, logged_events(raw, swarm), T0)

    edges = {(e["source"], e["target"]): e["weight"]
             for e in state.snapshot(None, T0)["edges"]}
    assert edges == {("reader-1", "summarizer-1"): 2, ("reducer", "summarizer-1"): 1}
    assert {a["name"] for a in state.snapshot(None, T0)["agents"]} == {
        "reader-1", "summarizer-1", "reducer"}  # "global" is a space, not an agent


def test_an_edge_pulses_when_it_is_used_again(swarm: memgang.Swarm, raw: redis.Redis) -> None:
    reader, summarizer = swarm.agent("reader-1"), swarm.agent("summarizer-1")
    chunk = reader.write("chunk-1", {"text": "t"})
    summarizer.write("summary-1", {"text": "s"}, derived_from=[chunk])
    state = DashboardState(swarm.name)
    feed(state, logged_events(raw, swarm), T0)
    seen = logged_events(raw, swarm)[-1]["id"]
    summarizer.write("summary-2", {"text": "s"}, derived_from=[chunk])
    feed(state, logged_events(raw, swarm, after=seen), T0 + 5000)

    (edge,) = state.snapshot(None, T0 + 5000)["edges"]
    assert (edge["weight"], edge["last_ms"]) == (2, T0 + 5000)


def test_a_rewrite_by_another_agent_moves_the_object_and_a_delete_removes_it(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write("global/plan", {"x": 1}, group="plans")
    a.write("notes", {"x": 1}, group="notes")
    b.write("global/plan", {"x": 2}, group="plans2")
    b.delete("a/notes")
    state = DashboardState(swarm.name)
    feed(state, logged_events(raw, swarm))

    snap = state.snapshot(None, T0)
    assert snap["objects"]["by_agent"] == {"b": 1}
    assert snap["objects"]["by_group"] == {"plans2": 1}
    assert snap["objects"]["total"] == len(swarm.read_scope()) == 1
    assert [e["type"] for e in snap["feed"]] == [
        "memory_deleted", "memory_updated", "memory_updated", "memory_updated"]


def test_agents_show_their_last_action(swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("reader-1")
    me.write("chunk-1", {"text": "t"})
    me.share_knowledge("insight", {"tip": "reuse summaries"})
    state = DashboardState(swarm.name)
    feed(state, logged_events(raw, swarm), T0)

    (agent,) = state.snapshot(None, T0)["agents"]
    assert (agent["last_action"], agent["last_key"]) == ("knowledge_shared", "insight")
    assert (agent["writes"], agent["events"], agent["objects"]) == (1, 2, 1)
    assert state.snapshot(None, T0)["objects"]["total"] == 1  # knowledge is not an object
    assert state.snapshot(None, T0)["feed"][0]["detail"] == "insight"


def test_malformed_events_are_counted_and_never_raise(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("reader-1")
    me.write("chunk-1", {"text": "t"}, group="chunks")
    (good,) = logged_events(raw, swarm)
    bad: list[Any] = [
        None, 42, "memory_updated", [good], b"\xff\xfe", {}, {"type": "memory_updated"},
        {"type": 7, "swarm": swarm.name}, {"type": "memory_updated", "swarm": ["x"]},
    ]
    state = DashboardState(swarm.name)
    for event in bad:
        assert not state.apply(event, T0)
    assert state.malformed == len(bad)
    # well-formed envelope, odd fields: folded in with what can be read
    odd: list[dict[str, Any]] = [
        {**good, "key": 12345},
        {**good, "scope": "not a mapping", "size": "huge", "version": None, "ts": "later"},
        {**good, "derived_from": [None, 3, ["{s}/a/b"], ["{s}/x/y", "v9"], "a@b", []]},
        {**good, "derived_from": {"not": "a list"}, "agent": {"a": 1}},
        {**good, "type": "some_future_event"},
        {**good, "type": "lock_acquired", "mode": None, "expires_ms": "soon"},
        {**good, "type": "lock_released", "agent": None},
        {**good, "type": "agent_left", "agent": ""},
    ]
    for event in odd:
        state.apply(event, T0)
    assert state.apply(good, T0)
    snap = state.snapshot(None, T0)
    orjson.dumps(snap)  # the page always gets valid JSON
    assert snap["objects"]["by_agent"] == {"reader-1": 1}
    assert snap["objects"]["by_group"] == {"chunks": 1}
    assert snap["malformed"] == len(bad)


def test_a_fixed_swarm_ignores_other_swarms_and_all_swarms_mode_follows_each(
        gang: memgang.Gang, raw: redis.Redis) -> None:
    one, two = gang.swarm(fresh_swarm_name()), gang.swarm(fresh_swarm_name())
    one.agent("a").write("x", 1)
    two.agent("b").write("y", 2)
    events = logged_events(raw, one) + logged_events(raw, two)

    fixed = DashboardState(one.name)
    assert [fixed.apply(e, T0) for e in events] == [True, False]
    assert fixed.snapshot(two.name, T0)["swarm"] == one.name

    every = DashboardState()
    every.apply(events[0], T0)
    every.apply(events[1], T0 + 1)
    assert every.snapshot(None, T0)["swarm"] == two.name  # the most recently active
    assert every.snapshot(one.name, T0)["objects"]["by_agent"] == {"a": 1}
    assert every.snapshot(None, T0)["swarms"] == sorted([one.name, two.name])


def test_the_rate_counts_events_per_second_over_a_two_minute_window(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    for i in range(6):
        me.write(f"k{i}", i)
    events = logged_events(raw, swarm)
    state = DashboardState(swarm.name)
    for i, event in enumerate(events):  # 1, 2 and 3 events in three consecutive seconds
        state.apply(event, T0 + (0 if i < 1 else 1000 if i < 3 else 2000))

    rate = state.snapshot(None, T0 + 2500)["rate"]
    assert len(rate["counts"]) == RATE_WINDOW_S
    assert rate["counts"][-3:] == [1, 2, 3]
    later = state.snapshot(None, T0 + (RATE_WINDOW_S + 5) * 1000)["rate"]
    assert sum(later["counts"]) == 0 and later["per_s"] == 0


def test_replayed_events_keep_their_own_time(swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    me.write("k1", 1)
    me.write("k2", 2)
    secs, micros = raw.time()
    server_now = secs * 1000 + micros // 1000
    events = logged_events(raw, swarm)

    # replayed 10 s after they happened: counted 10 s back, the agent still active
    state = DashboardState(swarm.name)
    state.set_server_time(server_now, T0)
    feed(state, events, T0 + 10_000)
    snap = state.snapshot(None, T0 + 10_000)
    assert sum(snap["rate"]["counts"]) == 2 and sum(snap["rate"]["counts"][-9:]) == 0
    assert snap["agents"][0]["status"] == "active"
    assert snap["objects"]["latest"][0]["seen_ms"] <= T0

    # replayed 10 minutes later: outside the rate window, the agent idle, but still counted
    state = DashboardState(swarm.name)
    state.set_server_time(server_now, T0)
    feed(state, events, T0 + 600_000)
    snap = state.snapshot(None, T0 + 600_000)
    assert sum(snap["rate"]["counts"]) == 0
    assert snap["agents"][0]["status"] == "idle"
    assert snap["objects"]["total"] == 2 and snap["totals"]["events"] == 2


def test_presence_decides_alive_and_gone(url: str, swarm: memgang.Swarm,
                                         raw: redis.Redis) -> None:
    worker, planner, loner = (swarm.agent(n) for n in ("worker", "planner", "loner"))
    beat(worker, describe("summarizer", T0), 60_000)
    beat(planner, describe("planner", T0), 60_000)
    loner.write("y", 1)  # writes, but never joins
    state = DashboardState(swarm.name)
    feed(state, logged_events(raw, swarm), T0)
    st = state.swarm(swarm.name)

    polled = poll(url, swarm)
    state.set_server_time(polled.server_ms, T0)
    st.set_presence(polled.presence, polled.roles, T0)
    status = {a["name"]: (a["status"], a["role"]) for a in state.snapshot(None, T0)["agents"]}
    assert status == {"worker": ("alive", "summarizer"), "planner": ("alive", "planner"),
                      "loner": ("active", None)}

    leave(planner)  # a clean leave: the event says so at once, the next poll agrees
    feed(state, logged_events(raw, swarm)[-1:], T0)
    assert {a["name"]: a["status"] for a in state.snapshot(None, T0)["agents"]}["planner"] \
        == "gone"
    polled = poll(url, swarm)
    later = T0 + ACTIVE_FOR_MS + 1
    st.set_presence(polled.presence, polled.roles, later)
    status = {a["name"]: a["status"] for a in state.snapshot(None, later)["agents"]}
    assert status == {"worker": "alive", "planner": "gone", "loner": "idle"}
    # the worker's heartbeat deadline passes (by the server's clock) without a beat: gone
    state.set_server_time(polled.presence["worker"] + 1, later)
    assert {a["name"]: a["status"] for a in state.snapshot(None, later)["agents"]}["worker"] \
        == "gone"


def test_locks_show_holders_queue_and_a_lease_that_counts_down(
        url: str, swarm: memgang.Swarm, raw: redis.Redis) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    state = DashboardState(swarm.name)
    with a.lock("global/report", mode="write", lease_ms=30_000) as lease:
        feed(state, logged_events(raw, swarm), T0)  # lock_acquired: holder known at once
        (lock,) = state.snapshot(None, T0)["locks"]
        assert lock["local"] == "global/report"
        assert [(h["agent"], h["mode"], h["token"]) for h in lock["holders"]] == [
            ("a", "write", str(lease.token))]

        polled = poll(url, swarm)  # the poll adds the lease left
        state.set_server_time(polled.server_ms, T0)
        state.swarm(swarm.name).set_locks(polled.locks)
        (lock,) = state.snapshot(None, T0)["locks"]
        left = lock["holders"][0]["lease_left_ms"]
        assert 0 < left <= 30_000
        (lock,) = state.snapshot(None, T0 + 1000)["locks"]
        assert lock["holders"][0]["lease_left_ms"] == max(0, left - 1000)
        seen = logged_events(raw, swarm)[-1]["id"]
    feed(state, logged_events(raw, swarm, after=seen), T0)  # lock_released
    assert state.snapshot(None, T0)["locks"] == []
    with b.lock("global/report", timeout_s=0):  # and it really is free (else LockTimeout)
        pass


def test_compute_once_savings_come_from_the_agents_counters(
        url: str, swarm: memgang.Swarm) -> None:
    first, second = swarm.agent("summarizer-1"), swarm.agent("summarizer-2")
    for agent in (first, second, second):
        agent.compute_once("summarize", {"chunk": 1}, lambda: {"summary": "s"})
    first.compute_once("summarize", {"chunk": 2}, lambda: {"summary": "t"})
    for agent in (first, second):
        agent.flush_stats()
    state = DashboardState(swarm.name)
    state.swarm(swarm.name).set_counters(poll(url, swarm).counters)

    memo = state.snapshot(None, T0)["memo"]
    assert (memo["hits"], memo["waits"], memo["computed"]) == (2, 0, 2)
    assert memo["hit_ratio"] == pytest.approx(2 / 4)
    assert set(memo["by_agent"]) == {"summarizer-1", "summarizer-2"}


def test_helpers_read_keys() -> None:
    assert space_of("{s}/reader-1/chunk") == "reader-1"
    assert space_of("{s}/x") is None and space_of("plain") is None
    assert local_key("{s}/reader-1/chunk") == "reader-1/chunk"
