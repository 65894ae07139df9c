"""Locks: the sans-I/O core of read / write / exclusive leases (argument building, replies).

The lock scripts (``lua/lock_*.lua``, state machine in ``lua/_lock.lua``) keep, per name: the
holders hash that the write/read/delete scripts check (mandatory locking), a FIFO queue, the
queued waiters, and the name's fencing counter. This module builds their KEYS and ARGV and
turns their replies into values or typed errors; the I/O shells (``memgang/_async/locks.py``
and its generated sync copy) only send and wait.

Wake-ups use pub/sub, not per-waiter lists: every key a script touches must be in KEYS, and
the script that grants (a release, a cancel, a re-check) cannot know in advance which waiters
it will grant. A channel is not a key, so each waiter entry names its process's wake channel
(``SwarmKeys.wake(listener_id)``) and the granting script PUBLISHes the grant there; one
subscriber per process (``LockRuntime``) hands it to exactly that waiter. No extra round trip
for the woken waiter (the message carries its token), no thundering herd. A lost message (the
subscriber reconnected) is covered by re-checks: on every (re)subscription, and on a timer
bounded by the earliest holder's lease end and half the waiter's own lease.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import scripts
from .errors import InvalidValue, LockUpgradeRefused, ScriptError
from .keys import Key, SwarmKeys

Mode = Literal["read", "write", "exclusive"]
MODES: tuple[Mode, ...] = ("read", "write", "exclusive")
# which held modes a requested mode may share the name with (symmetric)
COMPATIBLE: dict[str, frozenset[str]] = {
    "read": frozenset({"read", "write"}),
    "write": frozenset({"read"}),
    "exclusive": frozenset(),
}
DEFAULT_LEASE_MS = 10_000
MIN_LEASE_MS = 10
MAX_LEASE_MS = 7 * 24 * 3600 * 1000

GRANTED = 0
QUEUED = 10
BUSY = 11
SELF_DEADLOCK = 12
NOT_HELD = 13
CANCELLED = 14


def new_lock_id() -> str:
    """A waiter / holder id: random, one per acquisition (or per process listener)."""
    return secrets.token_hex(8)


def check_mode(mode: str, name: str) -> Mode:
    if mode not in MODES:
        raise InvalidValue(f"lock mode must be one of {', '.join(MODES)}, got {mode!r}", key=name)
    return mode


def check_lease_ms(lease_ms: int, name: str) -> int:
    if (isinstance(lease_ms, bool) or not isinstance(lease_ms, int)
            or not MIN_LEASE_MS <= lease_ms <= MAX_LEASE_MS):
        raise InvalidValue(f"lease_ms must be an int of milliseconds in [{MIN_LEASE_MS}, "
                           f"{MAX_LEASE_MS}], got {lease_ms!r}", key=name)
    return lease_ms


def check_timeout_s(timeout_s: float | None, name: str) -> float | None:
    if timeout_s is None:
        return None
    if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
            or math.isnan(timeout_s) or timeout_s < 0):
        raise InvalidValue(f"timeout_s must be None (wait as long as it takes) or a number "
                           f">= 0, got {timeout_s!r}", key=name)
    return float(timeout_s)


@dataclass(frozen=True, slots=True)
class LockCall:
    """The KEYS and the leading ARGV every lock script of one name takes."""

    name: str  # the full key
    keys: tuple[str, ...]
    base: tuple[Any, ...]

    def acquire(self, waiter_id: str, agent: str, mode: str, lease_ms: int, wake: str,
                try_only: bool, own: Sequence[str] = (), recheck: bool = False) -> list[Any]:
        """``own``: holder ids this process holds on the name as ``agent`` (the only holds
        a request can deadlock on, since they are not released while it waits);
        ``recheck``: a re-check of the request ``waiter_id`` made (it never starts one)."""
        return [*self.base, waiter_id, agent, mode, lease_ms, wake, "1" if try_only else "",
                ",".join(own), "1" if recheck else ""]

    def renew(self, holder_id: str, lease_ms: int) -> list[Any]:
        return [*self.base, holder_id, lease_ms]

    def release(self, holder_id: str) -> list[Any]:
        return [*self.base, holder_id]

    cancel = release


def _lock_keys(ks: SwarmKeys, key: Key) -> list[str]:
    """The KEYS every lock script starts with (see lua/_lock.lua)."""
    return [ks.lock(key), ks.lock_queue(key), ks.lock_waiters(key), ks.fence(key),
            ks.lock_index]


def lock_call(ks: SwarmKeys, key: Key, log_maxlen: int) -> LockCall:
    name = key.full
    return LockCall(name, (*_lock_keys(ks, key), ks.log, ks.log_n),
                    (name, ks.swarm, ks.channel, log_maxlen))


def inspect_keys(ks: SwarmKeys, key: Key) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of lock_inspect.lua."""
    return _lock_keys(ks, key), [key.full]


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease granted: its fencing token (None for read) and how long it has left; for a
    grant delivered by wake message, also the server time (ms) it was made at."""

    token: int | None
    lease_left_ms: int
    granted_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """Still waiting: re-check after ``recheck_ms`` at the latest. ``server_ms``: the server's
    time when it queued the request (anchors a later wake message's grant time)."""

    recheck_ms: int
    position: int
    server_ms: int


def _token(raw: Any) -> int | None:
    text = scripts.text(raw)
    return int(text) if text else None


def interpret_acquire(reply: Sequence[Any], *, name: str, agent: str, mode: str
                      ) -> Grant | Queued | None:
    """A Grant, Queued, ``None`` (not grantable and not queued: timeout 0, or the request's
    cancel overtook it), or the refusal."""
    code = reply[0]
    if code == GRANTED:
        return Grant(_token(reply[1]), int(reply[2]))
    if code == QUEUED:
        return Queued(int(reply[1]), int(reply[2]), int(reply[3]))
    if code in (BUSY, CANCELLED):
        return None
    if code == SELF_DEADLOCK:
        raise LockUpgradeRefused(name, agent=agent, held=scripts.text(reply[1]), asked=mode,
                                 blocker=scripts.text(reply[2]))
    raise ScriptError("lock_acquire", reply)


def interpret_renew(reply: Sequence[Any]) -> int | None:
    """The new lease in ms, or ``None`` when the lease had already ended."""
    if reply[0] == GRANTED:
        return int(reply[1])
    if reply[0] == NOT_HELD:
        return None
    raise ScriptError("lock_renew", reply)


def interpret_release(reply: Sequence[Any]) -> bool:
    """True if released; False if the lease had already ended."""
    if reply[0] == GRANTED:
        return True
    if reply[0] == NOT_HELD:
        return False
    raise ScriptError("lock_release", reply)


def interpret_cancel(reply: Sequence[Any]) -> bool:
    """True if the request had been granted meanwhile (and was given back)."""
    if reply[0] == GRANTED:
        return bool(int(reply[1]))
    raise ScriptError("lock_cancel", reply)


def parse_wake(data: Any) -> tuple[str, Grant] | None:
    """A wake message ``"<waiter id>|<token>|<lease_ms>|<granted_ms>"``; ``None`` if
    malformed."""
    parts = scripts.text(data).split("|")
    if len(parts) != 4:
        return None
    waiter_id, token, lease, granted = parts
    try:
        return waiter_id, Grant(_token(token), int(lease), int(granted))
    except ValueError:
        return None


def granted_at(grant: Grant, queued: Queued, asked_at: float, woken_at: float) -> float:
    """The local (monotonic) time to count a wake message's grant from: never later than when
    the grant was made. ``queued`` was the reply to the request sent at ``asked_at``, so the
    server's clock read ``queued.server_ms`` at or after ``asked_at``; the grant, made
    ``granted_ms - server_ms`` later on that clock, happened no earlier than ``asked_at`` plus
    that. A reader that was stalled before it read the message thus does not count the
    lease from the moment it woke up, and never believes in a lease Redis has already
    ended."""
    if grant.granted_ms is None:
        return woken_at
    return min(woken_at, asked_at + (grant.granted_ms - queued.server_ms) / 1000)


# -- state, for `memgang locks` and Swarm.locks() ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Holder:
    id: str
    agent: str
    mode: str
    token: int | None
    lease_left_ms: int  # <= 0: expired, not yet dropped (the next lock call on it will)


@dataclass(frozen=True, slots=True)
class Waiter:
    id: str
    agent: str
    mode: str
    lease_ms: int
    abandoned: bool  # not re-checked in time: the next lock call on the name drops it


_RANK = {"": 0, "read": 1, "write": 2, "exclusive": 3}


@dataclass(frozen=True, slots=True)
class LockState:
    """One lock as stored: live holders first, the queue oldest first."""

    name: str
    holders: tuple[Holder, ...] = ()
    queue: tuple[Waiter, ...] = ()
    fence: int | None = None
    live: tuple[Holder, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "live", tuple(h for h in self.holders if h.lease_left_ms > 0))

    @property
    def mode(self) -> str:
        """The strongest mode held right now ("" when nobody holds it)."""
        return max((h.mode for h in self.live), key=_RANK.__getitem__, default="")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "fence": self.fence,
            "holders": [{"agent": h.agent, "mode": h.mode, "token": h.token,
                         "lease_left_ms": h.lease_left_ms, "id": h.id} for h in self.holders],
            "queue": [{"agent": w.agent, "mode": w.mode, "lease_ms": w.lease_ms,
                       "abandoned": w.abandoned, "id": w.id} for w in self.queue],
        }


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {scripts.text(flat[i]): scripts.text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def parse_inspect(name: str, reply: Sequence[Any]) -> LockState:
    """The reply of lock_inspect.lua as a LockState (malformed entries are skipped)."""
    now, raw_holders, raw_queue, raw_waiters, fence = reply
    now = int(now)
    holders = []
    for hid, value in _pairs(raw_holders).items():
        parts = value.split("|")
        if len(parts) != 4 or parts[0] not in COMPATIBLE or not parts[2].isdigit():
            continue
        holders.append(Holder(hid, parts[1], parts[0], _token(parts[3]),
                              int(parts[2]) - now))
    holders.sort(key=lambda h: (-h.lease_left_ms, h.agent))
    entries = _pairs(raw_waiters)
    queue = []
    for raw in raw_queue:
        wid = scripts.text(raw)
        parts = entries.get(wid, "").split("|", 4)
        if len(parts) != 5 or parts[0] not in COMPATIBLE or not parts[3].isdigit():
            continue
        queue.append(Waiter(wid, parts[1], parts[0], int(parts[2]), int(parts[3]) <= now))
    return LockState(name, tuple(holders), tuple(queue), _token(fence))


__all__ = [
    "COMPATIBLE",
    "DEFAULT_LEASE_MS",
    "MODES",
    "Grant",
    "Holder",
    "LockCall",
    "LockState",
    "Mode",
    "Queued",
    "Waiter",
    "check_lease_ms",
    "check_mode",
    "check_timeout_s",
    "granted_at",
    "inspect_keys",
    "interpret_acquire",
    "interpret_cancel",
    "interpret_release",
    "interpret_renew",
    "lock_call",
    "new_lock_id",
    "parse_inspect",
    "parse_wake",
]
