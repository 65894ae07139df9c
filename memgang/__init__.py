"""memgang: one shared, real-time memory in Redis for a gang of AI agents.

::

    import memgang
    gang = memgang.connect()                      # url, else MEMGANG_URL, else embedded
    me = gang.swarm("report-42").agent("reader-1")
    ref = me.write("summary-3", {"text": "..."})  # -> MemoryRef(key, version)
    obj = me.read(ref)                            # -> MemoryObject | None

``memgang.aio`` offers the same names with async/await.
"""

from __future__ import annotations

from ._sync.agent import AgentMixin
from ._sync.events import SyncEventStream as EventStream
from ._sync.events import SyncSubscription as Subscription
from ._sync.gang import AgentMemory, Gang, Swarm, connect
from ._sync.locks import SyncLease as Lease
from .agent import AgentInfo, on
from .config import Config
from .errors import (
    AgentError,
    ComputeError,
    ComputeFailed,
    ComputeTimeout,
    Computing,
    ConflictError,
    ConnectionLost,
    Error,
    EventGap,
    Forbidden,
    InvalidKey,
    InvalidValue,
    Locked,
    LockError,
    LockLost,
    LockTimeout,
    LockUpgradeRefused,
    MalformedEvent,
    ManualConflict,
    NoPermission,
    NotFound,
    OutOfMemory,
    ScriptError,
    ServerError,
    StaleFence,
)
from .events import Event, EventFilter
from .memory import Conflict, MemoryObject, MemoryRef

__version__ = "0.1.0"

__all__ = [
    "AgentError",
    "AgentInfo",
    "AgentMemory",
    "AgentMixin",
    "ComputeError",
    "ComputeFailed",
    "ComputeTimeout",
    "Computing",
    "Config",
    "Conflict",
    "ConflictError",
    "ConnectionLost",
    "Error",
    "Event",
    "EventFilter",
    "EventGap",
    "EventStream",
    "Forbidden",
    "Gang",
    "InvalidKey",
    "InvalidValue",
    "Lease",
    "LockError",
    "LockLost",
    "LockTimeout",
    "LockUpgradeRefused",
    "Locked",
    "MalformedEvent",
    "ManualConflict",
    "MemoryObject",
    "MemoryRef",
    "NoPermission",
    "NotFound",
    "OutOfMemory",
    "ScriptError",
    "ServerError",
    "StaleFence",
    "Subscription",
    "Swarm",
    "connect",
    "on",
]
