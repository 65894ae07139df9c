"""The asyncio face of memgang: the same names as ``memgang``, with async/await.

::

    gang = await memgang.aio.connect()
    me = gang.swarm("report-42").agent("reader-1")
    ref = await me.write("summary-3", {"text": "..."})
"""

from __future__ import annotations

from .._async.gang import AgentMemory, Gang, Swarm, connect
from ..config import Config
from ..errors import *  # noqa: F403 - the same error tree
from ..errors import __all__ as _errors
from ..memory import Conflict, MemoryObject, MemoryRef

__all__ = [  # noqa: PLE0604
    "AgentMemory",
    "Config",
    "Conflict",
    "Gang",
    "MemoryObject",
    "MemoryRef",
    "Swarm",
    "connect",
    *_errors,
]
