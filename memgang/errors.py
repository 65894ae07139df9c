"""Every error a memgang user can meet, in one tree.

::

    Error
    ├── ConnectionLost            Redis unreachable or the connection dropped (wraps redis errors)
    ├── NoPermission              Redis's ACLs refused this connection's user (NOPERM)
    ├── OutOfMemory               Redis is over its maxmemory and refuses writes (OOM)
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
    ├── MalformedEvent            a message on a memgang channel or log is not an event
    ├── ComputeError              compute-once could not hand back a result
    │   ├── ComputeFailed         the agent computing it raised (remote type and message)
    │   ├── Computing             wait=False, and another agent is computing it right now
    │   └── ComputeTimeout        timeout_s passed while waiting for another agent's result
    ├── AgentError                an AgentMixin was used before join_gang(), or misused
    ├── ServerError               the embedded redis-server could not start or stopped
    └── ScriptError               a Lua script returned something memgang does not know:
                                  always a bug, never swallowed

Each error carries its context (key, agent, versions, holder) as attributes, and errors
raised because of a redis-py exception chain it with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.exceptions


class Error(Exception):
    """Base of every memgang error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only context (key=, current=, ...) that the default
        # Exception pickling (cls(*args)) cannot pass back: rebuild from args + attributes,
        # so errors cross process boundaries (multiprocessing, concurrent.futures) intact.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[Error], args: tuple[Any, ...], state: dict[str, Any]) -> Error:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class ConnectionLost(Error):
    """Redis could not be reached, or the connection dropped mid-operation."""


class NoPermission(Error, PermissionError):
    """Redis's ACLs refused a command, key or channel to this connection's user (NOPERM);
    nothing of the operation was done."""

    def __init__(self, doing: str, detail: str) -> None:
        super().__init__(f"{doing}: refused by Redis to this connection's user ({detail})")
        self.doing = doing
        self.detail = detail


class OutOfMemory(Error):
    """Redis is over its ``maxmemory`` and refuses writes (``maxmemory-policy noeviction``);
    nothing of the operation was written (Redis refuses a script at its first write)."""

    def __init__(self, doing: str, detail: str) -> None:
        super().__init__(f"{doing}: Redis is out of memory and refuses writes ({detail})")
        self.doing = doing
        self.detail = detail


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
    """An agent that holds a lock asked for it again in a way that would wait on its own
    hold (read→write behind a queued exclusive, read→exclusive, write→write, ...): a sure
    deadlock, refused instead of queued."""

    def __init__(self, name: str, *, agent: str, held: str, asked: str, blocker: str) -> None:
        behind = "" if blocker == agent else f" (behind a queued request of {blocker!r})"
        super().__init__(f"{agent!r} holds {held} on {name}; asking {asked} would wait on its "
                         f"own hold{behind}: release it first")
        self.name = name
        self.agent = agent
        self.held = held
        self.asked = asked
        self.blocker = blocker


class EventGap(Error):
    """Events were trimmed from the log before this subscriber could read them.

    ``last_seen`` is the id of the last event handed over before the gap, ``oldest`` the id
    of the first one after it, and ``missing`` how many events were lost (``None`` when the
    log cannot tell, e.g. after it was deleted or the server lost its data).
    """

    def __init__(self, swarm: str, *, last_seen: str, oldest: str | None, detail: str = "",
                 missing: int | None = None) -> None:
        lost = "events" if missing is None else f"{missing} event{'s' * (missing != 1)}"
        msg = f"{lost} of {swarm} lost after {last_seen} (next kept: {oldest})"
        super().__init__(msg + (f": {detail}" if detail else ""))
        self.swarm = swarm
        self.last_seen = last_seen
        self.oldest = oldest
        self.missing = missing
        self.detail = detail


class MalformedEvent(Error, ValueError):
    """A message on a memgang event channel (or an entry of a swarm's log) is not a valid
    event: ``where`` names the channel or log, ``payload`` is the start of what arrived."""

    def __init__(self, reason: str, *, where: str = "", payload: bytes | str = b"") -> None:
        text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        super().__init__(f"malformed event{f' on {where}' if where else ''}: {reason}"
                         f" (got {text[:120]!r})")
        self.reason = reason
        self.where = where
        self.payload = text[:1000]


class ComputeError(Error):
    """Base of the compute-once errors; ``name`` is the computation, ``digest`` its key."""

    def __init__(self, message: str, *, name: str, digest: str) -> None:
        super().__init__(message)
        self.name = name
        self.digest = digest


class ComputeFailed(ComputeError):
    """The agent that computed this result raised; waiters get its type and message."""

    def __init__(self, name: str, digest: str, *, agent: str, remote_type: str,
                 remote_message: str) -> None:
        super().__init__(f"{name} ({digest[:12]}) failed in agent {agent!r}: "
                         f"{remote_type}: {remote_message}", name=name, digest=digest)
        self.agent = agent
        self.remote_type = remote_type
        self.remote_message = remote_message


class Computing(ComputeError):
    """``wait=False`` was asked, and another agent is computing the result right now."""

    def __init__(self, name: str, digest: str, *, agent: str, lease_left_ms: int) -> None:
        super().__init__(f"{name} ({digest[:12]}) is being computed by {agent!r}",
                         name=name, digest=digest)
        self.agent = agent
        self.lease_left_ms = lease_left_ms


class ComputeTimeout(ComputeError, TimeoutError):
    """``timeout_s`` passed while waiting for another agent's result."""

    def __init__(self, name: str, digest: str, *, agent: str, timeout_s: float) -> None:
        super().__init__(f"{name} ({digest[:12]}): no result from {agent!r} within "
                         f"{timeout_s}s", name=name, digest=digest)
        self.agent = agent
        self.timeout_s = timeout_s


class AgentError(Error):
    """An agent (AgentMixin) was used before ``join_gang()``, or in a way it cannot be."""


class ServerError(Error):
    """The embedded redis-server failed to start or died."""


class ScriptError(Error):
    """A Lua script replied with something unknown: a bug in memgang, reported loudly."""

    def __init__(self, script: str, reply: Any) -> None:
        super().__init__(f"script {script!r} returned an unknown reply: {reply!r}")
        self.script = script
        self.reply = reply


def from_redis(doing: str, exc: redis.exceptions.RedisError, *, script: str = "") -> Error:
    """The memgang error for a redis-py error met while ``doing`` something: NoPermission
    (ACLs), OutOfMemory (maxmemory), ScriptError for any other error reply to ``script`` or
    arguments it could not be sent with, and ConnectionLost for the rest (unreachable,
    dropped, timed out, read-only replica)."""
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return NoPermission(doing, str(exc))
    if isinstance(exc, redis.exceptions.ReadOnlyError):  # a replica, say, after a failover
        return ConnectionLost(f"{doing}: Redis is read-only ({exc})")
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or (
            isinstance(exc, redis.exceptions.ResponseError) and "maxmemory" in str(exc)):
        return OutOfMemory(doing, str(exc))
    if script and isinstance(exc, (redis.exceptions.ResponseError,
                                   redis.exceptions.DataError)):  # DataError: unsendable args
        return ScriptError(script, str(exc))
    return ConnectionLost(f"{doing}: {exc}")


@contextmanager
def lost_redis(doing: str, *, script: str = "") -> Iterator[None]:
    """Turn any redis-py error inside into the memgang error :func:`from_redis` names
    (``ConnectionLost("<doing>: <error>")`` for a lost connection).

    A plain context manager, so the sync and the async shells share it (``with`` around an
    ``await`` works the same)."""
    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise from_redis(doing, exc, script=script) from exc


__all__ = [
    "AgentError",
    "ComputeError",
    "ComputeFailed",
    "ComputeTimeout",
    "Computing",
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
    "MalformedEvent",
    "ManualConflict",
    "NoPermission",
    "NotFound",
    "OutOfMemory",
    "ScriptError",
    "ServerError",
    "StaleFence",
]
