"""Compute-once across agents: the I/O shell over the sans-I/O core of memgang.memo.

``memgang/_sync/memo.py`` is generated from this file by ``tools/gen_sync.py``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions

from .. import memo
from .._backends import AsyncBackend, AsyncFunc, AsyncHandle, AsyncThunk, P
from ..codec import Codec
from ..errors import ComputeTimeout, Computing, ConnectionLost

if TYPE_CHECKING:
    from .gang import AgentMemory

log = logging.getLogger("memgang.memo")

T = TypeVar("T")


async def compute_once(
    me: AgentMemory,
    name: str,
    inputs: Any,
    fn: AsyncThunk[T],
    *,
    ttl_s: float | None = None,
    lease_s: float = memo.DEFAULT_LEASE_S,
    on_error: str = "raise",
    wait: bool = True,
    timeout_s: float | None = None,
) -> T:
    """Return ``fn()``'s result for (``name``, ``inputs``), computed once across the swarm.

    If the result is stored, it is returned (a hit). If another agent is computing it right
    now, this waits for its result without computing (woken when it is stored); with
    ``wait=False`` it raises :class:`memgang.Computing` instead. Otherwise this agent claims
    it, runs ``fn`` under a lease of ``lease_s`` (renewed by a watchdog while ``fn`` runs)
    and stores the result (for ``ttl_s``, or for good). If the claimer dies, its lease
    lapses and exactly one waiter takes over. If ``fn`` raises, the exception propagates
    here and the waiters get :class:`memgang.ComputeFailed` (remote type and message), or,
    with ``on_error="retry"``, one of them computes it again. ``timeout_s`` bounds the wait
    for another agent (:class:`memgang.ComputeTimeout`).

    The result must be encodable as a memory value (msgpack, within the size bounds).
    """
    options = memo.Options.make(ttl_s=ttl_s, lease_s=lease_s, on_error=on_error, wait=wait,
                                timeout_s=timeout_s)
    gang = me.gang
    call = memo.plan(me.swarm.keys, me.name, name, inputs, options,
                     max_depth=gang.codec.max_depth)
    deadline = None if timeout_s is None else AsyncBackend.monotonic() + timeout_s
    waited = ""  # token of the claim we are waiting on
    waiting = False
    retried = False
    while True:
        retry = on_error == "retry" and not retried
        state = memo.interpret_claim(
            await gang.call("memo_claim", call.keys, call.claim_args(waited, retry)))
        if isinstance(state, memo.Done):
            await me.count("waits" if waiting else "hits")
            await me.count("saved_ms", state.compute_ms)
            result: T = Codec.unpack(state.value)
            return result
        if isinstance(state, memo.Failed):
            raise state.error(name, call.digest)
        if isinstance(state, memo.Claimed):
            if waited:
                retried = True  # any later failure we see is of a claim we made or took over
            if state.took_over:
                log.info("%s took over %s (%s) from %s, whose lease lapsed",
                         me.name, name, call.digest[:12], state.took_over)
                await me.count("takeovers")
            await me.count("misses")
            return await _compute(me, call, fn)
        if not wait:
            raise Computing(name, call.digest, agent=state.agent,
                            lease_left_ms=state.lease_left_ms)
        waiting = True
        waited = state.token
        remaining = None if deadline is None else deadline - AsyncBackend.monotonic()
        if remaining is not None and remaining <= 0:
            raise ComputeTimeout(name, call.digest, agent=state.agent,
                                 timeout_s=options.timeout_s or 0)
        await _ring_wait(me, call.keys[1], state.wait_s(remaining))


async def _ring_wait(me: AgentMemory, doorbell: str, timeout_s: float) -> None:
    """Block on the doorbell until a token comes or ``timeout_s`` passes."""
    socket_timeout = me.gang.config.socket_timeout_s
    if socket_timeout is not None:
        # the server must answer before the socket gives up, and Redis ends a timed-out
        # BLPOP only on its next timer tick (every 100 ms at the default hz 10), later
        # still on a busy machine: wait at most half the socket's timeout per BLPOP
        timeout_s = max(0.01, min(timeout_s, socket_timeout / 2))
    try:
        await me.gang.client.blpop([doorbell], timeout=timeout_s)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise ConnectionLost(f"lost Redis while waiting for a compute-once result: {exc}"
                             ) from exc


async def _compute(me: AgentMemory, call: memo.Call, fn: AsyncThunk[T]) -> T:
    """Run ``fn`` under the claim (its lease renewed meanwhile), then store its outcome."""
    gang = me.gang
    stop = AsyncBackend.event()

    async def renew() -> None:
        while not await AsyncBackend.wait_event(stop, call.options.renew_every_s):
            try:
                ours = memo.interpret_flag(
                    "memo_renew", await gang.call("memo_renew", call.keys[:1], call.renew_args()))
            except ConnectionLost as exc:
                log.warning("%s: cannot renew the claim on %s (%s): %s",
                            me.name, call.name, call.digest[:12], exc)
                continue
            if not ours and not stop.is_set():
                log.warning("%s: the claim on %s (%s) lapsed and was taken over while "
                            "computing; the result will still be offered",
                            me.name, call.name, call.digest[:12])
                return

    watchdog: AsyncHandle = AsyncBackend.spawn(renew, f"memgang-memo-{call.digest[:8]}")
    started = AsyncBackend.monotonic()
    try:
        try:
            result = await fn()
            packed = gang.codec.pack(result, key=f"compute_once {call.name}")
        finally:  # the claim's renewal ends before its outcome is recorded, either way
            stop.set()
            await AsyncBackend.join(watchdog)
    except Exception as exc:
        await _record_failure(me, call, exc)
        await me.count("compute_ms", round((AsyncBackend.monotonic() - started) * 1000))
        raise
    except BaseException:  # cancelled or interrupted: hand the claim to a waiter at once
        await _record_failure(me, call, None)
        raise
    compute_ms = round((AsyncBackend.monotonic() - started) * 1000)
    stored, lost = memo.interpret_done(
        await gang.call("memo_done", call.keys, call.done_args(packed, compute_ms)))
    await me.count("compute_ms", compute_ms)
    if lost:
        log.info("%s: its claim on %s (%s) had lapsed; %s", me.name, call.name,
                 call.digest[:12], "another result was stored first and is used"
                 if stored else "its result was stored anyway")
    if stored is not None:
        other: T = Codec.unpack(stored.value)
        return other
    return result


async def _record_failure(me: AgentMemory, call: memo.Call, exc: BaseException | None) -> None:
    try:
        await me.gang.call("memo_fail", call.keys, call.fail_args(exc))
    except ConnectionLost as lost:  # the claim lapses with its lease anyway
        log.warning("%s: cannot record the failure of %s (%s): %s", me.name, call.name,
                    call.digest[:12], lost)


def shared(
    me: AgentMemory,
    *,
    ttl_s: float | None = None,
    name: str | None = None,
    **options: Any,
) -> Callable[[AsyncFunc[P, T]], AsyncFunc[P, T]]:
    """Decorator: calls with the same arguments are computed once across the swarm.

    The key is the content hash of ``name`` (default ``module.qualname`` of the function)
    and the call's arguments by parameter name (defaults applied). ``options`` are those of
    :func:`compute_once` (``lease_s``, ``on_error``, ``wait``, ``timeout_s``).
    """

    def decorate(fn: AsyncFunc[P, T]) -> AsyncFunc[P, T]:
        label = name or memo.function_name(fn)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            inputs = memo.call_inputs(fn, args, kwargs)
            return await compute_once(me, label, inputs, lambda: fn(*args, **kwargs),
                                      ttl_s=ttl_s, **options)

        return wrapper

    return decorate


__all__ = ["compute_once", "shared"]
