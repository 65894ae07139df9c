"""memgang's own reads and writes on a connection redis-py opened.

redis-py connects (TCP, unix socket or TLS; AUTH or a credential provider, HELLO, SELECT,
CLIENT SETNAME): that handshake is settled code memgang has no reason to repeat. After it,
a stream owns the socket: it sends bytes already packed and parses replies with its own
hiredis reader. redis-py's per-call path around the same socket (its parser wrappers,
retries, timeouts re-armed per read, health checks, event hooks) cost more client CPU than
the call it carried.

Replies come back as redis-py would give them, so callers keep mapping them as before: an
error reply is redis-py's exception for it (``NOSCRIPT`` -> ``NoScriptError``, ``NOPERM``
-> ``NoPermissionError``, ``OOM`` ...), returned in place, not raised; a read or write that
passes the connection's ``socket_timeout`` raises ``redis.exceptions.TimeoutError``; a
connection the server closed, or one that failed, raises ``ConnectionError``. A stream that
raised is broken: its caller closes it.

``AsyncStream`` (asyncio) and ``SyncStream`` (a blocking socket) are twins with the same
methods, so ``memgang/_sync`` is still generated from ``memgang/_async``.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from typing import Any

import hiredis
import redis.exceptions
from redis._parsers.base import BaseParser

RedisConnectionError = redis.exceptions.ConnectionError
RedisTimeout = redis.exceptions.TimeoutError
READ_SIZE = 65536


def reply_reader() -> hiredis.Reader:
    """A hiredis reader that makes error replies redis-py's exceptions, and bytes of the rest."""
    return hiredis.Reader(protocolError=redis.exceptions.InvalidResponse,
                          replyError=BaseParser.parse_error)


CLOSED_BY_SERVER = "Connection closed by server."


class _Stream:
    """What both streams say when a connection fails, naming the server as redis-py does
    (``doing``: "reading from" or "writing to")."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        try:
            self._where = str(conn._host_error())
        except Exception:  # a connection class of the user's without it
            self._where = "Redis"
        self._reader = reply_reader()

    def _ended(self, doing: str, why: object) -> redis.exceptions.ConnectionError:
        return RedisConnectionError(f"Error while {doing} {self._where}: {why}")

    def _timed_out(self, doing: str) -> redis.exceptions.TimeoutError:
        return RedisTimeout(f"Timeout {doing} {self._where}")


class AsyncStream(_Stream, asyncio.BufferedProtocol):
    """Reads and writes on an asyncio connection: it becomes its transport's protocol, so
    the transport reads into one buffer of the stream's, whose bytes go straight to the
    parser (no bytes object per read, no second buffer)."""

    def __init__(self, conn: Any) -> None:
        """``conn``: a connected ``redis.asyncio.Connection``; the stream takes its socket."""
        super().__init__(conn)
        self._timeout: float | None = conn.socket_timeout
        self._loop = asyncio.get_running_loop()
        # a memoryview, not the bytearray: asyncio's TLS transport fills the rest of a
        # buffer through a slice of it, which of a bytearray would be a copy
        self._buffer = memoryview(bytearray(READ_SIZE))
        # a read waiting for bytes, and a send waiting while writing is paused: each wakes
        # with True if the connection's socket_timeout passed first
        self._waiter: asyncio.Future[bool] | None = None
        self._writable: asyncio.Future[bool] | None = None
        self._lost: str | None = None  # why the connection ended, once it has
        streams = conn._reader
        leftover = bytes(getattr(streams, "_buffer", b""))
        if leftover:  # sent by the server after the handshake: a stray reply or a push
            self._reader.feed(leftover)
        if streams.at_eof():
            self._lost = CLOSED_BY_SERVER
        self._transport: asyncio.Transport = conn._writer.transport
        self._transport.set_protocol(self)

    @classmethod
    async def open(cls, conn: Any) -> AsyncStream:
        await conn.connect()
        return cls(conn)

    # --- asyncio.Protocol: called by the event loop --------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._reader.feed(self._buffer, 0, nbytes)  # type: ignore[arg-type]  # any buffer
        _wake(self._waiter, False)

    def eof_received(self) -> bool:
        self._end(CLOSED_BY_SERVER)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"Connection lost: {exc}" if exc else CLOSED_BY_SERVER)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        _wake(writable, False)

    def _end(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
        _wake(self._waiter, False)
        _wake(self._writable, False)

    # --- the stream ----------------------------------------------------------------------

    def stale(self) -> bool:
        """True if this idle connection cannot serve a call: the server closed it, or bytes
        arrived that no call asked for. Costs no system call: the loop already read them."""
        return self._lost is not None or bool(self._reader.has_data())

    async def send(self, data: bytes) -> None:
        if self._lost is not None:
            raise self._ended("writing to", self._lost)
        self._transport.write(data)
        if self._writable is not None:  # the kernel's buffer is full: wait until it drains
            if await self._wait(self._writable, self._timeout):
                raise self._timed_out("writing to")
            if self._lost is not None:
                raise self._ended("writing to", self._lost)

    async def read(self) -> Any:
        """The next reply (an error reply as redis-py's exception, in place)."""
        reply = self._reader.gets()
        while reply is False:
            if await self._arrival(self._timeout):
                raise self._timed_out("reading from")
            reply = self._reader.gets()
        return reply

    async def read_within(self, seconds: float) -> Any:
        """The next reply, or None if none is complete within ``seconds`` (what arrived of
        one is kept for the next read)."""
        reply = self._reader.gets()
        if reply is not False:
            return reply
        deadline = self._loop.time() + seconds
        while reply is False:
            left = deadline - self._loop.time()
            if left <= 0 or await self._arrival(left):
                return None
            reply = self._reader.gets()
        return reply

    async def _arrival(self, seconds: float | None) -> bool:
        """Wait for bytes (or the end of the connection, raised); True if ``seconds`` passed
        first."""
        if self._lost is not None:
            raise self._ended("reading from", self._lost)
        self._waiter = self._loop.create_future()
        try:
            return await self._wait(self._waiter, seconds)
        finally:
            self._waiter = None

    async def _wait(self, fut: asyncio.Future[bool], seconds: float | None) -> bool:
        """Wait for ``fut`` to be woken; True if ``seconds`` passed first."""
        if seconds is None:
            return await fut
        timer = self._loop.call_later(seconds, _wake, fut, True)
        try:
            return await fut
        finally:
            timer.cancel()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._conn.disconnect(nowait=True)


def _wake(fut: asyncio.Future[bool] | None, timed_out: bool) -> None:
    if fut is not None and not fut.done():
        fut.set_result(timed_out)


class SyncStream(_Stream):
    """Reads and writes on a blocking socket that the kernel times out.

    On a plain socket (TCP, unix) the connection's ``socket_timeout`` becomes the socket's
    ``SO_RCVTIMEO`` and ``SO_SNDTIMEO``, and Python's own timeout is turned off: with one,
    every ``recv`` and ``send`` first ``poll()``s the socket, doubling the system calls of a
    call. A TLS socket keeps Python's timeout: its reads retry a kernel timeout forever.

    A pub/sub connection is read by one thread while others send on it (a SUBSCRIBE, a
    PING to wake the reader). The kernel allows that on a plain socket, but an SSL object
    must not be used by two threads at once (OpenSSL), and a TLS read here also switches
    the socket to non-blocking for a moment, which a concurrent send would see. So on TLS
    each read and each send holds ``_tls_io``; ``read_within`` waits for bytes in
    ``poll()`` without it, then reads what came without waiting, so a send never waits
    for a reader that waits for the server."""

    def __init__(self, conn: Any) -> None:
        """``conn``: a connected ``redis.Connection``; the stream takes its socket."""
        super().__init__(conn)
        self._sock: socket.socket = conn._sock
        self._buffer = bytearray(READ_SIZE)  # every recv_into lands here: no bytes per read
        timeout = conn.socket_timeout
        self._timeout = timeout  # Python's timeout on the socket, between calls to stale()
        self._tls_io: threading.Lock | None = None
        if isinstance(self._sock, ssl.SSLSocket):
            self._tls_io = threading.Lock()
        else:
            if timeout is not None and timeout > 0:
                seconds = int(timeout)
                timeval = struct.pack("ll", seconds, int((timeout - seconds) * 1e6))
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            self._timeout = None
            self._sock.settimeout(None)
        self._poll: Any = None
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(self._sock, select.POLLIN)

    @classmethod
    def open(cls, conn: Any) -> SyncStream:
        conn.connect()
        return cls(conn)

    def stale(self) -> bool:
        """True if this idle connection cannot serve a call: the server closed it, or bytes
        arrived that no call asked for. One poll when nothing is pending."""
        if self._reader.has_data():
            return True
        try:
            return self._readable(0) and self._take_available() is not None
        except OSError:
            return True

    def read_within(self, seconds: float) -> Any:
        """The next reply, or None if none is complete within ``seconds`` (what arrived of
        one is kept for the next read)."""
        reply = self._reader.gets()
        if reply is not False:
            return reply
        deadline = time.monotonic() + seconds
        while reply is False:
            try:
                # (looks at the socket at least once, also for 0 s or a deadline just past)
                if not self._readable(max(0.0, deadline - time.monotonic())):
                    return None
                if self._take_available() == 0:
                    raise self._ended("reading from", CLOSED_BY_SERVER)
            except OSError as exc:  # closed under us (by close() in another thread, say)
                raise self._ended("reading from", exc) from exc
            reply = self._reader.gets()
        return reply

    def _readable(self, seconds: float) -> bool:
        """True if the socket shows bytes, an end or an error within ``seconds``."""
        if self._poll is not None:
            return bool(self._poll.poll(seconds * 1000))
        return bool(select.select([self._sock], [], [], seconds)[0])

    def _take_available(self) -> int | None:
        """Read, without waiting, what the socket holds into the parser: the byte count, 0
        at the end of the connection, None if nothing came (TLS: a record that carries no
        data, such as a session ticket)."""
        try:
            if self._tls_io is None:
                n = self._sock.recv_into(self._buffer, 0, socket.MSG_DONTWAIT)
            else:
                with self._tls_io:  # (see the class docstring)
                    self._sock.setblocking(False)  # an SSL recv takes no flags
                    try:
                        n = self._sock.recv_into(self._buffer)
                    finally:
                        with contextlib.suppress(OSError):
                            self._sock.settimeout(self._timeout)
        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
            return None
        if n:
            self._reader.feed(self._buffer, 0, n)  # type: ignore[arg-type]  # any buffer
        return n

    def send(self, data: bytes) -> None:
        try:
            if self._tls_io is None:
                self._sock.sendall(data)
            else:
                with self._tls_io:
                    self._sock.sendall(data)
        except (TimeoutError, BlockingIOError, ssl.SSLWantWriteError) as exc:  # SO_SNDTIMEO
            raise self._timed_out("writing to") from exc
        except OSError as exc:
            raise self._ended("writing to", exc) from exc

    def read(self) -> Any:
        """The next reply (an error reply as redis-py's exception, in place). It waits in
        the socket: for a connection that only one thread uses at a time (a call's)."""
        reply = self._reader.gets()
        while reply is False:
            try:
                n = self._sock.recv_into(self._buffer)
            except (TimeoutError, BlockingIOError, ssl.SSLWantReadError) as exc:  # SO_RCVTIMEO
                raise self._timed_out("reading from") from exc
            except OSError as exc:
                raise self._ended("reading from", exc) from exc
            if not n:
                raise self._ended("reading from", CLOSED_BY_SERVER)
            self._reader.feed(self._buffer, 0, n)  # type: ignore[arg-type]  # any buffer
            reply = self._reader.gets()
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.disconnect()


__all__ = ["AsyncStream", "SyncStream", "reply_reader"]
