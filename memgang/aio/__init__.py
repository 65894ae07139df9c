"""The asyncio face of memgang: the same names as ``memgang``, with async/await.

::

    gang = await memgang.aio.connect()
    me = gang.swarm("report-42").agent("reader-1")
    ref = await me.write("summary-3", {"text": "..."})
"""

from __future__ import annotations

from .._async.agent import AgentMixin
from .._async.events import AsyncEventStream as EventStream
from .._async.events import AsyncSubscription as Subscription
from .._async.gang import AgentMemory, Gang, Swarm, connect
from .._async.locks import AsyncLease as Lease
from ..agent import AgentInfo, on
from ..config import Config
from ..errors import *  # noqa: F403 - the same error tree
from ..errors import __all__ as _errors
from ..events import Event, EventFilter
from ..memory import Conflict, MemoryObject, MemoryRef

__all__ = [
    "AgentInfo",
    "AgentMemory",
    "AgentMixin",
    "Config",
    "Conflict",
    "Event",
    "EventFilter",
    "EventStream",
    "Gang",
    "Lease",
    "MemoryObject",
    "MemoryRef",
    "Subscription",
    "Swarm",
    "connect",
    "on",
    *_errors,
]
