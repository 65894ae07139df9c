"""Every error a memgang user can meet, in one tree.

::

    Error
    ├── ConnectionLost            Redis unreachable or the connection dropped (wraps redis errors)
    ├── InvalidKey                a swarm, space, id, group, context or tag name is malformed
    ├── InvalidValue              a value cannot be encoded, is too big or too deep, or a merge
    │                             was asked of something that is not a mapping
    ├── NotFound                  the object (or conflict) does not exist
    ├── Forbidden                 the object's writable_by / readable_by excludes this agent
    ├── ConflictError             expected_version did not match the stored version
    │   └── ManualConflict        on_conflict="manual": the losing write was kept for resolve()
    ├── LockError
    │   ├── Locked                another agent holds a write/exclusive lock on the key
    │   ├── StaleFence            a write carried a fencing token older than the newest one
    │   ├── LockTimeout           the lock could not be acquired within timeout_s
    │   ├── LockLost              the lease expired (or was taken over) while held
    │   └── LockUpgradeRefused    a read→write upgrade that would deadlock
    ├── EventGap                  the event log was trimmed past the last event seen
    ├── ServerError               the embedded redis-server could not start or stopped
    └── ScriptError               a Lua script returned something memgang does not know:
                                  always a bug, never swallowed

Each error carries its context (key, agent, versions, holder) as attributes, and errors
raised because of a redis-py exception chain it with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any


class Error(Exception):
    """Base of every memgang error."""


class ConnectionLost(Error):
    """Redis could not be reached, or the connection dropped mid-operation."""


class InvalidKey(Error, ValueError):
    """A name or key is malformed; nothing was sent to Redis."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class InvalidValue(Error, ValueError):
    """A value cannot be stored (unserializable, too large, too deep, not a mapping)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NotFound(Error, KeyError):
    """The object does not exist (or has expired)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no memory object at {self.key}"


class Forbidden(Error, PermissionError):
    """The object's access list does not include this agent."""

    def __init__(self, key: str, agent: str, allowed: list[str]) -> None:
        super().__init__(f"{agent!r} may not change {key}: writable_by={allowed}")
        self.key = key
        self.agent = agent
        self.allowed = allowed


class ConflictError(Error):
    """A compare-and-set write found another version than the one it expected."""

    def __init__(self, key: str, *, expected: int | None, current: int, agent: str = "") -> None:
        super().__init__(
            f"conflict on {key}: expected version {expected}, current version {current}"
        )
        self.key = key
        self.expected = expected
        self.current = current
        self.agent = agent


class ManualConflict(ConflictError):
    """The write lost under on_conflict="manual"; it is kept until resolve()."""

    def __init__(
        self, key: str, *, expected: int | None, current: int, conflict_id: str, agent: str = ""
    ) -> None:
        super().__init__(key, expected=expected, current=current, agent=agent)
        self.conflict_id = conflict_id
        self.args = (
            f"conflict on {key}: expected version {expected}, current version {current}; "
            f"the write is kept as conflict {conflict_id} until resolve()",
        )


class LockError(Error):
    """Base of the lock errors."""


class Locked(LockError):
    """Another agent holds a write or exclusive lock on the key."""

    def __init__(self, key: str, *, holder: str, mode: str) -> None:
        super().__init__(f"{key} is locked {mode} by {holder}")
        self.key = key
        self.holder = holder
        self.mode = mode


class StaleFence(LockError):
    """A write carried a fencing token older than the newest one issued for the key."""

    def __init__(self, key: str, *, fence: int, newest: int) -> None:
        super().__init__(f"stale fencing token {fence} for {key}: newest is {newest}")
        self.key = key
        self.fence = fence
        self.newest = newest


class LockTimeout(LockError):
    """The lock was not granted within timeout_s."""

    def __init__(self, name: str, *, mode: str, timeout_s: float) -> None:
        super().__init__(f"{mode} lock on {name} not granted within {timeout_s}s")
        self.name = name
        self.mode = mode
        self.timeout_s = timeout_s


class LockLost(LockError):
    """The lease ended while the holder still believed it held the lock."""

    def __init__(self, name: str, *, token: int | None = None,
                 reason: str = "lease expired") -> None:
        super().__init__(f"lock on {name} lost: {reason}")
        self.name = name
        self.token = token
        self.reason = reason


class LockUpgradeRefused(LockError):
    """A read→write upgrade was asked for; it could deadlock and is refused."""


class EventGap(Error):
    """Events were trimmed from the log before this subscriber could read them."""

    def __init__(self, swarm: str, *, last_seen: str, oldest: str | None, detail: str = "") -> None:
        msg = f"event log of {swarm} was trimmed past {last_seen} (oldest kept: {oldest})"
        super().__init__(msg + (f": {detail}" if detail else ""))
        self.swarm = swarm
        self.last_seen = last_seen
        self.oldest = oldest


class ServerError(Error):
    """The embedded redis-server failed to start or died."""


class ScriptError(Error):
    """A Lua script replied with something unknown: a bug in memgang, reported loudly."""

    def __init__(self, script: str, reply: Any) -> None:
        super().__init__(f"script {script!r} returned an unknown reply: {reply!r}")
        self.script = script
        self.reply = reply


__all__ = [
    "ConflictError",
    "ConnectionLost",
    "Error",
    "EventGap",
    "Forbidden",
    "InvalidKey",
    "InvalidValue",
    "LockError",
    "LockLost",
    "LockTimeout",
    "LockUpgradeRefused",
    "Locked",
    "ManualConflict",
    "NotFound",
    "ScriptError",
    "ServerError",
    "StaleFence",
]
