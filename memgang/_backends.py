"""The few primitives that differ between the async and the sync shells.

``memgang/_async`` is the one hand-written implementation of every I/O operation; the sync
shell ``memgang/_sync`` is generated from it by ``tools/gen_sync.py``, which removes
``async``/``await`` and renames every ``Async*`` name to ``Sync*``. Each ``Async*`` name
here therefore has a ``Sync*`` twin with the same signature minus the coroutine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import queue
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import redis
import redis.asyncio
import redis.asyncio.client
import redis.asyncio.retry
import redis.backoff
import redis.client
import redis.commands.core
import redis.retry

from . import resp
from ._streams import AsyncStream, SyncStream

log = logging.getLogger("memgang")
# how long close() waits for a background task or thread before giving up on it
JOIN_TIMEOUT_S = 5.0

AsyncRedis = redis.asyncio.Redis
SyncRedis = redis.Redis
AsyncPipeline = redis.asyncio.client.Pipeline
SyncPipeline = redis.client.Pipeline
AsyncPubSub = redis.asyncio.client.PubSub
SyncPubSub = redis.client.PubSub
AsyncScript = redis.commands.core.AsyncScript
SyncScript = redis.commands.core.Script
AsyncEvent = asyncio.Event
SyncEvent = threading.Event
#: A lock held across awaits (``async with``); in the sync shell a thread lock (``with``).
AsyncLock = asyncio.Lock
SyncLock = threading.Lock

T = TypeVar("T")
P = ParamSpec("P")
#: A function of no arguments whose result the caller waits for (compute-once's ``fn``).
AsyncThunk = Callable[[], Awaitable[T]]
SyncThunk = Callable[[], T]
#: A function whose call the caller waits for (what ``@swarm.shared`` wraps).
AsyncFunc = Callable[P, Awaitable[T]]
SyncFunc = Callable[P, T]
#: The handle of a spawned background task or thread.
AsyncHandle = asyncio.Task[Any]
SyncHandle = threading.Thread

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)



def async_no_retry() -> redis.asyncio.retry.Retry:
    """Never re-send a command after a connection error: a script that ran but whose reply
    was lost would run twice (a second version, a second event). The caller gets
    ConnectionLost and decides; the next call reconnects."""
    return redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0)


def sync_no_retry() -> redis.retry.Retry:
    """The sync twin of :func:`async_no_retry`."""
    return redis.retry.Retry(redis.backoff.NoBackoff(), 0)


class AsyncBackend:
    """Concurrency primitives for the asyncio shell."""

    ASYNC = True
    # what ends a wait without anything cut short: it lands only at an await
    CANCELLED: tuple[type[BaseException], ...] = (asyncio.CancelledError, GeneratorExit)

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    @staticmethod
    def event() -> asyncio.Event:
        return asyncio.Event()

    @staticmethod
    def mutex() -> contextlib.AbstractContextManager[Any]:
        """Guards a critical section WITHOUT awaits (plain ``with``): on one event loop
        nothing can interleave there, so this is a no-op; the sync twin is a thread lock."""
        return contextlib.nullcontext()

    @staticmethod
    def lock() -> asyncio.Lock:
        """Guards a critical section that awaits (``async with``)."""
        return asyncio.Lock()

    @staticmethod
    def spawn(fn: Callable[[], Awaitable[Any]], name: str) -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(fn(), name=name)  # type: ignore[arg-type]

    @staticmethod
    async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    @staticmethod
    async def join(handle: asyncio.Task[Any], timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Wait for a spawned task to end (its errors are its own to report); one stuck
        past ``timeout_s`` (say, on a frozen Redis) is cancelled and reported, not waited on
        forever."""
        if handle is asyncio.current_task():  # stop() called from inside the task itself
            return
        done, _ = await asyncio.wait({handle}, timeout=timeout_s)
        if not done:
            log.warning("background task %s did not stop within %ss; cancelled",
                        handle.get_name(), timeout_s)
            handle.cancel()
        with contextlib.suppress(BaseException):
            await handle

    @staticmethod
    def threadsafe_setter(event: asyncio.Event) -> Callable[[], None]:
        """A function that sets ``event`` from any thread (or a signal handler)."""
        loop = asyncio.get_running_loop()

        def set_event() -> None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

        return set_event

    @staticmethod
    def on_stop_signals(callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on SIGINT/SIGTERM; returns the function that undoes it.
        Does nothing where the loop cannot handle signals (not the main thread)."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in _STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, callback)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)

        def undo() -> None:
            for sig in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

        return undo


class SyncBackend:
    """Concurrency primitives for the threaded sync shell."""

    ASYNC = False
    CANCELLED: tuple[type[BaseException], ...] = (GeneratorExit,)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    @staticmethod
    def event() -> threading.Event:
        return threading.Event()

    @staticmethod
    def mutex() -> contextlib.AbstractContextManager[Any]:
        return threading.Lock()

    @staticmethod
    def lock() -> threading.Lock:
        return threading.Lock()

    @staticmethod
    def spawn(fn: Callable[[], Any], name: str) -> threading.Thread:
        thread = threading.Thread(target=fn, name=name, daemon=True)
        thread.start()
        return thread

    @staticmethod
    def wait_event(event: threading.Event, timeout_s: float) -> bool:
        return event.wait(timeout_s)

    @staticmethod
    def join(handle: threading.Thread, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Wait for a spawned thread to end; one stuck past ``timeout_s`` (say, on a frozen
        Redis) is reported and left behind (it is a daemon thread: it cannot block exit)."""
        if handle is threading.current_thread():
            return
        handle.join(timeout_s)
        if handle.is_alive():
            log.warning("background thread %s did not stop within %ss; left behind",
                        handle.name, timeout_s)

    @staticmethod
    def threadsafe_setter(event: threading.Event) -> Callable[[], None]:
        return event.set

    @staticmethod
    def on_stop_signals(callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on SIGINT/SIGTERM; returns the function that undoes it.
        Does nothing outside the main thread (Python delivers signals there only)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.signal(sig, lambda *_: callback()) for sig in _STOP_SIGNALS}

        def undo() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return undo


# --- events (memgang/_async/events.py): a subscriber's mailbox, the raw pub/sub connection,
# and calling a handler that may be a coroutine function ---------------------------------------


class AsyncMailbox:
    """A bounded queue from the event hub (one producer) to one subscriber.

    ``put`` never blocks the hub: when the queue is full it *flags* the mailbox and refuses
    every item until the subscriber takes the flag (and catches up from the log). A flag, or
    ``close()``, also wakes a waiting ``get``, which returns None once the queue is empty.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.flagged = False
        self.closed = False
        self.overflows = 0
        self._items: collections.deque[Any] = collections.deque()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> bool:
        if self.flagged or self.closed:
            return False
        if len(self._items) >= self.maxsize:
            self.overflows += 1
            self.flag()
            return False
        self._items.append(item)
        self._wake.set()
        return True

    def flag(self) -> None:
        self.flagged = True
        self._wake.set()

    def take_flag(self) -> bool:
        flagged, self.flagged = self.flagged, False
        return flagged

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def take(self) -> Any | None:
        """The next item if one is queued, else None, without waiting."""
        return self._items.popleft() if self._items else None

    def nudge(self) -> None:
        """Wake a waiting ``get`` (it returns None): the event hub hands it the reader role."""
        self._wake.set()

    async def get(self, timeout_s: float | None = None) -> Any | None:
        """The next item; None if the queue is empty and flagged, closed, nudged, or on
        timeout."""
        if not self._items and not self.flagged and not self.closed:
            self._wake.clear()
            if timeout_s is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout_s)
        return self._items.popleft() if self._items else None


class SyncMailbox:
    """The threaded twin of :class:`AsyncMailbox` (the hub's reader thread puts).

    A C ``SimpleQueue`` underneath: the hand-over to the waiting thread is one lock release,
    no Python-level condition variable. A flag or ``close()`` enqueues a wake-up marker
    behind the items already queued, so those are still handed over first.
    """

    _WAKE = object()

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.flagged = False
        self.closed = False
        self.overflows = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def __len__(self) -> int:
        return self._queue.qsize()

    def put(self, item: Any) -> bool:
        if self.flagged or self.closed:
            return False
        if self._queue.qsize() >= self.maxsize:
            self.overflows += 1
            self.flag()
            return False
        self._queue.put(item)
        return True

    def flag(self) -> None:
        self.flagged = True
        self._queue.put(self._WAKE)

    def take_flag(self) -> bool:
        flagged, self.flagged = self.flagged, False
        return flagged

    def close(self) -> None:
        self.closed = True
        self._queue.put(self._WAKE)

    def take(self) -> Any | None:
        return self.get(0)

    def nudge(self) -> None:
        self._queue.put(self._WAKE)

    def get(self, timeout_s: float | None = None) -> Any | None:
        try:
            item = self._queue.get(timeout=timeout_s) if timeout_s is None or timeout_s > 0 \
                else self._queue.get_nowait()
        except queue.Empty:
            return None
        return None if item is self._WAKE else item


def refuses_a_subscribe(exc: redis.exceptions.NoPermissionError) -> bool:
    """True if this NOPERM read on a pub/sub connection answers a (P)SUBSCRIBE: Redis's ACLs
    refused the channel, or the command itself (not UNSUBSCRIBE, PING, ...)."""
    text = str(exc)
    return "channel" in text or "'subscribe'" in text or "'psubscribe'" in text


def _pubsub_kwargs(pool: Any, timeout_s: float, retry: Any, name: str) -> dict[str, Any]:
    kwargs = dict(pool.connection_kwargs)
    kwargs.update(health_check_interval=0, socket_timeout=timeout_s, protocol=2, retry=retry,
                  client_name=name)
    return kwargs


class AsyncPubSubConn:
    """A raw RESP2 connection for (P)SUBSCRIBE, read by memgang's event hub itself: nothing
    re-subscribes behind its back, and confirmations and PONGs arrive in order with the
    messages. Built from the client's pool settings (URL, TLS, password, db); after redis-py
    connects it, memgang's own stream (memgang._streams) sends and parses. Replies are
    bytes; an error reply is raised as redis-py's exception."""

    def __init__(self, client: redis.asyncio.Redis, timeout_s: float, name: str) -> None:
        """``name``: its CLIENT SETNAME (``memgang-events``, ``memgang-locks``), so that
        ``CLIENT LIST`` tells the event hub's connection from the lock wake-ups'."""
        pool = client.connection_pool
        self._conn = pool.connection_class(**_pubsub_kwargs(pool, timeout_s, async_no_retry(),
                                                            name))
        self._stream: AsyncStream | None = None

    async def connect(self) -> None:
        self._stream = await AsyncStream.open(self._conn)

    async def send(self, *args: str) -> None:
        # a connection that failed (or was never made) is not written to, nor silently
        # made again without its subscriptions: the reader reconnects and subscribes again
        if self._stream is None:
            raise redis.exceptions.ConnectionError("the pub/sub connection is closed")
        await self._stream.send(resp.command(*args))

    async def read(self, timeout_s: float) -> Any | None:
        """The next message (a list), or None if nothing arrived within ``timeout_s``."""
        if self._stream is None:
            raise redis.exceptions.ConnectionError("the pub/sub connection is closed")
        return _raised(await self._stream.read_within(timeout_s))

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()


class SyncPubSubConn:
    """The threaded twin of :class:`AsyncPubSubConn`; ``close()`` may be called from any
    thread and makes a blocked ``read`` fail at once."""

    def __init__(self, client: redis.Redis, timeout_s: float, name: str) -> None:
        pool = client.connection_pool
        self._conn = pool.connection_class(**_pubsub_kwargs(pool, timeout_s, sync_no_retry(),
                                                            name))
        self._stream: SyncStream | None = None

    def connect(self) -> None:
        self._stream = SyncStream.open(self._conn)

    def send(self, *args: str) -> None:
        stream = self._stream
        if stream is None:
            raise redis.exceptions.ConnectionError("the pub/sub connection is closed")
        stream.send(resp.command(*args))

    def read(self, timeout_s: float) -> Any | None:
        stream = self._stream
        if stream is None:
            raise redis.exceptions.ConnectionError("the pub/sub connection is closed")
        return _raised(stream.read_within(timeout_s))

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


def _raised(reply: Any) -> Any:
    """``reply``, unless it is an error reply: that is raised."""
    if isinstance(reply, redis.exceptions.ResponseError):
        raise reply
    return reply


class AsyncHandlers:
    @staticmethod
    async def call(handler: Callable[[Any], Any], item: Any) -> None:
        """Call ``handler(item)``; await the result if it is awaitable."""
        result = handler(item)
        if inspect.isawaitable(result):
            await result


class SyncHandlers:
    @staticmethod
    def call(handler: Callable[[Any], Any], item: Any) -> None:
        handler(item)
