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

from ._sync.gang import AgentMemory, Gang, Swarm, connect
from .config import Config
from .errors import (
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
    ManualConflict,
    NotFound,
    ScriptError,
    ServerError,
    StaleFence,
)
from .memory import Conflict, MemoryObject, MemoryRef

__version__ = "0.1.0"

__all__ = [
    "AgentMemory",
    "Config",
    "Conflict",
    "ConflictError",
    "ConnectionLost",
    "Error",
    "EventGap",
    "Forbidden",
    "Gang",
    "InvalidKey",
    "InvalidValue",
    "LockError",
    "LockLost",
    "LockTimeout",
    "LockUpgradeRefused",
    "Locked",
    "ManualConflict",
    "MemoryObject",
    "MemoryRef",
    "NotFound",
    "ScriptError",
    "ServerError",
    "StaleFence",
    "Swarm",
    "connect",
]
