# Generated from memgang/_async/presence.py by tools/gen_sync.py: do not edit.
"""Presence: heartbeats, clean leaves and the list of live agents (the I/O shell over the
sans-I/O core of memgang.agent). ``memgang/_sync/presence.py`` is generated from this file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import agent as core
from .. import scripts
from ..errors import lost_redis

if TYPE_CHECKING:
    from .gang import AgentMemory, Swarm


def beat(me: AgentMemory, info: bytes, ttl_ms: int) -> bool:
    """One heartbeat (the first one joins); ``True`` if it (re)joined the swarm."""
    keys, args = core.beat_call(me.swarm.keys, me.name, info, ttl_ms,
                                me.gang.settings.log_maxlen)
    joined, _ = core.interpret_beat(me.gang.call("agent_beat", keys, args))
    return joined


def leave(me: AgentMemory, reason: str = "stopped") -> bool:
    """Leave the swarm (agent_left); ``False`` if the agent was not present."""
    keys, args = core.leave_call(me.swarm.keys, me.name, reason, me.gang.settings.log_maxlen)
    return bool(me.gang.call("agent_leave", keys, args))


def live_agents(swarm: Swarm) -> list[core.AgentInfo]:
    """The agents whose heartbeat is current (by the server's clock), with their roles."""
    ks = swarm.keys
    with lost_redis(f"listing the agents of {swarm.name} failed"):
        with swarm.gang.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zrange(ks.presence, 0, -1, withscores=True)
            pipe.hgetall(ks.agents)
            now, members, descriptions = pipe.execute()
    return core.live_agents(members, descriptions, scripts.server_ms(now))
