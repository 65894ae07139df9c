"""Events: parsing, filters, exactly-once in-order delivery, gaps, keyspace notifications.

The first half tests the sans-I/O core (memgang.events) with no server; the rest runs real
subscriptions against the private servers of conftest.py (Redis 7.x and 6.2).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import memgang
import memgang.aio
from memgang import events as ev
from memgang.errors import EventGap, InvalidValue, MalformedEvent
from memgang.server import EmbeddedServer
from memgang.testing import fresh_swarm_name

from _helpers import until

# --- the sans-I/O core --------------------------------------------------------------------------


def msg(i: int, n: int | None = None, *, swarm: str = "s", kind: str = "memory_updated",
        key: str | None = "{s}/a/k", agent: str | None = "a", **extra: Any) -> ev.Event:
    body: dict[str, Any] = {"id": f"100-{i}", "n": i if n is None else n, "type": kind,
                            "swarm": swarm, "key": key, "agent": agent, "version": i, "ts": 100,
                            "scope": {"group": extra.pop("group", None),
                                      "context": extra.pop("context", None)}, **extra}
    import orjson
    return ev.parse_message(orjson.dumps(body))


def test_parse_message_keeps_every_field() -> None:
    e = msg(3, group="g", size=12, derived_from=[["{s}/b/x", 2]])
    assert (e.id, e.n, e.type, e.swarm, e.key, e.agent, e.version) == \
        ("100-3", 3, "memory_updated", "s", "{s}/a/k", "a", 3)
    assert e.group == "g" and e.context is None and e.sid == (100, 3)
    assert e.data == {"size": 12, "derived_from": [["{s}/b/x", 2]]}
    assert e.ref == memgang.MemoryRef("{s}/a/k", 3)
    assert ev.parse_message(e.raw) == e
    assert msg(1) < msg(2) and sorted([msg(5), msg(2)])[0].id == "100-2"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"type": "memory_updated", "swarm": "s"}', "id must be"),
    (b'{"id": "abc", "type": "memory_updated", "swarm": "s"}', "not a stream id"),
    (b'{"id": "1-0", "swarm": "s"}', "type must be"),
    (b'{"id": "1-0", "type": "x", "swarm": "s", "version": "3"}', "version must be"),
    (b'{"id": "1-0", "type": "x", "swarm": "s", "scope": [1]}', "scope must be"),
])
def test_malformed_messages_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason) as info:
        ev.parse_message(payload, where="{s}/_events")
    assert "{s}/_events" in str(info.value) and info.value.reason


def test_log_entries_parse_like_messages_and_carry_their_id() -> None:
    e = ev.parse_entry("s", b"7-1", {b"e": b'{"type":"knowledge_shared","swarm":"s","key":null,'
                                          b'"agent":"a","version":0,"ts":7,"topic":"t",'
                                          b'"value":{"x":1}}', b"n": b"4"})
    assert (e.id, e.n, e.key, e.value) == ("7-1", 4, None, {"x": 1})
    assert e.to_dict()["id"] == "7-1" and e.to_dict()["n"] == 4
    with pytest.raises(MalformedEvent, match="names swarm"):
        ev.parse_entry("other", b"7-1", {b"e": b'{"type":"x","swarm":"s"}', b"n": b"1"})
    with pytest.raises(MalformedEvent, match="no event field"):
        ev.parse_entry("s", b"7-1", {b"x": b"1"})


def test_filters_combine_and_match_globs_on_local_or_full_keys() -> None:
    f = ev.EventFilter.build(["memory_updated"], agent=["a", "b"], group="g", match="a/*")
    assert f.matches(msg(1, group="g"))
    assert not f.matches(msg(1, group="h"))
    assert not f.matches(msg(1, group="g", agent="c"))
    assert not f.matches(msg(1, group="g", kind="memory_deleted"))
    assert not f.matches(msg(1, group="g", key="{s}/b/k"))
    assert ev.EventFilter.build(match="{s}/a/*").matches(msg(1))
    assert not ev.EventFilter.build(match="{t}/a/*").matches(msg(1))
    assert not ev.EventFilter.build(match="*").matches(msg(1, key=None))
    assert ev.EventFilter.build(context="c").matches(msg(1, context="c"))
    with pytest.raises(InvalidValue, match="unknown event type"):
        ev.EventFilter.build("memory_update")
    with pytest.raises(InvalidValue, match="agent"):
        ev.EventFilter.build(agent=[""])


def test_since_accepts_now_start_and_ids_only() -> None:
    assert ev.parse_since(None).kind == ev.parse_since("now").kind == "now"
    assert ev.parse_since("start").kind == "start"
    assert ev.parse_since("1700000000000-5").sid == (1700000000000, 5)
    assert ev.parse_since("1700000000000").sid == (1700000000000, 0)
    with pytest.raises(InvalidValue, match="since must be"):
        ev.parse_since("yesterday")


def delivery(**kw: Any) -> ev.Delivery:
    d = ev.Delivery(["s"], ev.parse_since(kw.pop("since", None)), ev.EventFilter.build(), **kw)
    d.begin({"s": None}, now_ms=100)
    return d


def drain(d: ev.Delivery) -> list[Any]:
    out = []
    while (item := d.pop()) is not None:
        out.append(item)
    return out


def test_live_events_in_sequence_pass_and_duplicates_drop() -> None:
    d = delivery()
    for i in (1, 2, 2, 1, 3):
        d.live(msg(i))
    assert [e.n for e in drain(d)] == [1, 2, 3]
    assert d.stats.duplicates == 2 and not d.needs_io()


def test_a_jump_in_n_sends_the_swarm_to_the_log_and_catch_up_fills_it() -> None:
    d = delivery()
    d.live(msg(1))
    d.live(msg(4))  # 2 and 3 were lost on the way
    assert d.needs_io()
    req = d.next_request()
    assert req == ev.CatchUp("s", "100-1", False, 1000)
    d.caught_up("s", [msg(2), msg(3), msg(4)], tail=msg(4))
    assert [e.n for e in drain(d)] == [1, 2, 3, 4] and not d.needs_io()
    d.live(msg(4))
    d.live(msg(5))
    assert [e.n for e in drain(d)] == [5]


def test_a_trimmed_log_yields_a_gap_with_the_exact_count_in_order() -> None:
    d = delivery()
    d.live(msg(1))
    d.resync()
    d.caught_up("s", [msg(7), msg(8)], tail=msg(8))
    items = drain(d)
    assert isinstance(items[1], EventGap) and items[1].missing == 5
    assert items[1].last_seen == "100-1" and items[1].oldest == "100-7"
    assert [getattr(i, "n", None) for i in items] == [1, None, 7, 8]


def test_a_reset_log_is_reported_not_swallowed() -> None:
    d = delivery()
    d.live(msg(1))
    d.live(msg(2))
    d.live(msg(3, n=1))  # newer id, but n went back: the log was reset
    d.caught_up("s", [msg(3, n=1)], tail=msg(3, n=1))
    items = drain(d)
    assert isinstance(items[2], EventGap) and items[2].missing is None
    assert "reset" in items[2].detail and items[3].id == "100-3"


def test_since_start_takes_the_log_as_it_is_and_catches_up_in_batches() -> None:
    d = delivery(since="start", batch=2)
    assert d.next_request() == ev.CatchUp("s", None, False, 2)
    d.caught_up("s", [msg(40), msg(41)], tail=msg(43))
    assert d.next_request() == ev.CatchUp("s", "100-41", False, 2)
    d.caught_up("s", [msg(42), msg(43)], tail=msg(43))
    d.caught_up("s", [], tail=msg(43))
    assert [e.n for e in drain(d)] == [40, 41, 42, 43] and not d.needs_io()


def test_since_an_id_older_than_the_log_reports_an_unknown_gap() -> None:
    d = delivery(since="100-2")
    req = d.next_request()
    assert isinstance(req, ev.CatchUp) and req.resolve
    d.caught_up("s", [msg(9)], tail=msg(9), before=None)
    items = drain(d)
    assert isinstance(items[0], EventGap) and items[0].missing is None
    d2 = delivery(since="100-2")
    d2.caught_up("s", [msg(3)], tail=msg(3), before=msg(2))
    assert [e.n for e in drain(d2)] == [3]


def test_keyspace_tracker_skips_memgangs_own_changes_and_converts_the_rest() -> None:
    t = ev.KeyspaceTracker(lambda swarm: swarm == "s")
    observe = [ev.Conversion("observe", "{s}/a/k", "s")]
    t.event(msg(1))  # memgang's own write: its event, then its hset notification
    assert t.notification("hset", "{s}/a/k") == []
    assert t.notification("hset", "{s}/a/k") == observe  # nothing announced it
    t.event(msg(2))
    assert t.notification("hset", "{s}/a/other") == [
        ev.Conversion("observe", "{s}/a/other", "s")]  # another key
    t.event(msg(3))
    t.reset()  # something else came between
    assert t.notification("hset", "{s}/a/k") == observe
    t.event(msg(4))
    assert t.notification("del", "{s}/a/k") == [
        ev.Conversion("prune", "{s}/a/k", "s", "memory_deleted", "del")]  # not a delete
    t.event(msg(5, kind="memory_deleted"))
    assert t.notification("del", "{s}/a/k") == []
    t.event(msg(6, kind="memory_deleted"))
    assert t.notification("expired", "{s}/a/k") == [
        ev.Conversion("prune", "{s}/a/k", "s", "memory_expired", "ttl")]
    assert t.notification("hset", "{s}/_lock/a/k") == []   # system key
    assert t.notification("hset", "{other}/a/k") == []     # not watched
    assert t.last is None


def test_keyspace_flags_keep_what_is_set_and_add_what_is_missing() -> None:
    assert ev.keyspace_flags("") == "Eghxe"
    assert ev.keyspace_flags("AKE") is None
    assert ev.keyspace_flags("Ex") == "Exghe"
    assert ev.keyspace_flags("Kl") == "KlEghxe"


# --- real subscriptions ---------------------------------------------------------------------------


def collect(stream: Any, n: int, timeout_s: float = 10.0) -> list[ev.Event]:
    out: list[ev.Event] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        event = stream.get(timeout_s=0.5)
        if event is not None:
            out.append(event)
    return out


def log_ids(raw: redis.Redis, swarm: str) -> list[str]:
    return [i.decode() for i, _ in raw.xrange(f"{{{swarm}}}/_log")]


def test_every_kind_of_change_arrives_once_in_log_order(swarm: memgang.Swarm,
                                                        raw: redis.Redis) -> None:
    me = swarm.agent("reader-1")
    with swarm.events() as stream:
        refs = [me.write(f"s{i}", {"i": i}, group="g1") for i in range(20)]
        me.share_knowledge("insight", {"x": 1})
        me.delete("s0")
        got = collect(stream, 22)
        assert stream.get(timeout_s=0) is None and stream.get(timeout_s=0.2) is None
    assert [e.id for e in got] == log_ids(raw, swarm.name)
    assert [e.n for e in got] == list(range(1, 23))
    assert [e.version for e in got[:20]] == [r.version for r in refs]
    assert got[0].group == "g1" and got[0].agent == "reader-1" and got[0].data["size"] > 0
    assert (got[20].type, got[20].data["topic"], got[20].value) == \
        ("knowledge_shared", "insight", {"x": 1})
    assert got[21].type == "memory_deleted" and got[21].key == me.key("s0")
    assert stream.last_id == got[-1].id and stream.stats.duplicates == 0


def test_filters_apply_end_to_end(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    with swarm.events("memory_updated", agent="a", match="a/keep-*") as stream:
        a.write("keep-1", 1)
        a.write("drop-1", 1)
        b.write("a/keep-2", 1)
        a.delete("keep-1")
        a.write("keep-3", 1)
        got = collect(stream, 2)
    assert [e.key for e in got] == [a.key("keep-1"), a.key("keep-3")]


def test_since_start_replays_the_log_and_since_id_resumes_after_it(swarm: memgang.Swarm) -> None:
    me = swarm.agent("a")
    for i in range(5):
        me.write(f"k{i}", i)
    with swarm.events(since="start") as stream:
        first = collect(stream, 5)
    assert [e.n for e in first] == [1, 2, 3, 4, 5]
    with swarm.events(since=first[2].id) as stream:
        rest = collect(stream, 2)
        me.write("k5", 5)
        rest += collect(stream, 1)
    assert [e.n for e in rest] == [4, 5, 6]


def test_async_iterator_and_async_subscribe_get_the_same_events(url: str) -> None:
    async def main() -> tuple[list[str], list[str]]:
        gang = await memgang.aio.connect(url)
        try:
            swarm = gang.swarm(fresh_swarm_name())
            seen: list[str] = []

            async def handler(event: memgang.aio.Event) -> None:
                seen.append(event.id)

            sub = await swarm.subscribe(handler)
            me = swarm.agent("a")
            got: list[str] = []
            async with swarm.events() as stream:
                for i in range(30):
                    await me.write(f"k{i}", i)
                async for event in stream:
                    got.append(event.id)
                    if len(got) == 30:
                        break
            while len(seen) < 30:
                await asyncio.sleep(0.01)
            await sub.stop()
            assert not sub.running
            return got, seen
        finally:
            await gang.close()

    got, seen = asyncio.run(asyncio.wait_for(main(), 20))
    assert got == seen and len(set(got)) == 30


def test_one_pubsub_connection_per_gang_and_unsubscribe_on_close(url: str,
                                                                 raw: redis.Redis) -> None:
    gang = memgang.connect(url)
    try:
        names = [fresh_swarm_name() for _ in range(3)]
        streams = [gang.swarm(n).events().start() for n in names for _ in range(2)]
        subs = [gang.swarm(names[0]).subscribe(lambda e: None) for _ in range(3)]
        # one connection: 3 swarm channels and the 4 keyspace channels, for all 9 listeners
        clients = [c for c in raw.client_list(_type="pubsub")
                   if c.get("name") == "memgang-events" and int(c["sub"]) == 7]
        assert len(clients) == 1
        assert raw.pubsub_numsub(f"{{{names[0]}}}/_events")[0][1] == 1
        for stream in streams:
            stream.close()
        for sub in subs:
            sub.stop()
        deadline = time.monotonic() + 5
        while raw.pubsub_numsub(f"{{{names[0]}}}/_events")[0][1] and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        assert raw.pubsub_numsub(*(f"{{{n}}}/_events" for n in names)) == \
            [(f"{{{n}}}/_events".encode(), 0) for n in names]
    finally:
        gang.close()


def test_a_slow_listener_never_stalls_the_others_and_loses_nothing(swarm: memgang.Swarm,
                                                                   raw: redis.Redis) -> None:
    release = threading.Event()
    slow_seen: list[str] = []

    def slow(event: memgang.Event) -> None:
        release.wait(30)
        slow_seen.append(event.id)

    sub = swarm.subscribe(slow, queue_size=8)
    try:
        with swarm.events() as fast:
            swarm.agent("w").write_many([(f"k{i}", i) for i in range(300)])
            fast_seen = [e.id for e in collect(fast, 300)]
            # the slow handler is still stuck on its first event: the fast one got everything
            assert len(fast_seen) == 300 and slow_seen == []
        release.set()
        deadline = time.monotonic() + 15
        while len(slow_seen) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        release.set()
        sub.stop()
    assert slow_seen == fast_seen == log_ids(raw, swarm.name)
    assert sub.stream.overflows >= 1 and sub.stats.replayed > 0


def _hub_with_ping(gang: memgang.Gang, interval_s: float) -> Any:
    from memgang._sync.events import SyncEventHub

    hub = gang.events_hub = SyncEventHub(gang, ping_interval_s=interval_s)
    return hub


def test_a_waiting_stream_reads_its_events_itself_and_others_get_them_too(
        url: str, raw: redis.Redis) -> None:
    gang = memgang.connect(url)
    writer = memgang.connect(url)
    try:
        hub = _hub_with_ping(gang, 60.0)
        swarm = gang.swarm(fresh_swarm_name())
        me = writer.swarm(swarm.name).agent("w")
        with swarm.events() as waiting, swarm.events() as idle:
            got: list[ev.Event] = []

            def read() -> None:
                while len(got) < 50 and (event := waiting.get(timeout_s=20)) is not None:
                    got.append(event)

            reader = threading.Thread(target=read)
            reader.start()
            for i in range(50):
                me.write(f"k{i}", i)
                until(lambda i=i: len(got) > i or not reader.is_alive(), "event", 10)
            reader.join(10)
            # the stream that waited read (nearly) all of them off the connection itself,
            # and the one that did not wait still got every one, in log order
            assert [e.id for e in got] == log_ids(raw, swarm.name)
            assert hub.stats.direct >= 40, hub.stats
            assert [e.id for e in collect(idle, 50)] == log_ids(raw, swarm.name)
    finally:
        writer.close()
        gang.close()


def test_closing_a_stream_ends_a_wait_in_which_it_reads_the_connection(url: str) -> None:
    # no PING for 60 s: only the close itself can end the reader's wait on the socket
    gang = memgang.connect(url)
    try:
        hub = _hub_with_ping(gang, 60.0)
        stream = gang.swarm(fresh_swarm_name()).events().start()
        result: list[Any] = []
        reader = threading.Thread(target=lambda: result.append(stream.get()))
        reader.start()
        until(lambda: hub._reader is stream, "the waiting stream takes the reader role", 10)
        stream.close()
        reader.join(10)
        assert not reader.is_alive() and result == [None]
        # a subscription stopped while its thread reads ends the same way
        seen: list[ev.Event] = []
        sub = gang.swarm(fresh_swarm_name()).subscribe(seen.append)
        until(lambda: hub._reader is sub.stream, "the subscription takes the reader role",
              10)
        sub.stop()
        assert not sub.running and seen == []
    finally:
        gang.close()


def test_streams_that_only_poll_their_mailbox_still_get_every_event(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    # nobody waits on the connection: one stream read once and went quiet, the other only
    # polls (get(0) never reads the socket itself): the hub reads for them
    me = swarm.agent("w")
    with swarm.events() as poller, swarm.events() as quiet:
        me.write("k0", 0)
        assert quiet.get(timeout_s=5) is not None
        for i in range(1, 6):
            me.write(f"k{i}", i)
        got: list[str] = []
        deadline = time.monotonic() + 10
        while len(got) < 6 and time.monotonic() < deadline:
            event = poller.get(timeout_s=0)
            if event is None:
                time.sleep(0.001)
            else:
                got.append(event.id)
        assert got == log_ids(raw, swarm.name)


def test_an_exception_raised_into_a_reading_stream_loses_and_repeats_nothing(
        url: str, raw: redis.Redis) -> None:
    # what Ctrl-C (or a SIGTERM handler that raises, like memgang watch's) does to a program
    # whose main thread waits for events: the exception lands where that thread waits, on the
    # socket, maybe with half a message read; the hub starts over and the stream carries on
    import signal

    import memgang._streams

    reading = memgang._streams.__file__

    class Alarm(KeyboardInterrupt):  # Ctrl-C's kind: not an Exception
        pass

    def on_alarm(_signum: int, frame: Any) -> None:
        if frame is not None and frame.f_code.co_filename == reading:
            raise Alarm

    gang = memgang.connect(url)
    writer = memgang.connect(url)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        hub = _hub_with_ping(gang, 60.0)
        swarm = gang.swarm(fresh_swarm_name())
        me = writer.swarm(swarm.name).agent("w")

        def write() -> None:
            for i in range(0, 3000, 10):
                me.write_many([(f"k{j}", j) for j in range(i, i + 10)])

        got: list[str] = []
        alarms = 0
        with swarm.events() as stream:
            thread = threading.Thread(target=write)
            thread.start()
            signal.setitimer(signal.ITIMER_REAL, 0.003, 0.007)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and (thread.is_alive() or len(got) < 3000):
                    try:
                        event = stream.get(timeout_s=0.5)
                    except Alarm:
                        alarms += 1
                        continue
                    if event is not None:
                        got.append(event.id)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                thread.join(30)
        assert alarms > 0 and hub.stats.connects > 1, (alarms, hub.stats)
        assert got == log_ids(raw, swarm.name) and len(got) == 3000
    finally:
        signal.signal(signal.SIGALRM, previous)
        writer.close()
        gang.close()


def test_a_trimmed_log_raises_a_gap_with_the_exact_count_then_carries_on(url: str) -> None:
    gang = memgang.connect(url, log_maxlen=100)
    try:
        swarm = gang.swarm(fresh_swarm_name())
        with swarm.events(queue_size=4) as stream:
            me = swarm.agent("w")
            for start in range(0, 1000, 100):
                me.write_many([(f"k{i}", i) for i in range(start, start + 100)])
            got: list[ev.Event] = []
            gaps: list[EventGap] = []
            while len(got) + sum(g.missing or 0 for g in gaps) < 1000:
                try:
                    event = stream.get(timeout_s=5)
                except EventGap as gap:
                    gaps.append(gap)
                    continue
                assert event is not None
                got.append(event)
        assert gaps and all(g.missing for g in gaps)
        assert len(got) + sum(g.missing or 0 for g in gaps) == 1000
        assert [e.n for e in got] == sorted({e.n for e in got})
        assert got[-1].n == 1000
    finally:
        gang.close()


def test_gap_as_an_event_for_handlers(url: str) -> None:
    gang = memgang.connect(url, log_maxlen=100)
    try:
        swarm = gang.swarm(fresh_swarm_name())
        me = swarm.agent("w")
        first = me.write("k", 0)
        first_id = gang.client.xrange(swarm.keys.log)[0][0].decode()
        for start in range(0, 500, 100):
            me.write_many([(f"k{i}", i) for i in range(start, start + 100)])
        assert first.version == 1
        with swarm.events(since=first_id, on_gap="event") as stream:
            head = stream.get(timeout_s=5)
        # the log no longer holds that id, so it cannot tell how many came after it
        assert head is not None and head.type == ev.GAP
        assert head.data["last_seen"] == first_id and head.data["missing"] is None
        assert "no longer reaches back" in head.data["detail"]
    finally:
        gang.close()


def two_hubs(url: str, swarm_name: str) -> tuple[list[memgang.Gang], list[Any]]:
    gangs = [memgang.connect(url), memgang.connect(url)]
    streams = [g.swarm(swarm_name).events().start() for g in gangs]
    return gangs, streams


def test_expiry_and_changes_by_other_tools_become_one_event_each(url: str,
                                                                 raw: redis.Redis) -> None:
    name = fresh_swarm_name()
    gangs, streams = two_hubs(url, name)  # two subscribed "processes" see every notification
    try:
        me = gangs[0].swarm(name).agent("a")
        ref = me.write("note", {"v": 1})
        key = me.key("note")
        me.write("short", {"v": 2}, ttl_s=0.1)
        raw.hset(key, "v", b"\x92\x01\x02")  # msgpack [1, 2], written behind memgang's back
        time.sleep(0.15)  # let the TTL pass; touching the key makes Redis expire it now
        assert not raw.exists(me.key("short"))
        raw.delete(key)
        for stream in streams:
            got = collect(stream, 5)
            assert [(e.type, e.agent) for e in got] == [
                ("memory_updated", "a"), ("memory_updated", "a"), ("memory_updated", None),
                ("memory_expired", None), ("memory_deleted", None)]
            assert got[2].version > ref.version and got[2].data["cause"] == "foreign"
            assert (got[3].key, got[3].data["cause"]) == (me.key("short"), "ttl")
            assert stream.get(timeout_s=0.3) is None
        assert raw.xlen(f"{{{name}}}/_log") == 5  # each logged exactly once
    finally:
        for g in gangs:
            g.close()


def test_memgangs_own_changes_cost_no_conversion_and_a_foreign_one_costs_one(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    # every script that changes an object publishes its event just before the object's
    # keyspace notification; a listener skips exactly those notifications, so a script that
    # got the order wrong shows up here as a conversion per change
    me = swarm.agent("a")
    with swarm.events() as stream:
        hub = swarm.gang.events_hub
        me.write("note", {"v": 1})
        me.write_many([("x", 1), ("y", 2), ("x", 3)])
        me.write("note", {"w": 2}, on_conflict="merge")
        me.write("short", 1, ttl_s=60)
        me.delete("y")
        raw.hset(me.key("note"), "v", b"\x92\x01\x02")  # behind memgang's back
        got = collect(stream, 8)  # (the conversion runs on the hub: wait for its event)
        me.write("after", 1)
        got += collect(stream, 1)
        assert hub is not None
        until(lambda: hub.stats.notifications >= 10, "every keyspace notification", 10)
        assert stream.get(timeout_s=0.3) is None
    assert [(e.type, e.agent) for e in got] == [("memory_updated", "a")] * 6 + [
        ("memory_deleted", "a"), ("memory_updated", None), ("memory_updated", "a")]
    assert got[-2].data["cause"] == "foreign"
    # 9 hset and 1 del: the foreign hset is converted; the conversion's own hset, like
    # every change memgang made, is not
    assert hub.stats.notifications == 10, hub.stats
    assert (hub.stats.conversions, hub.stats.announced) == (1, 1), hub.stats


def test_a_foreign_value_is_versioned_and_readable(swarm: memgang.Swarm,
                                                   raw: redis.Redis) -> None:
    me = swarm.agent("a")
    with swarm.events() as stream:
        me.write("note", {"v": 1})
        raw.hset(me.key("note"), "v", b"\x92\x01\x02")
        got = collect(stream, 2)
    obj = me.read("note")
    assert obj is not None and obj.value == [1, 2] and obj.version == got[1].version
    me.write("note", {"v": 3}, expected_version=obj.version)  # CAS sees the foreign version


def test_read_scope_announces_an_expiry_once_even_while_watched(swarm: memgang.Swarm,
                                                                raw: redis.Redis) -> None:
    me = swarm.agent("a")
    with swarm.events() as stream:
        for i in range(10):
            me.write(f"t{i}", i, ttl_s=0.05)
        collect(stream, 10)
        time.sleep(0.2)
        assert swarm.read_scope() == []  # lazy expiry and the watcher race to announce
        got = collect(stream, 10)
        assert stream.get(timeout_s=0.3) is None
    assert sorted(e.key or "" for e in got) == sorted(me.key(f"t{i}") for i in range(10))
    assert {e.type for e in got} == {"memory_expired"}
    assert raw.xlen(swarm.keys.log) == 20


def test_malformed_messages_are_reported_and_skipped(swarm: memgang.Swarm, raw: redis.Redis,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="memgang.events"), swarm.events() as stream:
        raw.publish(swarm.keys.channel, b"garbage")
        raw.publish(swarm.keys.channel, b'{"id":"1-1","type":"x","swarm":"elsewhere"}')
        swarm.agent("a").write("k", 1)
        got = collect(stream, 1)
    assert [e.type for e in got] == ["memory_updated"]
    messages = [r.getMessage() for r in caplog.records if r.name == "memgang.events"]
    assert any("not JSON" in m for m in messages)
    assert any("names swarm 'elsewhere'" in m for m in messages)


def with_server(private_server: Callable[..., EmbeddedServer], args: list[str]
                ) -> EmbeddedServer:
    return private_server(extra_args=args)


def test_keyspace_notifications_are_turned_on_where_allowed(
        private_server: Callable[..., EmbeddedServer],
        caplog: pytest.LogCaptureFixture) -> None:
    srv = with_server(private_server, ["--notify-keyspace-events", ""])
    gang = memgang.connect(srv.url)
    try:
        with caplog.at_level(logging.WARNING, logger="memgang.events"), \
                gang.swarm("s").events() as stream:
            flags = gang.client.config_get("notify-keyspace-events")
            assert set(str(next(iter(flags.values())))) >= set("Eghxe")
            gang.swarm("s").agent("a").write("k", 1, ttl_s=0.05)
            got = collect(stream, 2)
        assert [e.type for e in got] == ["memory_updated", "memory_expired"]
        assert any("memgang set it" in r.getMessage() for r in caplog.records)
    finally:
        gang.close()


def test_keyspace_notifications_that_cannot_be_checked_are_warned_about(
        private_server: Callable[..., EmbeddedServer],
        caplog: pytest.LogCaptureFixture) -> None:
    srv = with_server(private_server, ["--notify-keyspace-events", ""])
    admin = redis.Redis.from_url(srv.url)
    admin.acl_setuser("agent", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                      categories=["+@all"], commands=["-config"])
    admin.close()
    assert srv.socket_path is not None
    gang = memgang.connect(f"unix://agent:pw@{srv.socket_path}")
    try:
        with caplog.at_level(logging.WARNING, logger="memgang.events"), \
                gang.swarm("s").events():
            pass
        assert any("cannot check notify-keyspace-events" in r.getMessage()
                   for r in caplog.records)
    finally:
        gang.close()


def test_stream_ids_beyond_64_bits_are_not_ids() -> None:
    from memgang.events import parse_id, parse_since

    assert parse_id("18446744073709551615-18446744073709551615") == (2**64 - 1, 2**64 - 1)
    assert parse_id("99999999999999999999999-0") is None
    assert parse_id("1-18446744073709551616") is None
    with pytest.raises(memgang.InvalidValue, match="log id"):
        parse_since("99999999999999999999999-0")


def test_a_stream_left_by_break_is_no_longer_fed(swarm: memgang.Swarm,
                                                 gang: memgang.Gang) -> None:
    import gc

    swarm.agent("a").write("x", 1)
    for _ in range(5):
        for _event in swarm.events(since="start"):
            break  # the stream is dropped without close(): nothing may keep feeding it
    gc.collect()
    hub = gang.events_hub
    assert hub is not None
    assert [r.name for r in hub.routes.values() if r.live()] == []
    swarm.agent("a").write("x", 2)  # delivery to the dead routes must not fail either
    with swarm.events(since="start") as events:
        assert [e.version for e in (events.get(5), events.get(5))] == [1, 2]


def test_an_async_handler_may_stop_its_own_subscription(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        gang = await memgang.aio.connect(url)
        try:
            swarm = gang.swarm(fresh_swarm_name())
            seen: list[str] = []
            done = asyncio.Event()

            async def handler(event: memgang.Event) -> None:
                seen.append(event.id)
                await sub.stop()
                done.set()

            sub = await swarm.subscribe(handler, since="start")
            await swarm.agent("a").write("x", 1)
            await asyncio.wait_for(done.wait(), 10)
            await swarm.agent("a").write("x", 2)
            await asyncio.sleep(0.2)  # a stopped subscription sees nothing more
            assert len(seen) == 1 and not sub.running
        finally:
            await gang.close()

    with caplog.at_level(logging.WARNING, logger="memgang"):
        asyncio.run(main())
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
