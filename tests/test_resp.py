"""memgang.resp: script calls packed ahead in parts. The bytes must be exactly what a RESP
packer makes of the same arguments (hiredis's is the reference), whatever parts were kept
from earlier calls, or Redis would run a different command."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import hiredis
import msgpack
import orjson
import pytest
import redis

import memgang
from memgang import resp
from memgang.codec import Codec
from memgang.keys import SwarmKeys
from memgang.memory import Settings, plain_write, plan_write_many, target
from memgang.testing import fresh_swarm_name

ARGS: list[Any] = ["", "x", "é ü 中", b"", b"\x00\xff\r\n", 0, -1, 2**63, 1.5, -0.0, 1e300,
                   "k" * 5000, b"v" * 100_000]


def test_bulks_are_what_a_resp_packer_makes_of_each_argument() -> None:
    assert resp.bulks(ARGS) == hiredis.pack_command(tuple(ARGS))[len(b"*%d\r\n" % len(ARGS)):]


def test_an_evalsha_packed_ahead_is_the_command_hiredis_packs() -> None:
    keys, args = ARGS[:5], ARGS[5:]
    call = resp.Packed(len(keys), len(args), resp.bulks(keys) + resp.bulks(args))
    sha = b"0123456789abcdef0123456789abcdef01234567"
    expected = hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args))
    assert call.evalsha(sha) == expected
    assert call.evalsha(sha) == expected  # its kept first part, again


@pytest.mark.parametrize("bad", [None, True, object(), ["a"], "\ud800"])
def test_an_argument_redis_cannot_take_is_named_before_anything_is_packed(bad: Any) -> None:
    with pytest.raises(redis.exceptions.DataError, match="cannot send"):
        resp.bulk(bad)
    with pytest.raises(redis.exceptions.DataError, match="cannot send"):
        resp.command("SET", "k", bad)


def test_a_part_cache_that_fills_up_starts_again_and_keeps_answering() -> None:
    cache = resp.PartCache(limit=3)
    for i in range(10):
        assert cache.put(i, b"%d" % i) == b"%d" % i
        assert cache.get(i) == b"%d" % i
    assert cache.get(0) is None  # dropped when the cache filled, made again on demand


def _reference_write(ks: SwarmKeys, items: list[tuple[str, Any]], writer: str,
                     **options: Any) -> bytes:
    """The write.lua call that plan_write_many packs, checked whole against the same call
    packed argument by argument by hiredis from the KEYS and ARGV layout lua/write.lua
    documents."""
    settings = Settings(Codec(), 1000)
    plan = plan_write_many(ks, settings,
                           [(target(ks.swarm, writer, k)[0], v) for k, v in items], writer,
                           **options)
    keys = [ks.seq, ks.log, ks.idx_all, ks.idx_agent, ks.idx_group, ks.idx_context,
            ks.conflict_index]
    for key, _ in items:
        k = target(ks.swarm, writer, key)[0]
        keys += [k.full, ks.lock(k), ks.fence(k), ks.conflicts(k)]
    keys.append(ks.log_n)

    def names(what: str) -> bytes | str:
        return "" if options.get(what) is None else orjson.dumps(list(options[what]))

    ttl_s = options.get("ttl_s")
    refs = options.get("derived_from")
    options_list: list[Any] = [
        writer, options.get("on_conflict", "lww"),
        "" if ttl_s is None else str(round(ttl_s * 1000)),
        options.get("group") or "", options.get("context") or "",
        names("tags"), names("readable_by"), names("writable_by"),
        settings.log_maxlen, settings.codec.max_bytes, ks.swarm, ks.channel, "",
        options.get("expected_version", ""),
        orjson.dumps([[r.key, r.version] for r in refs]) if refs else "",
        options.get("fence", ""),
    ]
    # ARGV[1]: the 16 options as a msgpack stream of strings (numbers as decimal text)
    args: list[Any] = [b"".join(
        msgpack.packb(o if isinstance(o, (str, bytes)) else str(o), use_bin_type=False)
        for o in options_list)]
    for _, value in items:
        packed = msgpack.packb(value, use_bin_type=True)
        merge = options.get("on_conflict") == "merge"
        args += [packed, "" if merge else hashlib.sha1(packed).hexdigest()]
    expected = hiredis.pack_command((*keys, *args))
    assert (plan.call.nkeys, plan.call.nargs) == (len(keys), len(args))
    assert plan.call.body == expected[len(b"*%d\r\n" % (len(keys) + len(args))):]
    return plan.call.body


def test_a_write_packed_from_kept_parts_is_the_same_as_one_packed_afresh() -> None:
    ks = SwarmKeys(fresh_swarm_name())
    first = _reference_write(ks, [("a", 1), ("b", {"x": 2})], "w", group="g", ttl_s=5)
    # every part is now kept: the same call, packed again, is the same bytes
    assert _reference_write(ks, [("a", 1), ("b", {"x": 2})], "w", group="g", ttl_s=5) == first
    # and a call that differs in one option or one value is not
    assert _reference_write(ks, [("a", 1), ("b", {"x": 2})], "w", group="h", ttl_s=5) != first
    assert _reference_write(ks, [("a", 1), ("b", {"x": 3})], "w", group="g", ttl_s=5) != first


def test_every_option_reaches_its_argv_slot_whether_its_part_was_kept_or_not() -> None:
    ks = SwarmKeys(fresh_swarm_name())
    ref = memgang.MemoryRef(f"{{{ks.swarm}}}/w/src", 3)
    for _ in range(2):  # packed afresh, then from the kept options
        _reference_write(ks, [("a", 1)], "w", tags=("t1", "t2"), readable_by=["r"],
                         writable_by=(), context="c")
        for version in (0, 7, 8):  # what changes from write to write is never kept
            _reference_write(ks, [("a", 1)], "w", expected_version=version)
            _reference_write(ks, [("a", 1)], "w", fence=version + 1, derived_from=[ref])
        _reference_write(ks, [("a", {"f": 1})], "w", on_conflict="merge")
        _reference_write(ks, [("a", {"f": 1})], "w", on_conflict="manual",
                         expected_version=2)


SHA = hashlib.sha1(b"write.lua, as loaded").hexdigest().encode()


def _plain(ks: SwarmKeys, settings: Settings, writer: str, key: str, value: Any) -> bytes:
    return plain_write(ks, settings, target(ks.swarm, writer, key)[0], writer, SHA
                       ).request(value)


def _general(ks: SwarmKeys, settings: Settings, writer: str, key: str, value: Any) -> bytes:
    k = target(ks.swarm, writer, key)[0]
    return plan_write_many(ks, settings, [(k, value)], writer).call.evalsha(SHA)


def test_a_write_with_default_options_sends_the_bytes_of_the_general_plan() -> None:
    """Agent.write's path for a write with no options keeps, per key, the whole request but
    the value: it must be the very request the general planner (checked above against
    write.lua's layout) makes, for every writer, object and value, first and kept."""
    ks = SwarmKeys(fresh_swarm_name())
    settings = Settings(Codec(), 1000)
    for _ in range(2):  # packed afresh, then from the kept parts
        for writer, key, value in (("w", "a", 1), ("w", "b", {"x": [1, 2]}),
                                   ("v", "w/a", "text"), ("w", "a", None)):
            assert _plain(ks, settings, writer, key, value) == \
                _general(ks, settings, writer, key, value)
    # one kept head serves every value: only the value's two ARGV change
    kept = plain_write(ks, settings, target(ks.swarm, "w", "a")[0], "w", SHA)
    for value in (1, "two", [3], {"four": 4.0}, b"\x00five"):
        assert kept.request(value) == _general(ks, settings, "w", "a", value)
    # the kept options are per writer: another writer's request names its own agent
    assert _plain(ks, settings, "w", "w/a", 1) != _plain(ks, settings, "other", "w/a", 1)
    # and per bound: a Gang with another log bound gets its own options
    other = Settings(Codec(), 2000)
    assert _plain(ks, other, "w", "a", 1) == _general(ks, other, "w", "a", 1)
    assert _plain(ks, other, "w", "a", 1) != _plain(ks, settings, "w", "a", 1)


def test_a_value_refused_on_the_default_path_is_named() -> None:
    ks = SwarmKeys(fresh_swarm_name())
    k = target(ks.swarm, "w", "a")[0]
    with pytest.raises(memgang.InvalidValue, match="cannot be encoded"):
        plain_write(ks, Settings(Codec(), 1000), k, "w", SHA).request(object())
    small = plain_write(ks, Settings(Codec(max_bytes=10), 1000), k, "w", SHA)
    with pytest.raises(memgang.InvalidValue, match=f"for {re.escape(k.full)} is .* limit is 10"):
        small.request("x" * 100)


@pytest.mark.parametrize(("bad", "named"), [
    ({"group": ["g"]}, "group must be a string"),
    ({"tags": (["t"],)}, "tag must be a string"),
    ({"ttl_s": [1]}, "ttl_s must be"),
    ({"on_conflict": {"lww": 1}}, "on_conflict must be"),
    ({"tags": "one-string"}, "tag must be a list"),
])
def test_a_bad_option_is_refused_by_name_even_when_it_cannot_be_kept(
        bad: dict[str, Any], named: str) -> None:
    ks = SwarmKeys("s")
    item = [(target("s", "w", "a")[0], 1)]
    for _ in range(2):  # nothing of a refused call is kept for the next
        with pytest.raises(memgang.Error, match=named):
            plan_write_many(ks, Settings(Codec(), 1000), item, "w", **bad)


@pytest.mark.parametrize("option", ["expected_version", "fence"])
def test_a_bool_is_not_taken_for_a_version_or_a_token(option: str) -> None:
    with pytest.raises(memgang.InvalidValue, match=option):
        plan_write_many(SwarmKeys("s"), Settings(Codec(), 1000),
                        [(target("s", "w", "a")[0], 1)], "w", **{option: True})


def test_a_whole_command_and_one_joined_from_parts_are_the_same_bytes() -> None:
    assert resp.command(*ARGS) == b"*%d\r\n" % len(ARGS) + resp.bulks(ARGS)
