"""Where the dashboard's data comes from: two small adapters over memgang's own APIs.

- :func:`event_stream`: the events of one swarm (or of every swarm), from the same
  subscription code as ``memgang watch``, as plain mappings shaped like the event JSON.
- :func:`poll_swarm`: what events cannot tell, read about once a second: server time,
  presence and roles, lock holders and queues, the agents' counters.

The server (``app.py``) only calls these two; swapping the source of either is a change here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .. import scripts
from ..aio import Gang
from ..errors import lost_redis
from ..events import Event
from .state import Holder, LockInfo, Waiter


def event_mapping(event: Any) -> Any:
    """An :class:`~memgang.events.Event` as the JSON mapping it was published as; anything
    else passes as it is (the state counts what it cannot read as malformed)."""
    if isinstance(event, Event):
        return event.to_dict()
    return event


async def event_stream(gang: Gang, swarm: str | None, since: str | None
                       ) -> AsyncIterator[Event]:
    """Events of ``swarm`` (``None``: every swarm) after ``since`` (a log id, "start" for
    all the log holds, or "now"), through memgang's event stream: the one ``memgang watch``
    uses. It reconnects and catches up from the log by itself; lost events come as
    ``event_gap`` events (the feed shows them). Raises memgang errors it cannot recover from.
    """
    stream = gang.events(swarms=None if swarm is None else [swarm], since=since,
                         on_gap="event")
    async with stream:
        async for event in stream:
            yield event


@dataclass(slots=True)
class Polled:
    """One poll of a swarm's state; every time is the server's (ms)."""

    server_ms: int
    presence: dict[str, int] = field(default_factory=dict)  # live agent -> deadline
    roles: dict[str, str | None] = field(default_factory=dict)
    locks: list[LockInfo] = field(default_factory=list)
    counters: dict[str, dict[str, float]] = field(default_factory=dict)


async def server_time_ms(gang: Gang) -> int:
    with lost_redis("TIME failed"):
        return scripts.server_ms(await gang.client.time())


async def poll_swarm(gang: Gang, swarm: str) -> Polled:
    """The live agents, locks and agents' counters of ``swarm``, through the swarm's own
    listings (``Swarm.agents()``, ``Swarm.locks()``, ``Swarm.stats()``)."""
    sw = gang.swarm(swarm)
    polled = Polled(await server_time_ms(gang))
    for agent in await sw.agents():
        polled.presence[agent.name] = agent.expires_ms or polled.server_ms
        polled.roles[agent.name] = agent.role or None
    for lock in await sw.locks():
        # lease left is relative to the inspection; the state wants a server-time deadline
        at = polled.server_ms
        polled.locks.append(LockInfo(
            lock.name,
            tuple(Holder(h.mode, h.agent, at + h.lease_left_ms,
                         "" if h.token is None else str(h.token)) for h in lock.live),
            tuple(Waiter(w.agent, w.mode) for w in lock.queue if not w.abandoned)))
    for name, counters in (await sw.stats()).items():
        polled.counters[name] = {k: float(v) for k, v in counters.items()}
    return polled
