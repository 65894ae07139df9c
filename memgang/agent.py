"""Agents: presence and ``@on`` handlers, the sans-I/O part.

Presence: a live agent keeps an entry in ``{swarm}/_presence`` (a sorted set scored by its
deadline in server ms) and a JSON description (role, pid, host, started_ms) in
``{swarm}/_agents``. Its heartbeat (``lua/agent_beat.lua``) pushes the deadline forward and,
on the first beat, emits ``agent_joined``; every beat also reaps agents whose deadline has
passed, emitting ``agent_left`` with reason ``expired`` for each. A clean stop
(``lua/agent_leave.lua``) emits ``agent_left`` with reason ``stopped``.

Handlers: :func:`on` marks methods of an :class:`~memgang.AgentMixin` class; the I/O shells
(``memgang._async.agent`` and the generated ``memgang._sync.agent``) collect them with
:func:`handlers_of` and run them on the swarm's events.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import scripts
from .codec import dumps_json, loads_json
from .errors import InvalidValue, ScriptError
from .events import EventFilter
from .keys import SwarmKeys

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_HEARTBEAT_S = 1.0
#: A missed beat or two is not death: the presence ttl is this many heartbeats.
TTL_HEARTBEATS = 5
REAP_PER_BEAT = 100
_ATTR = "__memgang_on__"


# --- presence --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A live agent of a swarm, as ``swarm.agents()`` lists it."""

    name: str
    role: str
    pid: int | None = None
    host: str | None = None
    started_ms: int | None = None
    expires_ms: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def describe(role: str, started_ms: int, extra: Mapping[str, Any] | None = None) -> bytes:
    """The JSON description an agent announces when it joins."""
    if not isinstance(role, str) or not role:
        raise InvalidValue(f"an agent's role must be a non-empty string, got {role!r}")
    info: dict[str, Any] = dict(extra or {})
    info.update(role=role, pid=os.getpid(), host=socket.gethostname(), started_ms=started_ms)
    return dumps_json(info)


def beat_call(ks: SwarmKeys, agent: str, info: bytes, ttl_ms: int, log_maxlen: int
              ) -> tuple[list[str], list[Any]]:
    return ([ks.presence, ks.agents, ks.log, ks.log_n],
            [agent, info, ttl_ms, log_maxlen, ks.swarm, ks.channel, REAP_PER_BEAT])


def leave_call(ks: SwarmKeys, agent: str, reason: str, log_maxlen: int
               ) -> tuple[list[str], list[Any]]:
    return ([ks.presence, ks.agents, ks.log, ks.log_n],
            [agent, dumps_json(reason), log_maxlen, ks.swarm, ks.channel])


def interpret_beat(reply: Any) -> tuple[bool, int]:
    """(joined, reaped) from agent_beat.lua."""
    if isinstance(reply, list) and len(reply) == 2:
        return bool(reply[0]), int(reply[1])
    raise ScriptError("agent_beat", reply)


def live_agents(members: Iterable[tuple[Any, float]], descriptions: Mapping[Any, Any],
                now_ms: int) -> list[AgentInfo]:
    """The agents whose deadline is still ahead of the server's ``now_ms``, by name."""
    out = []
    for raw_name, deadline in members:
        if deadline <= now_ms:
            continue
        name = scripts.text(raw_name)
        raw = descriptions.get(raw_name)
        try:
            info = loads_json(raw) if raw else {}
            if not isinstance(info, dict):
                info = {}
        except ValueError:  # never crash a listing on bad data
            info = {}
        out.append(AgentInfo(
            name=name, role=str(info.pop("role", "")),
            pid=_int(info.pop("pid", None)), host=_str(info.pop("host", None)),
            started_ms=_int(info.pop("started_ms", None)), expires_ms=int(deadline),
            extra=info))
    out.sort(key=lambda a: a.name)
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --- handlers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """What ``@on(type, match=..., ...)`` asked for: the event type (``None``: every type)
    and the filter that narrows it (the events subscription's own :class:`EventFilter`)."""

    type: str | None
    filter: EventFilter


def on(type: str, *, match: str | None = None, agent: str | Iterable[str] | None = None,
       group: str | None = None, context: str | None = None) -> Callable[[F], F]:
    """Mark an agent method as the handler of events of ``type`` (``"*"``: every type).

    ``match`` (a glob on the key: ``"job-*/chunk-*"``), ``agent``, ``group`` and
    ``context`` narrow them as the same arguments of ``swarm.events()`` do. A method may
    carry several ``@on``. The handler is called with the :class:`~memgang.Event`, one event
    at a time, in the log's order (in ``memgang.aio`` it may be a coroutine function); if it
    raises, the error is logged (logger ``memgang.agent``) and counted (the agent's
    ``handler_errors``), and the agent carries on with the next event.
    """
    if not isinstance(type, str) or not type:
        raise InvalidValue(f"@on needs an event type (or '*'), got {type!r}")
    kind = None if type == "*" else type
    spec = HandlerSpec(kind, EventFilter.build(kind, agent=agent, group=group,
                                               context=context, match=match))

    def mark(fn: F) -> F:
        setattr(fn, _ATTR, (*getattr(fn, _ATTR, ()), spec))
        return fn

    return mark


def subscribed_types(specs: Iterable[HandlerSpec]) -> list[str] | None:
    """The event types a subscription must deliver for these handlers (``None``: all)."""
    kinds: set[str] = set()
    for spec in specs:
        if spec.type is None:
            return None
        kinds.add(spec.type)
    return sorted(kinds)


def handlers_of(cls: type) -> list[tuple[str, HandlerSpec]]:
    """(method name, spec) for every ``@on`` method of ``cls`` and its bases; a method
    overridden in a subclass counts once, as the subclass defines it."""
    out: list[tuple[str, HandlerSpec]] = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, member in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
            for spec in getattr(fn, _ATTR, ()):
                out.append((name, spec))
    return out


__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "TTL_HEARTBEATS",
    "AgentInfo",
    "HandlerSpec",
    "beat_call",
    "describe",
    "handlers_of",
    "interpret_beat",
    "leave_call",
    "live_agents",
    "on",
    "subscribed_types",
]
