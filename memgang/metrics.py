"""Per-agent counters, kept in Redis: the sans-I/O part.

Each :class:`~memgang.AgentMemory` counts what it does in a :class:`Stats`: increments are
plain in-process additions (no round trip on the hot path) and are flushed to the agent's
hash ``{swarm}/_stats/<agent>`` as one pipelined batch of HINCRBY at most once per
``flush_interval_s`` (piggybacked on the next operation), when the agent leaves, and when
the Gang closes. So another process (``memgang stats``) sees them at most about a second
late. Counters are integers; durations are kept in milliseconds (``*_ms``).

Standard counters:

============== =================================================================
reads          objects read
writes         objects written
hits           compute-once results reused from the store
misses         compute-once results this agent computed
waits          compute-once results this agent waited for while another computed
saved_ms       computation time that hits and waits did not spend again
compute_ms     time this agent spent computing compute-once results
takeovers      compute-once claims taken over from an agent that died
lock_wait_ms   time spent waiting for locks
handler_errors @on handlers that raised (logged and counted; the agent runs on)
============== =================================================================

Agents may count their own things too (``me.stats.incr("summarizer_calls")``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from . import scripts
from .errors import InvalidKey

STANDARD = ("reads", "writes", "hits", "misses", "waits", "saved_ms", "compute_ms",
            "takeovers", "lock_wait_ms", "handler_errors")
DEFAULT_FLUSH_INTERVAL_S = 1.0
_COUNTER_RE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")


def check_counter(name: str) -> str:
    if not isinstance(name, str) or not _COUNTER_RE.match(name):
        raise InvalidKey(f"counter name {name!r} must be lowercase letters, digits and _ "
                         f"(at most 64, starting with a letter)", name=str(name))
    return name


class Stats:
    """Counters of one agent: local totals, and the increments not yet flushed to Redis.

    Thread-safe: the sync shell's heartbeat, watchdog and handler threads count into it too.
    """

    __slots__ = ("_lock", "_next_flush", "_pending", "flush_interval_s", "totals")

    def __init__(self, flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S) -> None:
        self.flush_interval_s = flush_interval_s
        self.totals: dict[str, int] = dict.fromkeys(STANDARD, 0)
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        self._next_flush = time.monotonic() + flush_interval_s

    def incr(self, name: str, n: int = 1) -> bool:
        """Add ``n`` to counter ``name``; ``True`` when a flush is due."""
        if name not in self.totals:
            check_counter(name)
        n = int(n)
        with self._lock:
            self.totals[name] = self.totals.get(name, 0) + n
            self._pending[name] = self._pending.get(name, 0) + n
        return time.monotonic() >= self._next_flush

    def take(self) -> dict[str, int]:
        """The increments to flush now (and forget them); empty if there are none."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._next_flush = time.monotonic() + self.flush_interval_s
        return {k: v for k, v in pending.items() if v}

    def put_back(self, pending: Mapping[str, int]) -> None:
        """A flush failed: keep its increments for the next one."""
        with self._lock:
            for name, n in pending.items():
                self._pending[name] = self._pending.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        return self.totals.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.totals)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.totals.items() if v)
        return f"Stats({shown})"


def parse_hash(raw: Mapping[Any, Any]) -> dict[str, int]:
    """A stats hash as read from Redis: {counter: int}, standard counters first."""
    out = dict.fromkeys(STANDARD, 0)
    for k, v in raw.items():
        name = scripts.text(k)
        try:
            out[name] = int(v)
        except (TypeError, ValueError):
            continue  # not ours: never crash a reader on bad data
    return out


__all__ = ["DEFAULT_FLUSH_INTERVAL_S", "STANDARD", "Stats", "check_counter", "parse_hash"]
