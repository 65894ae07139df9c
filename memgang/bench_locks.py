"""memgang's rows in ``benchmarks/locks.py``: ``memgang-write``, ``memgang-exclusive`` and
``memgang-read`` (readers only), each with sync worker processes and asyncio tasks.

``benchmarks.locks`` imports this module and calls :func:`register` with its
``register_impl``; nothing here imports ``benchmarks`` at run time (``benchmarks/`` is not in
the wheel). Every worker process (or asyncio task) is its own agent of one swarm named after
the configuration's tag, and every lease is one name, ``global/bench``, so the rows measure
contention on one lock exactly as the peers' rows do.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks._harness import AsyncLock, SyncLock, Target

LOCK_NAME = "global/bench"
LEASE_MS = 30_000  # as the peers' LEASE_S: no lease ends during a run
WAIT_S = 30.0


class _Sync:
    def __init__(self, lease: Any) -> None:
        self._lease = lease

    def acquire(self) -> None:
        self._lease.acquire()

    def release(self) -> None:
        self._lease.release()


class _Async:
    def __init__(self, lease: Any) -> None:
        self._lease = lease

    async def acquire(self) -> None:
        await self._lease.acquire()

    async def release(self) -> None:
        await self._lease.release()


@contextlib.contextmanager
def open_sync(target: Target, *, mode: str) -> Iterator[SyncLock]:
    import memgang

    gang = memgang.connect(target.url)
    try:
        me = gang.swarm(target.tag).agent(f"w{target.worker}")
        lease = me.lock(LOCK_NAME, mode, timeout_s=WAIT_S, lease_ms=LEASE_MS)
        # connect the wake listener now, not inside the measured window
        lease.acquire()
        lease.release()
        yield _Sync(lease)
    finally:
        gang.close()


@contextlib.asynccontextmanager
async def open_async(target: Target, *, mode: str
                     ) -> AsyncIterator[Callable[[int], AsyncLock]]:
    import memgang.aio

    gang = await memgang.aio.connect(target.url)
    try:
        swarm = gang.swarm(target.tag)
        warm = swarm.agent("warm-up").lock(LOCK_NAME, mode, timeout_s=WAIT_S,
                                           lease_ms=LEASE_MS)
        await warm.acquire()
        await warm.release()

        def make_lock(task: int) -> AsyncLock:
            return _Async(swarm.agent(f"t{task}").lock(LOCK_NAME, mode, timeout_s=WAIT_S,
                                                       lease_ms=LEASE_MS))

        yield make_lock
    finally:
        await gang.close()


def register(register_impl: Callable[..., Any]) -> None:
    """Add memgang's rows to ``benchmarks.locks.IMPLEMENTATIONS``."""
    for mode in ("write", "exclusive", "read"):
        register_impl(f"memgang-{mode}", functools.partial(open_sync, mode=mode),
                      open_async=functools.partial(open_async, mode=mode),
                      readers_only=mode == "read")


__all__ = ["register"]
