"""The few primitives that differ between the async and the sync shells.

``memgang/_async`` is the one hand-written implementation of every I/O operation; the sync
shell ``memgang/_sync`` is generated from it by ``tools/gen_sync.py``, which removes
``async``/``await`` and renames every ``Async*`` name to ``Sync*``. Each ``Async*`` name
here therefore has a ``Sync*`` twin with the same signature minus the coroutine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.client
import redis.client
import redis.commands.core

AsyncRedis = redis.asyncio.Redis
SyncRedis = redis.Redis
AsyncPipeline = redis.asyncio.client.Pipeline
SyncPipeline = redis.client.Pipeline
AsyncPubSub = redis.asyncio.client.PubSub
SyncPubSub = redis.client.PubSub
AsyncScript = redis.commands.core.AsyncScript
SyncScript = redis.commands.core.Script


class AsyncBackend:
    """Concurrency primitives for the asyncio shell."""

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
    def spawn(fn: Callable[[], Awaitable[Any]], name: str) -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(fn(), name=name)  # type: ignore[arg-type]

    @staticmethod
    async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True


class SyncBackend:
    """Concurrency primitives for the threaded sync shell."""

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
    def spawn(fn: Callable[[], Any], name: str) -> threading.Thread:
        thread = threading.Thread(target=fn, name=name, daemon=True)
        thread.start()
        return thread

    @staticmethod
    def wait_event(event: threading.Event, timeout_s: float) -> bool:
        return event.wait(timeout_s)
