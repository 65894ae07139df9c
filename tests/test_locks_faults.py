"""Locks under faults: holders SIGKILLed or SIGSTOPped past their lease, a waiter that dies in
the queue, and a Redis restart (AOF) under contention. Processes and servers are really
killed, paused and restarted; every wait is on a state, never a sleep-and-hope."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest
import redis
from test_locks import LOCK, SPAWN, Procs, holders, overlap, queued, state, until

import memgang
import memgang.aio
from memgang import scripts
from memgang.codec import loads_json
from memgang.keys import parse_full
from memgang.locks import interpret_acquire, interpret_cancel, lock_call, new_lock_id
from memgang.server import EmbeddedServer
from memgang.testing import fresh_swarm_name

import _lock_workers as workers


@pytest.fixture
def procs() -> Iterator[Procs]:
    group = Procs()
    try:
        yield group
    finally:
        for proc in group.procs:  # a test may leave one stopped
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGCONT)
        group.close()


def log_events(raw: redis.Redis, swarm: memgang.Swarm) -> list[tuple[str, str]]:
    entries = raw.xrange(swarm.keys.log)
    return [(e["type"], e["agent"]) for e in (loads_json(f[b"e"]) for _, f in entries)]


def expect(out: Any, kind: str) -> Any:
    """The next report of a child, which must be ``kind``."""
    got, arg = out.get(timeout=60)
    assert got == kind, (got, arg)
    return arg


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    return thread, result


def test_a_sigkilled_holder_is_replaced_when_its_lease_ends(
        url: str, swarm: memgang.Swarm, raw: redis.Redis, procs: Procs) -> None:
    commands = SPAWN.Queue()
    child = procs.start(workers.hold_until_told, url, swarm.name, "doomed", 400, commands,
                        procs.out)
    old_token = expect(procs.out, "holding")
    me = swarm.agent("next")
    thread, got = in_thread(lambda: me.lock(LOCK, "write", timeout_s=20).acquire())
    until(lambda: queued(swarm) == [("next", "write")], "next queued behind the holder")
    child.kill()  # SIGKILL: no release, no goodbye
    thread.join(30)
    assert got and got[0].held
    assert got[0].token > old_token
    # granted by the re-check at the dead lease's end: expired, then acquired; never released
    assert log_events(raw, swarm)[-2:] == [("lock_expired", "doomed"), ("lock_acquired", "next")]
    assert ("lock_released", "doomed") not in log_events(raw, swarm)
    got[0].release()


def test_a_sigstopped_holder_resumed_past_its_lease_gets_stale_fence_and_lock_lost(
        url: str, swarm: memgang.Swarm, procs: Procs) -> None:
    commands = SPAWN.Queue()
    child = procs.start(workers.hold_until_told, url, swarm.name, "sleepy", 400, commands,
                        procs.out)
    old_token = expect(procs.out, "holding")
    os.kill(child.pid, signal.SIGSTOP)  # paused while holding: its watchdog cannot renew
    me = swarm.agent("successor")
    with me.lock(LOCK, "write", timeout_s=20) as lease:
        assert lease.token > old_token
        os.kill(child.pid, signal.SIGCONT)
        commands.put(("write", "from the past"))  # with the token it got before the pause
        reports = [procs.out.get(timeout=60)]
        while reports[-1][0] in ("on_lost",):
            reports.append(procs.out.get(timeout=60))
        assert reports[-1] == ("refused", "StaleFence")
        commands.put(("exit", None))
        reports.append(procs.out.get(timeout=60))
        while reports[-1][0] in ("on_lost",):
            reports.append(procs.out.get(timeout=60))
        assert reports[-1] == ("exit-error", "LockLost")
        if not any(kind == "on_lost" for kind, _ in reports):
            reports.append(procs.out.get(timeout=60))  # raced with the exit's report
        assert [kind for kind, _ in reports].count("on_lost") == 1
        me.write(LOCK, "current", fence=lease.token)
    obj = me.read(LOCK)
    assert obj is not None and obj.value == "current"


def test_a_waiter_that_dies_in_the_queue_is_skipped(
        url: str, swarm: memgang.Swarm, raw: redis.Redis, procs: Procs) -> None:
    me, other = swarm.agent("holder"), swarm.agent("patient")
    with me.lock(LOCK, "write", lease_ms=30_000):
        child = procs.start(workers.take_once, url, swarm.name, "ghost", "write", procs.out,
                            100)
        until(lambda: queued(swarm) == [("ghost", "write")], "ghost queued")
        thread, got = in_thread(lambda: other.lock(LOCK, "write", timeout_s=30).acquire())
        until(lambda: queued(swarm) == [("ghost", "write"), ("patient", "write")],
              "patient queued behind the ghost")
        child.kill()
        # it stops re-checking: its entry is abandoned (lease + slack), still in the queue
        until(lambda: any(w.abandoned for w in state(swarm).queue), "the ghost abandoned",  # type: ignore[union-attr]
              timeout_s=30)
    thread.join(30)  # the release skipped the ghost and granted the patient waiter at once
    assert got and got[0].held
    assert ("lock_acquired", "ghost") not in log_events(raw, swarm)
    got[0].release()
    assert state(swarm) is None


def test_a_redis_restart_under_contention_never_yields_two_holders(
        private_server: Callable[..., EmbeddedServer], procs: Procs) -> None:
    srv = private_server(aof=True)
    gang = memgang.connect(srv.url)
    try:
        swarm = gang.swarm(fresh_swarm_name())
        me = swarm.agent("observer")

        def value() -> int:
            try:
                obj = me.read(LOCK)
            except memgang.ConnectionLost:
                return -1
            return int(obj.value) if obj else 0

        stop = procs.go
        for i in range(6):
            procs.start(workers.fenced_increments, srv.url, swarm.name, f"w{i}", stop,
                        procs.out)
        assert all(kind == "ready" for kind, _ in procs.results(6))
        until(lambda: value() >= 20, "progress before the restart", timeout_s=60)
        srv.restart()  # SIGTERM: the AOF is complete; lease times are server wall-clock
        before = value()
        until(lambda: value() >= before + 20, "progress after the restart", timeout_s=60)
        stop.set()
        results = procs.results(6)
    finally:
        gang.close()
    clean = sorted(iv for _, ivs, _, _ in results for iv in ivs)
    assert not [(a, b) for a, b in pairwise(clean) if overlap(a[:2], b[:2])]
    tokens = [t for _, _, ts, _ in results for t in ts]
    assert len(tokens) == len(set(tokens)), "a fencing token was issued twice"
    # tokens of clean holds follow the order of the holds: never back after the restart
    assert [t for _, _, t in clean] == sorted(t for _, _, t in clean)


BUSY_SCRIPT = """
local t = redis.call('TIME')
local until_us = (tonumber(t[1]) * 1000000 + tonumber(t[2])) + tonumber(ARGV[1]) * 1000
repeat t = redis.call('TIME') until tonumber(t[1]) * 1000000 + tonumber(t[2]) >= until_us
return 1
"""


def test_a_lease_that_cannot_be_renewed_on_a_read_only_redis_is_reported_lost(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server()
    gang = memgang.connect(srv.url)
    lost: list[memgang.LockLost] = []
    try:
        me = gang.swarm(fresh_swarm_name()).agent("a")
        lease = me.lock("doc", lease_ms=600, on_lost=lost.append)
        lease.acquire()
        with redis.Redis.from_url(srv.url) as admin:
            admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # read-only from now on
            try:
                until(lambda: bool(lost), "the watchdog to report the lost lease", 15)
            finally:
                admin.execute_command("REPLICAOF", "NO", "ONE")
        assert not lease.held
        with pytest.raises(memgang.LockLost):
            lease.release()
    finally:
        gang.close()


def test_an_acquire_interrupted_in_flight_gives_its_grant_back(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server()

    async def main() -> None:
        gang = await memgang.aio.connect(srv.url)
        try:
            swarm = gang.swarm(fresh_swarm_name())
            async with swarm.agent("a").lock("warm-up"):  # wake channel subscribed already
                pass
            stall = threading.Thread(target=lambda: redis.Redis.from_url(srv.url).eval(
                BUSY_SCRIPT, 0, 400))
            stall.start()
            time.sleep(0.05)  # the busy script is running: the next request waits behind it
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(swarm.agent("a").lock("doc").acquire(), 0.1)
            stall.join()
            assert [s for s in await swarm.locks() if s.holders] == []
            async with swarm.agent("b").lock("doc", timeout_s=5) as lease:
                assert lease.token > 0
        finally:
            await gang.close()

    asyncio.run(main())


def test_a_cancel_that_overtakes_its_own_request_leaves_nothing_granted_or_queued(
        swarm: memgang.Swarm, gang: memgang.Gang, raw: redis.Redis) -> None:
    # an interrupted caller sends its cancel on another connection, which can reach Redis
    # before the request itself; the request must then queue and grant nothing, or the name
    # stays blocked for a whole lease with nobody to release it
    key = parse_full(swarm.agent("a").key("doc"))
    call = lock_call(swarm.keys, key, gang.settings.log_maxlen)
    waiter = new_lock_id()
    wake = swarm.keys.wake("listener")
    assert interpret_cancel(gang.call("lock_cancel", list(call.keys), call.cancel(waiter))) \
        is False
    reply = gang.call("lock_acquire", list(call.keys),
                      call.acquire(waiter, "a", "write", 10_000, wake, False))
    assert interpret_acquire(reply, name=key.full, agent="a", mode="write") is None
    assert holders(swarm, "a/doc") == [] and queued(swarm, "a/doc") == []
    assert raw.hget(swarm.keys.lock_waiters(key), waiter) is None  # the tombstone is used up
    # and the name is free for the next caller, at once
    with swarm.agent("b").lock("a/doc", timeout_s=0) as lease:
        assert lease.token is not None and lease.token > 0
    # a cancel that comes after its request (the usual order) leaves no tombstone behind
    other = new_lock_id()
    assert interpret_acquire(gang.call("lock_acquire", list(call.keys),
                                       call.acquire(other, "a", "write", 10_000, wake, False)),
                             name=key.full, agent="a", mode="write") is not None
    assert interpret_cancel(gang.call("lock_cancel", list(call.keys), call.cancel(other))) \
        is True
    assert raw.hget(swarm.keys.lock_waiters(key), other) is None


def test_a_grant_read_late_from_its_wake_message_counts_its_lease_from_the_grant(
        swarm: memgang.Swarm, gang: memgang.Gang, monkeypatch: pytest.MonkeyPatch) -> None:
    # the waiter's process stalls before it reads the wake message that carries its grant:
    # the lease must count from when Redis granted it (so the watchdog renews at once),
    # not from when the message was read (the watchdog would then renew after Redis had
    # already ended the lease, and the holder would lose it)
    from memgang._sync.locks import runtime_for

    runtime = runtime_for(gang)
    dispatch = runtime.dispatch

    def stalled(message: Any) -> None:
        if message[0] == b"message":
            time.sleep(0.75)
        dispatch(message)

    holder = swarm.agent("a").lock("shared/doc")
    holder.acquire()
    lost: list[Any] = []
    waiting = swarm.agent("b").lock("shared/doc", lease_ms=1000, on_lost=lost.append)
    thread, out = in_thread(waiting.acquire)
    until(lambda: queued(swarm, "shared/doc") == [("b", "write")], "b to queue")
    monkeypatch.setattr(runtime, "dispatch", stalled)
    holder.release()
    thread.join(10)
    assert out == [waiting]
    time.sleep(1.5)  # longer than the lease: only renewals keep it
    assert lost == [] and waiting.held
    assert holders(swarm, "shared/doc") == [("b", "write")]
    waiting.release()


def test_failed_try_locks_leave_no_tombstones(swarm: memgang.Swarm, raw: redis.Redis) -> None:
    # a try-lock that is answered "not now" has nothing queued: it sends no cancel, so it
    # leaves no cancel tombstone behind (thousands of them would pile up on a busy name)
    holder = swarm.agent("a").lock("shared/doc")
    holder.acquire()
    for _ in range(100):
        with pytest.raises(memgang.LockTimeout):
            swarm.agent("b").lock("shared/doc", timeout_s=0).acquire()
    key = parse_full(swarm.agent("a").key("shared/doc"))
    assert raw.hlen(swarm.keys.lock_waiters(key)) == 0
    holder.release()


def test_tombstones_of_requests_that_never_come_are_swept(
        swarm: memgang.Swarm, gang: memgang.Gang, raw: redis.Redis) -> None:
    key = parse_full(swarm.agent("a").key("doc"))
    call = lock_call(swarm.keys, key, gang.settings.log_maxlen)
    waiters = swarm.keys.lock_waiters(key)
    for _ in range(40):  # cancels whose requests were lost before they were sent
        gang.call("lock_cancel", list(call.keys), call.cancel(new_lock_id()))
    tombstones = {f.decode(): v.decode() for f, v in raw.hgetall(waiters).items()
                  if v.startswith(b"cancelled|")}
    assert len(tombstones) == 40
    stale = {f: v.replace(v.split("|")[1], "1") for f, v in tombstones.items()}
    raw.hset(waiters, mapping=stale)  # ... and whose time has passed, as has the time
    raw.hset(waiters, "_sweep", "1")  # until which a sweep that found none past its own
    #                                   put off the next one
    gang.call("lock_cancel", list(call.keys), call.cancel(new_lock_id()))
    left = {f.decode() for f in raw.hkeys(waiters)}
    assert len(left - {"_sweep"}) == 1  # only the newest, still within its time


def _hgetalls(raw: redis.Redis) -> int:
    """HGETALL calls the server has run, those inside scripts included."""
    return int(raw.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))


def test_a_storm_of_cancels_sweeps_the_tombstones_once_not_on_every_cancel(
        swarm: memgang.Swarm, gang: memgang.Gang, raw: redis.Redis) -> None:
    def cancels(name: str, n: int) -> int:
        key = parse_full(swarm.agent("a").key(name))
        call = lock_call(swarm.keys, key, gang.settings.log_maxlen)
        before = _hgetalls(raw)
        for _ in range(n):  # cancels whose requests were lost before they were sent
            gang.call("lock_cancel", list(call.keys), call.cancel(new_lock_id()))
        assert raw.hlen(swarm.keys.lock_waiters(key)) >= n  # every tombstone kept
        return _hgetalls(raw) - before

    per_cancel = cancels("calm", 10) / 10  # below the sweep threshold: no sweep at all
    # 300 tombstones within their time: the first sweep over the threshold finds nothing
    # to drop, and puts off the next; before, every cancel swept them all again
    assert cancels("storm", 300) <= 300 * per_cancel + 1


def test_a_recheck_that_arrives_after_its_cancel_queues_and_grants_nothing(
        swarm: memgang.Swarm, gang: memgang.Gang) -> None:
    key = parse_full(swarm.agent("a").key("shared/doc"))
    call = lock_call(swarm.keys, key, gang.settings.log_maxlen)
    wake = swarm.keys.wake("listener")
    holder = swarm.agent("a").lock("shared/doc")
    holder.acquire()
    waiter = new_lock_id()

    def ask(recheck: bool) -> Any:
        reply = gang.call("lock_acquire", list(call.keys),
                          call.acquire(waiter, "b", "write", 30_000, wake, False,
                                       recheck=recheck))
        return interpret_acquire(reply, name=key.full, agent="b", mode="write")

    assert type(ask(False)).__name__ == "Queued"
    # the caller is interrupted during a re-check; its cancel overtakes the re-check
    assert interpret_cancel(gang.call("lock_cancel", list(call.keys), call.cancel(waiter))) \
        is False
    holder.release()
    assert ask(True) is None  # the late re-check
    assert holders(swarm, "shared/doc") == [] and queued(swarm, "shared/doc") == []
    with swarm.agent("c").lock("shared/doc", timeout_s=0):
        pass


def test_a_refused_upgrade_sends_no_cancel_and_leaves_no_tombstone(
        swarm: memgang.Swarm, raw: redis.Redis) -> None:
    me = swarm.agent("a")
    with me.lock("doc", "read"):
        with pytest.raises(memgang.LockUpgradeRefused):
            me.lock("doc", "exclusive", timeout_s=5).acquire()
        key = parse_full(me.key("doc"))
        assert raw.hlen(swarm.keys.lock_waiters(key)) == 0  # answered: nothing to withdraw


def test_a_waiter_that_asks_afresh_never_takes_a_stale_wake_up_for_its_grant(
        swarm: memgang.Swarm, monkeypatch: pytest.MonkeyPatch) -> None:
    # b's process stalls: it reads its grant's wake-up only after the grant's lease has
    # ended and c took the lock; b's re-check finds its entry gone and asks afresh. The
    # stale wake-up must not pass for the new request's grant (b would believe it holds the
    # lock while c does, and leave its new request queued with nobody to release it)
    from memgang._sync import locks as sync_locks

    held_back: list[Any] = []
    dispatch, ask = sync_locks.SyncLockRuntime.dispatch, sync_locks.SyncLease._ask
    stalled = threading.Event()

    def late_dispatch(self: Any, message: Any, reader: Any = None) -> None:
        if message[0] == b"message" and not held_back:
            held_back.append(message)  # read late, below
            return
        dispatch(self, message, reader)

    def slow_ask(self: Any, args: list[Any]) -> Any:
        if self.agent == "b" and args[-1] == "1" and held_back and not stalled.is_set():
            stalled.set()
            time.sleep(1.0)  # the stall: past the grant's 600 ms lease
        out = ask(self, args)
        if self.agent == "b" and args[-1] == "" and stalled.is_set() and held_back:
            dispatch(sync_locks.runtime_for(self.gang), held_back.pop())  # the stale one
        return out

    monkeypatch.setattr(sync_locks.SyncLockRuntime, "dispatch", late_dispatch)
    monkeypatch.setattr(sync_locks.SyncLease, "_ask", slow_ask)
    first = swarm.agent("a").lock("shared/doc")
    first.acquire()
    waiting = swarm.agent("b").lock("shared/doc", lease_ms=600, timeout_s=20)
    thread, out = in_thread(waiting.acquire)
    until(lambda: queued(swarm, "shared/doc") == [("b", "write")], "b to queue")
    first.release()  # b is granted; its wake-up is held back
    until(lambda: holders(swarm, "shared/doc") == [], "b's unused grant to expire", 5)
    third = swarm.agent("c").lock("shared/doc", timeout_s=0)
    third.acquire()
    until(lambda: stalled.is_set() and not held_back, "b to ask afresh and read the stale wake")
    assert holders(swarm, "shared/doc") == [("c", "write")]
    assert not waiting.held  # the stale wake-up was not taken for a grant
    until(lambda: queued(swarm, "shared/doc") == [("b", "write")], "b to queue again")
    third_token = third.token
    third.release()
    thread.join(20)
    assert out == [waiting]
    # b got the lock for real, after c, and holds exactly what Redis says
    assert holders(swarm, "shared/doc") == [("b", "write")]
    assert waiting.token is not None and third_token is not None
    assert waiting.token > third_token
    waiting.release()
    assert holders(swarm, "shared/doc") == [] and queued(swarm, "shared/doc") == []


class CuttingProxy:
    """A TCP proxy to a server's unix socket that, once armed with a marker, cuts the next
    client connection whose request contains it: before forwarding the request (the call
    never reaches Redis), or after Redis has answered it (the call ran, its reply is lost).
    A real network fault, between a real client and a real server."""

    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed: tuple[bytes, bool] | None = None
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes, *, before: bool) -> None:
        self.armed = (marker, before)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.unix_path)
            state = {"drop_reply": False}
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up, state),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool,
              state: dict[str, bool]) -> None:
        tail = b""  # the end of the previous chunk: a marker may straddle two
        try:
            while data := src.recv(65536):
                seen, tail = tail + data, data[-64:]
                if up and self.armed is not None and self.armed[0] in seen:
                    before = self.armed[1]
                    self.armed = None
                    if before:
                        self.cuts += 1
                        return
                    state["drop_reply"] = True
                elif not up and state["drop_reply"]:
                    self.cuts += 1  # the reply to the marked request: never delivered
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cut(private_server: Callable[..., EmbeddedServer]
        ) -> Iterator[tuple[memgang.Swarm, CuttingProxy]]:
    """A swarm whose Gang talks to a private server through a CuttingProxy, with the lock
    scripts loaded (a cut call then runs them, rather than being refused NOSCRIPT)."""
    srv = private_server()
    assert srv.socket_path is not None
    proxy = CuttingProxy(srv.socket_path)
    try:
        with memgang.connect(f"redis://127.0.0.1:{proxy.port}/0") as gang:
            swarm = gang.swarm(fresh_swarm_name())
            with swarm.agent("a").lock("warm-up"):
                pass
            yield swarm, proxy
    finally:
        proxy.close()


def arm_release_cut(proxy: CuttingProxy, *, before: bool) -> None:
    proxy.arm(scripts.shas()["lock_release"].encode(), before=before)


@pytest.mark.parametrize("reached", [False, True], ids=["request-lost", "reply-lost"])
def test_a_release_whose_connection_is_cut_is_sent_again(
        cut: tuple[memgang.Swarm, CuttingProxy], reached: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    swarm, proxy = cut
    lease = swarm.agent("a").lock("shared/doc", lease_ms=60_000)
    lease.acquire()
    waiting = swarm.agent("b").lock("shared/doc", timeout_s=20)
    thread, out = in_thread(waiting.acquire)
    until(lambda: queued(swarm, "shared/doc") == [("b", "write")], "b to queue")
    arm_release_cut(proxy, before=not reached)
    # the first lock_release is cut: sent again on another connection, it releases
    # (request lost) or finds the lease already released (reply lost). Either way
    # release() returns, and the waiter gets the lock now, not in 60 s
    with caplog.at_level(logging.INFO, logger="memgang.locks"):
        lease.release()
    assert proxy.cuts == 1
    landed = [r for r in caplog.records if "had landed" in r.getMessage()]
    assert len(landed) == (1 if reached else 0)  # the retry found it released
    thread.join(20)
    assert out == [waiting] and holders(swarm, "shared/doc") == [("b", "write")]
    waiting.release()


def test_a_lost_release_of_a_lease_that_had_run_out_still_reports_it_lost(
        cut: tuple[memgang.Swarm, CuttingProxy]) -> None:
    from memgang._sync import locks as sync_locks

    swarm, proxy = cut
    lease = swarm.agent("a").lock("shared/doc", lease_ms=300)
    lease.acquire()
    runtime = sync_locks.runtime_for(swarm.gang)
    runtime.unwatch(lease.holder_id or "")  # no renewals: as if paused past the lease
    until(lambda: holders(swarm, "shared/doc") == [], "the lease to run out", 5)
    arm_release_cut(proxy, before=False)
    # the retry finds nothing held; sent after the lease had run out, the lost call
    # cannot have released it: the holder hears it lost, as without the cut
    with pytest.raises(memgang.LockLost):
        lease.release()
    assert proxy.cuts == 1
