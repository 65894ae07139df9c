"""memgang's own path for its Lua scripts: EVALSHA straight on a socket.

Every memgang operation is one script call (or a pipelined batch of them), and redis-py's
generic command path cost more client CPU than the call itself: its pool's bookkeeping and
metrics, the retry wrapper, argument re-packing in Python, ``Script`` objects, and around
the socket its connection's own per-read wrappers. On this path a call is packed once
(``memgang.resp``), sent once and its reply parsed by hiredis, on a stream
(memgang._streams) that owns a socket redis-py connected:

- connections are built from the client's pool settings (URL, TLS, password, db, timeouts)
  and kept in a LIFO free list; one that was idle for ``IDLE_S`` is replaced, and one that
  shows data or EOF before use (the server closed it, or Redis restarted) is reconnected;
- a connection that failed, timed out or was interrupted (cancelled, KeyboardInterrupt)
  between send and reply is closed, never reused: its next reply would answer someone
  else's call;
- a NOSCRIPT reply (SCRIPT FLUSH, a restarted Redis without persistence) loads the script
  on the same connection and sends again the calls it refused, in their order; a call
  refused with NOSCRIPT never ran, so nothing runs twice. In a pipeline, the refused calls
  run after those that were not refused: only if another client loaded the script again
  in the middle of the pipeline can a later call have run before an earlier refused one;
- after a fork, the child opens its own connections and never touches its parent's (nor a
  lock that a parent's thread held at the fork);
- the pool's ``max_connections`` bounds the connections open here too, and replies are
  always bytes (a ``decode_responses`` asked for the client does not apply to scripts).

Error replies are raised as redis-py's exceptions (``run`` returns them in place), so the
callers map them to memgang errors exactly as before (:func:`memgang.errors.from_redis`).
"""

from __future__ import annotations

import os
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis
from redis.maint_notifications import MaintNotificationsConfig

from .. import scripts
from .._backends import AsyncBackend, AsyncRedis
from .._streams import AsyncStream
from ..resp import Packed, command

IDLE_S = 30.0  # as the client's health_check_interval: older idle connections are replaced

#: One script call: (script name, keys, args), or (script name, keys and args packed, ()).
Call = tuple[str, "Sequence[Any] | Packed", Sequence[Any]]


def _connection_kwargs(pool: Any) -> dict[str, Any]:
    """The client's connection settings as they are now (a pool may update them), with
    replies as bytes, and without redis-py's maintenance push notifications (RESP3 on
    Redis Enterprise/Cloud): the client's own pool follows those; a push pending on one of
    these connections would only make it look dirty, and it would be replaced."""
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    if kwargs.get("maint_notifications_config") is not None:
        kwargs["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    kwargs.pop("maint_notifications_pool_handler", None)
    return kwargs


class AsyncWire:
    """Runs memgang's scripts for one Gang (see the module docstring)."""

    def __init__(self, client: AsyncRedis) -> None:
        pool = client.connection_pool
        self._pool = pool
        self._max = getattr(pool, "max_connections", None) or 2 ** 31
        self._open = 0  # connections of this process made here and not closed yet
        self._mutex = AsyncBackend.mutex()  # the free list and the count (threads, in sync)
        self._sha = {name: sha.encode() for name, sha in scripts.shas().items()}
        self._idle: deque[tuple[AsyncStream, float]] = deque()
        self.closed = False
        _WIRES.add(self)

    def _forked(self) -> None:
        """In a child just forked: the parent's sockets, and its count, are not this
        process's; nor the free list's lock, which one of the parent's threads may hold."""
        self._mutex = AsyncBackend.mutex()
        self._idle = deque()
        self._open = 0

    def pack(self, name: str, keys: Sequence[Any] | Packed, args: Sequence[Any] = ()) -> bytes:
        """The whole ``EVALSHA`` request of one call of script ``name``, for :meth:`request`.
        ``keys`` may be a :class:`memgang.resp.Packed` (keys and args packed ahead)."""
        if isinstance(keys, Packed):
            return keys.evalsha(self._sha[name])
        return command("EVALSHA", self._sha[name], len(keys), *keys, *args)

    def sha(self, name: str) -> bytes:
        """The SHA-1 (40 hex digits) script ``name`` is called by."""
        return self._sha[name]

    async def request(self, name: str, request: bytes) -> Any:
        """The reply of one call of script ``name``, packed whole (:meth:`pack`, or bytes
        kept from it); an error reply is raised (redis-py's exception). Every memgang
        operation comes this way: :meth:`run` for one call, kept lean."""
        conn = await self._take()
        try:
            await conn.send(request)
            reply = await conn.read()
            if isinstance(reply, redis.exceptions.NoScriptError):
                reply = (await self._reload(conn, [name], [request]))[0]
        except BaseException:
            await self._drop(conn)
            raise
        await self._give(conn)
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply
        return reply

    async def run(self, calls: Sequence[Call]) -> list[Any]:
        """The replies of ``calls``, pipelined in one round trip, in order; an error reply is
        returned in its place as redis-py's exception, not raised."""
        if not calls:
            return []
        requests = [self.pack(*c) for c in calls]
        conn = await self._take()
        try:
            await conn.send(b"".join(requests))
            replies = [await conn.read() for _ in calls]
            refused = [i for i, r in enumerate(replies)
                       if isinstance(r, redis.exceptions.NoScriptError)]
            if refused:
                again = await self._reload(conn, [calls[i][0] for i in refused],
                                           [requests[i] for i in refused])
                for i, reply in zip(refused, again, strict=True):
                    replies[i] = reply
        except BaseException:
            await self._drop(conn)
            raise
        await self._give(conn)
        return replies

    async def _reload(self, conn: AsyncStream, names: Sequence[str], requests: Sequence[bytes]
                      ) -> list[Any]:
        """Load the scripts ``names`` (whose ``requests`` were all refused with NOSCRIPT) and
        send the requests again, in order."""
        loading = sorted(set(names))
        load = [command("SCRIPT", "LOAD", scripts.sources()[n]) for n in loading]
        await conn.send(b"".join(load + list(requests)))
        loaded = [await conn.read() for _ in loading]
        replies = [await conn.read() for _ in requests]  # every reply read: in step
        for reply in loaded:
            if isinstance(reply, redis.exceptions.ResponseError):  # ACLs may refuse SCRIPT
                raise reply
        return replies

    async def _take(self) -> AsyncStream:
        """A connected connection of this process, in step with the server."""
        if self.closed:
            raise redis.exceptions.ConnectionError("this Gang is closed")
        stale: list[AsyncStream] = []
        found = None
        with self._mutex:
            old = time.monotonic() - IDLE_S
            while self._idle and self._idle[0][1] < old:
                stale.append(self._idle.popleft()[0])
            if self._idle:
                found = self._idle.pop()[0]
        for dead in stale:
            await self._drop(dead)
        if found is not None:
            if not found.stale():  # nothing pending: no end of file, no stray reply
                return found
            await self._drop(found)  # closed by the server (or Redis restarted): a new one
        with self._mutex:
            if self._open >= self._max:
                raise redis.exceptions.MaxConnectionsError(
                    f"too many connections (max_connections={self._max})")
            self._open += 1
        conn = self._pool.connection_class(**_connection_kwargs(self._pool))
        try:
            return await AsyncStream.open(conn)
        except BaseException:
            with self._mutex:
                self._open -= 1
            await conn.disconnect()
            raise

    async def _give(self, conn: AsyncStream) -> None:
        with self._mutex:
            if not self.closed:
                self._idle.append((conn, time.monotonic()))
                return
        await self._drop(conn)

    async def _drop(self, conn: AsyncStream) -> None:
        """Close a connection that is not used again; a failure to close it changes nothing."""
        with self._mutex:
            self._open -= 1
        await conn.close()

    async def aclose(self) -> None:
        """Close the idle connections; calls still running close theirs when they end."""
        with self._mutex:
            self.closed = True
            idle, self._idle = self._idle, deque()
        for conn, _ in idle:
            await self._drop(conn)


# every wire of this process, told when it forks (os.register_at_fork)
_WIRES: weakref.WeakSet[AsyncWire] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for wire in list(_WIRES):
        wire._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["AsyncWire", "Call"]
