# Generated from memgang/_async/agent.py by tools/gen_sync.py: do not edit.
"""AgentMixin: presence, ``@on`` handlers and a clean stop, for any class.

``memgang/_sync/agent.py`` is generated from this file by ``tools/gen_sync.py``:
``memgang.AgentMixin`` (handlers run in the subscription's thread, ``run()`` blocks) and
``memgang.aio.AgentMixin`` (coroutine handlers, ``await run()``) are the same code.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import agent as core
from .._backends import SyncBackend, SyncHandle, SyncHandlers
from ..errors import AgentError, Error
from ..events import GAP, Event, parse_since
from . import presence

if TYPE_CHECKING:
    from .gang import AgentMemory, Swarm

log = logging.getLogger("memgang.agent")

A = TypeVar("A", bound="AgentMixin")

_STATE = "_memgang_agent_state"
_POLL_S = 1.0  # how often run() re-checks the stop flag when no wake-up comes (signals)


@dataclass(eq=False)
class _Handler:
    method: str
    fn: Callable[[Event], Any]
    spec: core.HandlerSpec


@dataclass(eq=False)
class _State:
    """Everything the mixin keeps, in ONE attribute of the host object."""

    memory: AgentMemory
    role: str
    heartbeat_s: float
    ttl_ms: int
    extra: Mapping[str, Any]
    handlers: list[_Handler]
    since: str | None = None
    started: bool = False
    stop_requested: bool = False
    stopped: Any = None            # the backend's Event, made by start()
    set_stopped: Callable[[], None] | None = None
    heartbeat: SyncHandle | None = None
    subscription: Any = None
    errors: int = 0


class AgentMixin:
    """Mix into any class to make its instances agents of a swarm.

    The mixin has no ``__init__`` and needs none: call :meth:`join_gang` once (from your
    ``__init__`` or later), then :meth:`run` (blocks until :meth:`stop`) or :meth:`start`
    (returns at once). It keeps its state in one attribute, ``_memgang_agent_state``::

        class Summarizer(SomeFramework.Agent, memgang.AgentMixin):
            @memgang.on("memory_updated", group="chunks")
            def on_chunk(self, event):
                chunk = self.memory.read(event.ref)
                self.memory.write(f"summary-{chunk.id}", summarize(chunk.value),
                                  derived_from=[event.ref])

        agent = Summarizer(...).join_gang(swarm, "summarizer-1", role="summarizer")
        agent.run()   # until agent.stop() (any thread) or SIGINT/SIGTERM

    While running, the agent is present: a heartbeat every ``heartbeat_s`` keeps it in
    ``swarm.agents()`` (with its role) for ``presence_ttl_s``; joining emits
    ``agent_joined``, stopping emits ``agent_left``, and an agent that dies without stopping
    is reaped, with ``agent_left`` (reason ``expired``), by the next heartbeat of any other
    agent once its ttl has passed. Handlers run one event at a time, in the log's order; one
    that raises is logged (logger ``memgang.agent``) and counted (``handler_errors``), and
    the agent carries on.
    """

    # -- joining ------------------------------------------------------------------------------

    def join_gang(self: A, swarm: Swarm, name: str, *, role: str = "agent",
                  heartbeat_s: float = core.DEFAULT_HEARTBEAT_S,
                  presence_ttl_s: float | None = None, since: str | None = None,
                  info: Mapping[str, Any] | None = None) -> A:
        """Bind this object to ``swarm`` as agent ``name``; returns ``self``.

        Nothing is sent yet: :meth:`start` / :meth:`run` announce the agent. ``since`` is
        where its handlers start in the event log (``None``: events after start; ``"start"``:
        everything the log holds). ``info`` is extra JSON-able description shown by
        ``swarm.agents()``.
        """
        if getattr(self, _STATE, None) is not None:
            raise AgentError(f"{self!r} has already joined as "
                             f"{getattr(self, _STATE).memory.name!r}")
        if not (isinstance(heartbeat_s, (int, float)) and heartbeat_s > 0):
            raise AgentError(f"heartbeat_s must be a positive number, got {heartbeat_s!r}")
        ttl_s = core.TTL_HEARTBEATS * heartbeat_s if presence_ttl_s is None else presence_ttl_s
        if not (isinstance(ttl_s, (int, float)) and ttl_s > heartbeat_s):
            raise AgentError(f"presence_ttl_s must be longer than heartbeat_s ({heartbeat_s}), "
                             f"got {ttl_s!r}")
        core.describe(role, 0, info)  # validates role and info now, not at start
        parse_since(since)
        handlers = []
        for method, spec in core.handlers_of(type(self)):
            fn = getattr(self, method)
            if inspect.iscoroutinefunction(fn) and not SyncBackend.ASYNC:
                raise AgentError(f"{type(self).__name__}.{method} is a coroutine function: "
                                 f"use memgang.aio.AgentMixin for async handlers")
            handlers.append(_Handler(method, fn, spec))
        state = _State(swarm.agent(name), role, float(heartbeat_s), round(ttl_s * 1000),
                       dict(info or {}), handlers, since)
        try:  # past any __setattr__ of the host class (frozen models, validators)
            object.__setattr__(self, _STATE, state)
        except AttributeError as exc:
            raise AgentError(f"{type(self).__name__} keeps no instance __dict__: add "
                             f"{_STATE!r} to its __slots__ to make it an agent") from exc
        return self

    def _agent_state(self) -> _State:
        state: _State | None = getattr(self, _STATE, None)
        if state is None:
            raise AgentError(f"{type(self).__name__} has not joined a swarm yet: call "
                             f"self.join_gang(swarm, name) first")
        return state

    @property
    def memory(self) -> AgentMemory:
        """This agent's memory (an :class:`~memgang.AgentMemory`)."""
        return self._agent_state().memory

    @property
    def agent_name(self) -> str:
        return self._agent_state().memory.name

    @property
    def agent_role(self) -> str:
        return self._agent_state().role

    @property
    def handler_errors(self) -> int:
        """How many handler calls raised since this object joined."""
        return self._agent_state().errors

    def share_knowledge(self, topic: str, value: Any) -> str:
        """Announce a finding to the swarm (a ``knowledge_shared`` event); its log id."""
        return self._agent_state().memory.share_knowledge(topic, value)

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe the handlers, announce the agent (agent_joined) and start its
        heartbeat; returns at once. Handlers are subscribed first, so the agent sees every
        event caused by its own arrival."""
        state = self._agent_state()
        if state.started:
            return
        state.stopped = SyncBackend.event()
        state.set_stopped = SyncBackend.threadsafe_setter(state.stopped)
        if state.stop_requested:
            state.stopped.set()
        if state.handlers:
            state.subscription = _subscribe(state)
        info = core.describe(state.role, round(time.time() * 1000), state.extra)
        try:
            presence.beat(state.memory, info, state.ttl_ms)
        except BaseException:
            _unsubscribe(state)
            raise
        state.started = True
        state.heartbeat = SyncBackend.spawn(lambda: _heartbeat(state, info),
                                             f"memgang-heartbeat-{state.memory.name}")

    def stop(self) -> None:
        """Ask the agent to stop: :meth:`run` then leaves the swarm and returns. Safe from
        any thread, task, handler or signal handler; returns at once."""
        state = self._agent_state()
        state.stop_requested = True
        if state.set_stopped is not None:
            state.set_stopped()

    def run(self, *, handle_signals: bool = True) -> None:
        """Run until :meth:`stop` (or SIGINT/SIGTERM, with ``handle_signals`` where the
        process can take them), then leave the swarm cleanly (agent_left)."""
        state = self._agent_state()
        self.start()
        undo = SyncBackend.on_stop_signals(self.stop) if handle_signals else None
        try:
            while not SyncBackend.wait_event(state.stopped, _POLL_S):
                if state.stop_requested:
                    break
        finally:
            if undo is not None:
                undo()
            self.leave_gang()

    def leave_gang(self, reason: str = "stopped") -> None:
        """Stop handling events and heartbeats, leave the swarm (agent_left with
        ``reason``) and flush the counters. Idempotent; :meth:`run` calls it."""
        state = self._agent_state()
        state.stop_requested = True
        if not state.started:
            return
        state.started = False
        if state.stopped is not None:
            state.stopped.set()
        _unsubscribe(state)
        if state.heartbeat is not None:
            SyncBackend.join(state.heartbeat)
            state.heartbeat = None
        try:
            presence.leave(state.memory, reason)
        finally:
            state.memory.flush_stats()


def _heartbeat(state: _State, info: bytes) -> None:
    """Beat every heartbeat_s with the description ``start()`` announced."""
    while not SyncBackend.wait_event(state.stopped, state.heartbeat_s):
        try:
            if presence.beat(state.memory, info, state.ttl_ms):
                log.warning("agent %s rejoined %s: its presence had lapsed (a heartbeat "
                            "came later than presence_ttl_s)", state.memory.name,
                            state.memory.swarm.name)
        except Error as exc:  # never let the heartbeat die: try again next time
            log.warning("agent %s: heartbeat failed: %s", state.memory.name, exc)


def _dispatch(state: _State, event: Event) -> None:
    """Hand one event to every handler it matches; a handler that raises is logged and
    counted, and the others still run."""
    gap = event.type == GAP
    if gap and not any(h.spec.type == GAP for h in state.handlers):
        log.warning("agent %s: %s", state.memory.name, event.data.get("detail") or event)
        return
    for handler in state.handlers:
        if (gap and handler.spec.type != GAP) or not handler.spec.filter.matches(event):
            continue
        try:
            SyncHandlers.call(handler.fn, event)
        except Exception:
            state.errors += 1
            log.exception("agent %s: handler %s failed on %s %s (id %s)", state.memory.name,
                          handler.method, event.type, event.key or "", event.id)
            try:
                state.memory.count("handler_errors")
            except Error as exc:
                log.warning("agent %s: cannot count the handler error: %s",
                            state.memory.name, exc)


def _subscribe(state: _State) -> Any:
    types = core.subscribed_types(h.spec for h in state.handlers)

    def deliver(event: Event) -> None:
        _dispatch(state, event)

    return state.memory.swarm.subscribe(deliver, types, since=state.since,
                                              on_gap="event")


def _unsubscribe(state: _State) -> None:
    subscription, state.subscription = state.subscription, None
    if subscription is not None:
        subscription.stop()


__all__ = ["AgentMixin"]
