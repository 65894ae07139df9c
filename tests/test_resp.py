"""memgang.resp: script calls packed ahead in parts. The bytes must be exactly what a RESP
packer makes of the same arguments (hiredis's is the reference), whatever parts were kept
from earlier calls, or Redis would run a different command."""

from __future__ import annotations

from typing import Any

import hiredis
import pytest
import redis

import memgang
from memgang import resp
from memgang.codec import Codec
from memgang.keys import SwarmKeys
from memgang.memory import Settings, plan_write_many, target
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
    """The write.lua call, packed argument by argument by hiredis from the KEYS and ARGV
    layout lua/write.lua documents."""
    plan = plan_write_many(ks, Settings(Codec(), 1000),
                           [(target(ks.swarm, writer, k)[0], v) for k, v in items], writer,
                           **options)
    body = plan.call.body
    keys = [ks.seq, ks.log, ks.idx_all, ks.idx_agent, ks.idx_group, ks.idx_context,
            ks.conflict_index]
    for key, _ in items:
        k = target(ks.swarm, writer, key)[0]
        keys += [k.full, ks.lock(k), ks.fence(k), ks.conflicts(k)]
    keys.append(ks.log_n)
    assert plan.call.nkeys == len(keys)
    assert body.startswith(hiredis.pack_command(tuple(keys))[len(b"*%d\r\n" % len(keys)):])
    return body


def test_a_write_packed_from_kept_parts_is_the_same_as_one_packed_afresh() -> None:
    ks = SwarmKeys(fresh_swarm_name())
    first = _reference_write(ks, [("a", 1), ("b", {"x": 2})], "w", group="g", ttl_s=5)
    # every part is now kept: the same call, packed again, is the same bytes
    assert _reference_write(ks, [("a", 1), ("b", {"x": 2})], "w", group="g", ttl_s=5) == first
    # and a call that differs in one option or one value is not
    assert _reference_write(ks, [("a", 1), ("b", {"x": 2})], "w", group="h", ttl_s=5) != first
    assert _reference_write(ks, [("a", 1), ("b", {"x": 3})], "w", group="g", ttl_s=5) != first


@pytest.mark.parametrize("option", ["expected_version", "fence"])
def test_a_bool_is_not_taken_for_a_version_or_a_token(option: str) -> None:
    with pytest.raises(memgang.InvalidValue, match=option):
        plan_write_many(SwarmKeys("s"), Settings(Codec(), 1000),
                        [(target("s", "w", "a")[0], 1)], "w", **{option: True})


def test_a_whole_command_and_one_joined_from_parts_are_the_same_bytes() -> None:
    assert resp.command(*ARGS) == b"*%d\r\n" % len(ARGS) + resp.bulks(ARGS)
