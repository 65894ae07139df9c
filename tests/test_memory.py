"""The shared memory core: writes, reads, scopes, conflict policies, events, bad input."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import orjson
import pytest
import redis

import memgang
import memgang.aio
from memgang.codec import pack_strings
from memgang.keys import parse_full
from memgang.memory import target
from memgang.testing import fresh_swarm_name

import _workers

SPAWN = multiprocessing.get_context("spawn")


def state_of(raw: redis.Redis, swarm: memgang.Swarm) -> dict[bytes, Any]:
    """Every key of the swarm with its type and content: to prove nothing changed."""
    out: dict[bytes, Any] = {}
    for key in raw.scan_iter(match=f"{{{swarm.name}}}*".replace("{", "[{]").replace("}", "[}]")):
        kind = raw.type(key)
        if kind == b"hash":
            out[key] = raw.hgetall(key)
        elif kind == b"zset":
            out[key] = raw.zrange(key, 0, -1, withscores=True)
        elif kind == b"stream":
            out[key] = raw.xrange(key)
        else:
            out[key] = raw.dump(key)
    return out


class Subscriber:
    """A plain redis-py subscriber on the swarm's channel: what anyone would see."""

    def __init__(self, raw: redis.Redis, swarm: memgang.Swarm) -> None:
        self.pubsub = raw.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(swarm.keys.channel)
        self.pubsub.get_message(timeout=1)  # the subscribe confirmation

    def drain(self, settle_s: float = 0.2) -> list[dict[str, Any]]:
        out = []
        while True:
            msg = self.pubsub.get_message(timeout=settle_s)
            if msg is None:
                return out
            out.append(orjson.loads(msg["data"]))


@pytest.fixture
def sub(raw: redis.Redis, swarm: memgang.Swarm) -> Iterator[Subscriber]:
    s = Subscriber(raw, swarm)
    try:
        yield s
    finally:
        s.pubsub.close()


# -- writes and reads ----------------------------------------------------------------------

def test_write_then_read_returns_value_and_metadata(swarm: memgang.Swarm) -> None:
    me = swarm.agent("reader-1")
    chunk = me.write("chunk-1", {"text": "t"})
    ref = me.write("summary-3", {"text": "...", "score": 1.0, "blob": b"\x00\xff"},
                   group="summarizers", context="ctx-1", tags=["draft"], derived_from=[chunk])
    assert ref.key == f"{{{swarm.name}}}/reader-1/summary-3"
    obj = me.read(ref)
    assert obj is not None
    assert obj.value == {"text": "...", "score": 1.0, "blob": b"\x00\xff"}
    assert isinstance(obj.value["score"], float)
    assert (obj.version, obj.agent, obj.group, obj.context) == (ref.version, "reader-1",
                                                                 "summarizers", "ctx-1")
    assert obj.tags == ("draft",)
    assert obj.derived_from == (chunk,)
    assert obj.created_ms <= obj.updated_ms and obj.ttl_ms is None
    assert len(obj.content_hash) == 40
    assert not obj.moved_on


def test_keys_resolve_id_space_id_full_key_and_ref(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    ref = a.write("x", 1)
    for spelling in ("x", "a/x", ref.key, ref):
        obj = a.read(spelling)
        assert obj is not None and obj.value == 1
    obj = b.read("a/x")
    assert obj is not None and obj.key == ref.key
    assert b.read("x") is None  # b's own space
    assert swarm.read("a/x") is not None


def test_versions_are_monotonic_even_across_delete(swarm: memgang.Swarm) -> None:
    me = swarm.agent("a")
    v1 = me.write("x", 1).version
    v2 = me.write("x", 2).version
    assert me.delete("x")
    v3 = me.write("x", 3).version
    assert v1 < v2 < v3


def test_ref_to_a_version_that_has_moved_on(swarm: memgang.Swarm) -> None:
    me = swarm.agent("a")
    old = me.write("x", "first")
    me.write("x", "second")
    obj = me.read(old)
    assert obj is not None
    assert obj.moved_on and obj.requested_version == old.version
    assert obj.value == "second" and obj.version > old.version
    current = me.read(obj.ref)
    assert current is not None and not current.moved_on


def test_ttl_expires_object(swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    ref = me.write("short", {"v": 1}, ttl_s=30)
    obj = me.read(ref)
    assert obj is not None and obj.ttl_ms is not None and 0 < obj.ttl_ms <= 30_000
    me.write("short", {"v": 2}, ttl_s=0.05)
    deadline = time.monotonic() + 5
    while raw.exists(ref.key) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert me.read("short") is None
    # its index entries are pruned by the next scoped read
    assert swarm.read_scope(agent="a") == []
    assert raw.zscore(swarm.keys.idx_all, ref.key) is None


def test_write_without_ttl_removes_an_earlier_ttl(swarm: memgang.Swarm) -> None:
    me = swarm.agent("a")
    me.write("x", 1, ttl_s=60)
    me.write("x", 2)
    obj = me.read("x")
    assert obj is not None and obj.ttl_ms is None


# -- scopes --------------------------------------------------------------------------------

def test_scoped_reads_and_their_intersections(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write("1", 1, group="g1", context="c1")
    a.write("2", 2, group="g2", context="c1")
    b.write("3", 3, group="g1", context="c2")
    b.write("4", 4, group="g1", context="c1")
    b.write("5", 5)

    def values(**scope: str) -> list[int]:
        return sorted(o.value for o in swarm.read_scope(**scope))

    assert values() == [1, 2, 3, 4, 5]
    assert values(agent="a") == [1, 2]
    assert values(group="g1") == [1, 3, 4]
    assert values(context="c1") == [1, 2, 4]
    assert values(agent="b", group="g1") == [3, 4]
    assert values(group="g1", context="c1") == [1, 4]
    assert values(agent="b", group="g1", context="c1") == [4]
    assert values(agent="a", context="c2") == []
    newest_first = swarm.read_scope(limit=2)
    assert [o.value for o in newest_first] == [5, 4]


def test_a_limited_scoped_read_reads_only_the_newest_objects_it_returns(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    a = swarm.agent("a")
    refs = a.write_many({f"o{i}": i for i in range(200)}, group="g")
    swarm.agent("c").write("secret", -1, group="g", readable_by=["c"])  # newest, hidden
    raw.delete(refs[-1].key)  # the newest visible one vanishes behind memgang's back
    raw.config_resetstat()
    newest = swarm.read_scope(group="g", limit=5)
    assert [o.value for o in newest] == [198, 197, 196, 195, 194]
    # the candidates were ordered by a plain HGET of their version, and only a few of the
    # 201 were read in full by the read script (the vanished one was pruned once)
    calls = {name: int(stat["calls"]) for name, stat in raw.info("commandstats").items()}
    assert calls["cmdstat_hget"] == 201
    assert calls["cmdstat_evalsha"] <= 16 + 1
    assert len(swarm.read_scope(group="g")) == 199  # the hidden one is not for this reader


def test_changing_group_context_and_writer_moves_the_object_between_indexes(
        swarm: memgang.Swarm, gang: memgang.Gang) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write("x", 1, group="g1", context="c1")
    # b has never seen the object: its first write guesses the scope, is told, retries
    b.write("a/x", 2, group="g2", context="c2")
    assert [o.value for o in swarm.read_scope(group="g2", context="c2", agent="b")] == [2]
    assert swarm.read_scope(group="g1") == []
    assert swarm.read_scope(context="c1") == []
    assert swarm.read_scope(agent="a") == []
    # a fresh AgentMemory with no cache can still delete it and leaves no index entry
    assert gang.swarm(swarm.name).agent("c").delete("a/x")
    assert swarm.read_scope() == [] and swarm.read_scope(group="g2") == []


def test_an_expired_object_recreated_in_another_scope_leaves_no_stale_match(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    ref = me.write("x", 1, group="old", ttl_s=0.05)
    deadline = time.monotonic() + 5
    while raw.exists(ref.key) and time.monotonic() < deadline:
        time.sleep(0.02)
    swarm.agent("b").write("a/x", 2, group="new")  # same key, new object, new writer
    assert swarm.read_scope(group="old") == []  # the stale entry does not match ...
    assert swarm.read_scope(agent="a") == []
    assert raw.zrangebylex(swarm.keys.idx_group, "-", "+") == [
        b"new\x00" + ref.key.encode()]  # ... and is pruned by the read that found it
    assert [o.value for o in swarm.read_scope(group="new", agent="b")] == [2]


def test_writers_taking_turns_on_one_key_never_need_a_retry(swarm: memgang.Swarm) -> None:
    agents = [swarm.agent(f"w{i}") for i in range(4)]
    for round_ in range(5):
        for i, me in enumerate(agents):
            me.write("global/doc", {"by": i, "round": round_}, group=f"g{i % 2}")
    (obj,) = swarm.read_scope(agent="w3", group="g1")
    assert obj.value == {"by": 3, "round": 4}
    for i in range(3):
        assert swarm.read_scope(agent=f"w{i}") == []
    assert swarm.read_scope(group="g0") == []


# -- conflict policies -----------------------------------------------------------------------

def test_lww_last_write_wins(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write("global/plan", {"v": "a"})
    b.write("global/plan", {"v": "b"})
    obj = a.read("global/plan")
    assert obj is not None and obj.value == {"v": "b"} and obj.agent == "b"


def test_expected_version_compare_and_set(swarm: memgang.Swarm, sub: Subscriber) -> None:
    me = swarm.agent("a")
    with pytest.raises(memgang.ConflictError) as err:
        me.write("x", 1, expected_version=3)
    assert err.value.current == 0 and err.value.expected == 3
    ref = me.write("x", 1, expected_version=0)  # 0: must not exist yet
    with pytest.raises(memgang.ConflictError) as err:
        me.write("x", 2, expected_version=0)
    assert err.value.current == ref.version
    ref2 = me.write("x", 2, expected_version=ref.version)
    obj = me.read("x")
    assert obj is not None and obj.value == 2 and obj.version == ref2.version
    events = sub.drain()
    assert [(e["type"], e["version"]) for e in events] == [
        ("memory_updated", ref.version), ("memory_updated", ref2.version)]


def test_expected_version_retry_loop_across_processes_loses_no_update(
        swarm: memgang.Swarm, url: str) -> None:
    procs, times = 4, 40
    with SPAWN.Pool(procs) as pool:
        conflicts = pool.starmap(_workers.cas_increment,
                                 [(url, swarm.name, f"w{i}", "global/counter", times)
                                  for i in range(procs)])
    obj = swarm.read("global/counter")
    assert obj is not None and obj.value == procs * times
    assert sum(conflicts) >= 0  # contention is likely but not guaranteed on 2 cores


def test_merge_keeps_fields_and_exact_types(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    big = 2**62 + 1
    a.write("global/plan", {"x": 1.0, "big": big, "raw": b"\x01", "nested": {"k": [1, 2]}})
    b.write("global/plan", {"y": "b", "x": 2.5}, on_conflict="merge")
    a.write("global/plan", {"z": None}, on_conflict="merge")
    obj = a.read("global/plan")
    assert obj is not None
    assert obj.value == {"x": 2.5, "big": big, "raw": b"\x01", "nested": {"k": [1, 2]},
                         "y": "b", "z": None}
    assert list(obj.value) == ["x", "big", "raw", "nested", "y", "z"]
    # a merge into nothing creates the mapping
    a.write("fresh", {"only": 1}, on_conflict="merge")
    fresh = a.read("fresh")
    assert fresh is not None and fresh.value == {"only": 1}


def test_merge_from_many_processes_keeps_every_agents_fields(
        swarm: memgang.Swarm, url: str) -> None:
    procs, fields = 6, 25
    with SPAWN.Pool(4) as pool:
        pool.starmap(_workers.merge_fields,
                     [(url, swarm.name, f"m{i}", "global/merged", fields) for i in range(procs)])
    obj = swarm.read("global/merged")
    assert obj is not None
    assert obj.value == {f"m{i}-{j}": j for i in range(procs) for j in range(fields)}


def test_merge_of_a_non_mapping_is_refused_and_changes_nothing(
        swarm: memgang.Swarm, raw: redis.Redis, sub: Subscriber) -> None:
    me = swarm.agent("a")
    me.write("list", [1, 2])
    me.write("map", {"a": 1})
    sub.drain()
    before = state_of(raw, swarm)
    with pytest.raises(memgang.InvalidValue, match="mapping"):
        me.write("map", [3], on_conflict="merge")
    with pytest.raises(memgang.InvalidValue, match="not a mapping"):
        me.write("list", {"b": 2}, on_conflict="merge")
    assert state_of(raw, swarm) == before
    assert sub.drain() == []


def test_merge_past_the_size_bound_is_refused(url: str, raw: redis.Redis) -> None:
    gang = memgang.connect(url, max_value_bytes=1000)
    try:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        me.write("m", {"a": "x" * 600})
        with pytest.raises(memgang.InvalidValue, match="limit is 1000"):
            me.write("m", {"b": "y" * 600}, on_conflict="merge")
        obj = me.read("m")
        assert obj is not None and obj.value == {"a": "x" * 600}
    finally:
        gang.close()


def test_manual_keeps_the_losing_write_and_resolves(
        swarm: memgang.Swarm, sub: Subscriber, gang: memgang.Gang) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    base = a.write("global/doc", {"text": "v1"}, on_conflict="manual")
    assert b.read("global/doc") is not None
    winner = b.write("global/doc", {"text": "b's edit"}, on_conflict="manual")
    with pytest.raises(memgang.ManualConflict) as err:
        a.write("global/doc", {"text": "a's edit"}, on_conflict="manual")  # based on v1
    assert err.value.current == winner.version and err.value.expected == base.version
    obj = a.read("global/doc")
    assert obj is not None and obj.value == {"text": "b's edit"}
    conflicts = swarm.conflicts()
    (entry,) = conflicts[base.key]
    assert (entry.agent, entry.value, entry.id) == ("a", {"text": "a's edit"},
                                                    err.value.conflict_id)
    events = sub.drain()
    assert [e["type"] for e in events] == ["memory_updated", "memory_updated",
                                           "conflict_detected"]
    resolved = a.resolve("global/doc", take=entry.id)
    assert resolved is not None
    obj = b.read("global/doc")
    assert obj is not None and obj.value == {"text": "a's edit"}
    assert swarm.conflicts() == {}
    with pytest.raises(memgang.NotFound):
        a.resolve("global/doc", keep_current=True)


def test_manual_from_many_processes_applies_or_keeps_every_write(
        swarm: memgang.Swarm, url: str) -> None:
    procs, times = 4, 20
    with SPAWN.Pool(procs) as pool:
        lost = pool.starmap(_workers.manual_writes,
                            [(url, swarm.name, f"w{i}", "global/doc", times)
                             for i in range(procs)])
    kept = sum(len(v) for v in swarm.conflicts().values())
    assert kept == sum(lost)  # every losing write is kept, none silently dropped
    raw_log = swarm.gang.client.xrange(swarm.keys.log)
    updates = sum(1 for _, f in raw_log if b'"memory_updated"' in f[b"e"])
    assert updates + kept == procs * times


def test_resolve_with_a_value_of_your_own_and_keep_current(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write("doc", 1, on_conflict="manual")
    b.read("a/doc")
    b.write("a/doc", 2, on_conflict="manual")
    with pytest.raises(memgang.ManualConflict):
        a.write("doc", 3, on_conflict="manual")
    a.resolve("doc", value=23)
    obj = a.read("doc")
    assert obj is not None and obj.value == 23 and swarm.conflicts() == {}
    with pytest.raises(memgang.ManualConflict):
        b.write("a/doc", 4, on_conflict="manual", expected_version=1)
    assert a.resolve("doc", keep_current=True) is not None
    obj = a.read("doc")
    assert obj is not None and obj.value == 23 and swarm.conflicts() == {}
    with pytest.raises(memgang.InvalidValue, match="exactly one"):
        a.resolve("doc", take="1", value=2)


# -- access lists --------------------------------------------------------------------------

def test_writable_by_and_readable_by_are_enforced(swarm: memgang.Swarm) -> None:
    a, b = swarm.agent("a"), swarm.agent("b")
    a.write("secret", {"k": 1}, writable_by=["a"], readable_by=["a"])
    with pytest.raises(memgang.Forbidden) as err:
        b.write("a/secret", {"k": 2})
    assert err.value.allowed == ["a"]
    with pytest.raises(memgang.Forbidden):
        b.delete("a/secret")
    with pytest.raises(memgang.Forbidden):
        b.read("a/secret")
    assert swarm.read_scope(reader="b") == []
    obj = a.read("secret")
    assert obj is not None and obj.value == {"k": 1}


# -- events ----------------------------------------------------------------------------------

def test_exactly_one_event_per_committed_write_and_none_for_refused(
        swarm: memgang.Swarm, sub: Subscriber, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    refs = [me.write(f"k{i}", i, group="g") for i in range(5)]
    for bad in (lambda: me.write("k0", 9, expected_version=999),
                lambda: me.write("k0", {"a": 1}, on_conflict="merge"),
                lambda: me.write("k0", object())):
        with pytest.raises(memgang.Error):
            bad()
    assert me.delete("k4")
    assert not me.delete("k4")
    events = sub.drain()
    assert [(e["type"], e["key"], e["version"]) for e in events] == [
        *(("memory_updated", r.key, r.version) for r in refs),
        ("memory_deleted", refs[4].key, refs[4].version),
    ]
    log = raw.xrange(swarm.keys.log)
    assert [eid.decode() for eid, _ in log] == [e["id"] for e in events]
    first = orjson.loads(log[0][1][b"e"])
    # the log entry holds the event without its id, and its position n as a field of its own
    assert first == {k: v for k, v in events[0].items() if k not in ("id", "n")}
    assert [int(fields[b"n"]) for _, fields in log] == [e["n"] for e in events] == \
        [1, 2, 3, 4, 5, 6]
    assert first["scope"] == {"group": "g", "context": None} and first["agent"] == "a"


def test_share_knowledge_fires_knowledge_shared(swarm: memgang.Swarm, sub: Subscriber) -> None:
    eid = swarm.agent("a").share_knowledge("optimization_insight", {"tip": "cache", "n": [1]})
    (event,) = sub.drain()
    assert event == {"id": eid, "n": 1, "type": "knowledge_shared", "swarm": swarm.name,
                     "key": None, "agent": "a", "version": 0, "ts": event["ts"],
                     "topic": "optimization_insight", "value": {"tip": "cache", "n": [1]}}


def test_script_flush_mid_run_operations_still_succeed(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    me.write("x", 1)
    raw.script_flush()
    assert me.write("x", 2).version > 0
    raw.script_flush()
    obj = me.read("x")
    assert obj is not None and obj.value == 2
    raw.script_flush()
    assert len(me.write_many({f"b{i}": i for i in range(10)})) == 10
    raw.script_flush()
    assert len(swarm.read_scope()) == 11
    raw.script_flush()
    assert me.delete("x")


def test_kept_default_write_requests_are_bounded_and_each_names_its_own_object(
        swarm: memgang.Swarm, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write with no options is sent from a request kept per key as the caller names it
    (AgentMemory._plain_write): every form of a key must reach the same object, another
    key never borrows its request, and the kept requests stay within their bound."""
    monkeypatch.setattr(memgang._sync.gang, "_PLAIN_CACHE", 3)
    me = swarm.agent("a")
    full = f"{{{swarm.name}}}/a/x"
    forms: list[str | memgang.MemoryRef] = ["x", "a/x", full, memgang.MemoryRef(full, 1)]
    for n, form in enumerate(forms * 2, start=1):
        ref = me.write(form, {"n": n})
        assert (ref.key, ref.version > 0) == (full, True)
        obj = me.read("x")
        assert obj is not None and obj.value == {"n": n} and obj.version == ref.version
    for round_ in range(2):  # more keys than the bound, twice: each lands on its own
        for i in range(8):
            me.write(f"k{i}", [round_, i])
        assert len(me._plain) <= 3
    assert {o.key.rsplit("/", 1)[1]: o.value for o in swarm.read_scope(agent="a")} == \
        {"x": {"n": 8}} | {f"k{i}": [1, i] for i in range(8)}
    # a write with options in between does not disturb the kept request of its key
    me.write("k0", "grouped", group="g")
    me.write("k0", "plain")
    obj = me.read("k0")
    assert obj is not None and (obj.value, obj.group) == ("plain", "g")


def test_write_many_pipelines_atomic_writes(swarm: memgang.Swarm, sub: Subscriber) -> None:
    me = swarm.agent("a")
    refs = me.write_many({f"k{i}": {"i": i} for i in range(50)}, group="batch")
    assert [r.version for r in refs] == sorted(r.version for r in refs)
    assert len(swarm.read_scope(group="batch")) == 50
    assert len(sub.drain()) == 50
    with pytest.raises(memgang.ConflictError):
        me.write_many([("k1", 1), ("new", 2)], expected_version=0)
    assert me.read("new") is not None  # the other write of the batch was kept


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "_sys", "a b", "a/b/c/d", "x{y}", "*", "q?", "[", "a\\b",
                                 "a|b",
                                 "tab\tx", "nl\n", "\x00"])
def test_invalid_names_are_refused_before_reaching_redis(
        swarm: memgang.Swarm, raw: redis.Redis, bad: str) -> None:
    me = swarm.agent("a")
    before = state_of(raw, swarm)
    with pytest.raises(memgang.InvalidKey):
        me.write(bad, 1)
    with pytest.raises(memgang.InvalidKey):
        me.write("ok", 1, group=bad if bad else "_")
    assert state_of(raw, swarm) == before


def test_invalid_agent_and_swarm_names(gang: memgang.Gang) -> None:
    with pytest.raises(memgang.InvalidKey, match="forbidden character"):
        gang.swarm("a}b")
    with pytest.raises(memgang.InvalidKey, match="reserved"):
        gang.swarm("ok").agent("_me")
    with pytest.raises(memgang.InvalidKey, match="belongs to swarm"):
        gang.swarm("one").agent("a").read("{two}/a/x")


def test_a_key_or_name_of_the_wrong_type_is_named_not_a_type_error(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    # the checks of keys and names keep a cache, which cannot hash a list: the check itself
    # must still see it and say what is wrong, the first time and every time after
    me = swarm.agent("a")
    before = state_of(raw, swarm)
    for _ in range(2):
        with pytest.raises(memgang.InvalidKey, match="must be a string"):
            me.write(["k"], 1)  # type: ignore[arg-type]
        with pytest.raises(memgang.InvalidKey, match="must be a string"):
            me.read(["k"])  # type: ignore[arg-type]
        with pytest.raises(memgang.InvalidKey, match="group must be a string"):
            me.write("k", 1, group=["g"])  # type: ignore[arg-type]
        with pytest.raises(memgang.InvalidKey, match="not a full memory key"):
            parse_full(["{s}/a/k"])  # type: ignore[arg-type]
    assert state_of(raw, swarm) == before


def test_keys_over_255_bytes_are_refused(swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    room = 255 - len(f"{{{swarm.name}}}/a/".encode())
    me.write("é" * (room // 2), 1)  # multi-byte: the limit is in bytes
    before = state_of(raw, swarm)
    with pytest.raises(memgang.InvalidKey, match="255 bytes"):
        me.write("x" * (room + 1), 1)
    with pytest.raises(memgang.InvalidKey, match="255 bytes"):
        me.write("é" * (room // 2 + 1), 1)
    assert state_of(raw, swarm) == before


def test_values_over_the_bound_or_too_deep_or_unserializable(
        url: str, raw: redis.Redis) -> None:
    gang = memgang.connect(url, max_value_bytes=4096, max_depth=8)
    try:
        swarm = gang.swarm(fresh_swarm_name())
        me = swarm.agent("a")
        before = state_of(raw, swarm)
        with pytest.raises(memgang.InvalidValue, match="limit is 4096"):
            me.write("big", "x" * 5000)
        deep: Any = 1
        for _ in range(9):
            deep = [deep]
        with pytest.raises(memgang.InvalidValue, match="deeper than 8"):
            me.write("deep", deep)
        # the last fails halfway through packing: nothing of it may reach the next value
        for bad in (object(), {1, 2}, {"when": time}, 2**70, {"a": [1, 2], "b": object()}):
            with pytest.raises(memgang.InvalidValue, match="msgpack"):
                me.write("odd", bad)
        with pytest.raises(memgang.InvalidValue, match="ttl_s"):
            me.write("t", 1, ttl_s=-1)
        with pytest.raises(memgang.InvalidValue, match="on_conflict"):
            me.write("t", 1, on_conflict="newest")
        with pytest.raises(memgang.InvalidValue, match="expected_version"):
            me.write("t", 1, expected_version=-2)
        assert state_of(raw, swarm) == before
        me.write("fits", {"x": "x" * 4000})
        obj = me.read("fits")
        assert obj is not None and obj.value == {"x": "x" * 4000}
    finally:
        gang.close()


def test_a_value_written_by_another_tool_is_read_back_as_msgpack(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    ref = me.write("x", {"a": 1})
    assert msgpack.unpackb(raw.hget(ref.key, "v")) == {"a": 1}


def test_memory_ref_parse_round_trip() -> None:
    ref = memgang.MemoryRef("{s}/a/x", 7)
    assert memgang.MemoryRef.parse(str(ref)) == ref
    with pytest.raises(memgang.InvalidKey):
        memgang.MemoryRef.parse("{s}/a/x")


# -- async face ------------------------------------------------------------------------------

def test_async_face_has_the_same_behaviour(url: str) -> None:
    async def main() -> None:
        gang = await memgang.aio.connect(url)
        try:
            swarm = gang.swarm(fresh_swarm_name())
            me = swarm.agent("a")
            ref = await me.write("x", {"a": 1}, group="g")
            await swarm.agent("b").write("a/x", {"b": 2}, on_conflict="merge")
            obj = await me.read(ref)
            assert obj is not None and obj.value == {"a": 1, "b": 2} and obj.moved_on
            with pytest.raises(memgang.ConflictError):
                await me.write("x", 3, expected_version=ref.version)
            assert [o.key for o in await swarm.read_scope(group="g")] == [ref.key]
            results = await asyncio.gather(*(me.write(f"k{i}", i) for i in range(20)))
            assert len({r.version for r in results}) == 20
            assert await me.delete("x")
        finally:
            await gang.close()

    asyncio.run(main())


# -- connection ------------------------------------------------------------------------------

def test_connect_refuses_unknown_scheme_and_hides_password() -> None:
    with pytest.raises(memgang.Error, match="unsupported URL scheme"):
        memgang.connect("http://localhost")
    cfg = memgang.Config.from_url("redis://user:hunter2@localhost:6390/0")
    assert "hunter2" not in repr(cfg) and "***" in repr(cfg)


def test_connect_to_nothing_raises_connection_lost(tmp_path: Any) -> None:
    with pytest.raises(memgang.ConnectionLost):
        memgang.connect(f"unix://{tmp_path}/nobody.sock")


def test_errors_survive_pickling_across_processes() -> None:
    import pickle

    for err in (memgang.ConflictError("{s}/a/x", expected=1, current=2, agent="a"),
                memgang.ScriptError("write", [99]), memgang.Locked("{s}/a/x", holder="b",
                                                                    mode="write"),
                memgang.ManualConflict("{s}/a/x", expected=1, current=3, conflict_id="7")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert back.__dict__ == err.__dict__


def test_write_many_spans_batches_and_refuses_only_the_bad_item(
        swarm: memgang.Swarm, sub: Subscriber) -> None:
    me = swarm.agent("a")
    me.write("k70", "taken")
    sub.drain()
    with pytest.raises(memgang.ConflictError) as err:
        me.write_many({f"k{i}": i for i in range(150)}, expected_version=0)
    assert err.value.key.endswith("/k70")
    obj = me.read("k70")
    assert obj is not None and obj.value == "taken"
    values = sorted(o.value for o in swarm.read_scope() if isinstance(o.value, int))
    assert values == [i for i in range(150) if i != 70]
    events = sub.drain()
    assert len(events) == 149 and len({e["version"] for e in events}) == 149


def test_a_malformed_write_call_is_refused_whole(swarm: memgang.Swarm, raw: redis.Redis,
                                                 gang: memgang.Gang) -> None:
    ks = swarm.keys
    before = state_of(raw, swarm)
    shared = [ks.seq, ks.log, ks.idx_all, ks.idx_agent, ks.idx_group, ks.idx_context,
              ks.conflict_index]
    options = pack_strings(["a", "lww", "", "", "", "", "", "", 1000, 1000, swarm.name,
                            ks.channel, "", "", "", ""])
    with pytest.raises(memgang.ScriptError, match="whole objects"):  # no object
        gang.call("write", [*shared, ks.log_n], [options])
    obj = target(swarm.name, "a", "k")[0]
    object_keys = [obj.full, ks.lock(obj), ks.fence(obj), ks.conflicts(obj)]
    with pytest.raises(memgang.ScriptError, match="not the 16 options"):  # 13 of them
        gang.call("write", [*shared, *object_keys, ks.log_n], [options[:-3], b"\x01", ""])
    assert state_of(raw, swarm) == before


def test_one_broken_object_in_a_batch_is_refused_alone(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    refs = me.write_many({f"m{i}": {"i": i} for i in range(3)})
    raw.hset(refs[1].key, "v", b"\xde\x00")  # another tool leaves truncated msgpack
    raw.hset(refs[2].key, "wb", "not json")  # ... and a broken access list
    with pytest.raises(memgang.InvalidValue, match="not a mapping"):
        me.write_many({f"m{i}": {"x": 1} for i in range(3)}, on_conflict="merge")
    first = me.read("m0")
    assert first is not None and first.value == {"i": 0, "x": 1}
    with pytest.raises(memgang.Forbidden):
        me.write("m2", {"y": 1})


def test_values_other_tools_store_still_print_as_json(swarm: memgang.Swarm) -> None:
    from memgang.codec import dumps_json

    me = swarm.agent("a")
    me.write("when", {"at": msgpack.Timestamp(1, 0), "ext": msgpack.ExtType(5, b"x")})
    obj = me.read("when")
    assert obj is not None
    assert orjson.loads(dumps_json(obj.value)) == {
        "at": "1970-01-01T00:00:01+00:00", "ext": {"msgpack_ext": 5, "data": "x"}}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0])
def test_ttl_must_be_a_finite_positive_number(swarm: memgang.Swarm, bad: float) -> None:
    with pytest.raises(memgang.InvalidValue, match="ttl_s"):
        swarm.agent("a").write("x", 1, ttl_s=bad)


def test_an_object_another_tool_broke_is_a_clear_error_and_does_not_sink_a_scoped_read(
        swarm: memgang.Swarm, raw: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    me = swarm.agent("a")
    broken, fine = me.write("broken", {"a": 1}), me.write("fine", {"a": 2})
    for damage in ({"v": b"\xc1"}, {"ver": "not a number"}, {"df": "not json"}):
        raw.hset(broken.key, mapping=damage)
        with pytest.raises(memgang.InvalidValue, match="changed by something other") as caught:
            me.read("broken")
        assert caught.value.key == broken.key
        with caplog.at_level("WARNING", logger="memgang"):
            assert [o.key for o in swarm.read_scope()] == [fine.key]
        assert broken.key in caplog.text
        me.write("broken", {"a": 1})  # memgang's own write makes it whole again
        assert me.read("broken").value == {"a": 1}  # type: ignore[union-attr]
    raw.hdel(broken.key, "v")
    with pytest.raises(memgang.InvalidValue, match="has no value"):
        me.read("broken")


def test_a_full_redis_refuses_writes_whole_with_out_of_memory(
        private_server: Any) -> None:
    srv = private_server()
    raw = redis.Redis.from_url(srv.url)
    with memgang.connect(srv.url) as gang:
        swarm = gang.swarm(fresh_swarm_name())
        me = swarm.agent("a")
        me.write("x", 1)
        me.lock("x").acquire().release()
        used = int(raw.info("memory")["used_memory"])
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", used // 2)  # over the limit, and nothing may be evicted
        before = state_of(raw, swarm)
        with pytest.raises(memgang.OutOfMemory, match="out of memory"):
            me.write("x", 2)
        with pytest.raises(memgang.OutOfMemory):
            me.write_many({"y": 1, "z": 2})
        with pytest.raises(memgang.OutOfMemory):
            me.lock("x", timeout_s=0).acquire()
        assert state_of(raw, swarm) == before  # nothing half-written, no event logged
        obj = me.read("x")
        assert obj is not None and obj.value == 1  # reads still work
        raw.config_set("maxmemory", 0)
        assert me.write("x", 2).version > obj.version
    raw.close()
