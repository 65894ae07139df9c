"""Compute-once across agents (single-flight memoization): the sans-I/O core.

A computation is named by a content hash of its name and inputs (:func:`digest`): a
canonical msgpack encoding (mapping keys sorted, sets sorted, tuples as lists) under
SHA-256, so the same call from any process, host or language gives the same key. The claim,
the result and the error live in one hash ``{swarm}/_memo/<digest>`` whose ``state`` is

- ``running``: one agent (``owner``, claim ``token``) computes it under a lease
  (``lease_until`` ms, renewed by a watchdog while the function runs); ``waiters`` counts the
  agents waiting for it;
- ``done``: the result (msgpack), who computed it and how long it took (``compute_ms``), so
  each agent that reuses it is credited with the time it saved;
- ``error``: the claim's function raised; the waiters of that claim get the remote type and
  message (or, with ``on_error="retry"``, one of them computes it again). A caller that
  was not waiting for that claim never sees an old error: it claims afresh.

Waiters are woken, not polling: the result or error RPUSHes one token per counted waiter
onto the doorbell list ``{swarm}/_memowake/<digest>``, which waiters BLPOP with a timeout
bounded by the claimer's lease. When the timeout passes they ask again: a renewed lease
means wait on; a lapsed one (the claimer died) is taken over by exactly one of them, because
the claim is one atomic script. The doorbell only saves latency; correctness never depends
on it.

This module builds each script call and interprets each reply; the I/O shells
(``memgang._async.memo`` and the generated ``memgang._sync.memo``) only send them.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from . import scripts
from .codec import DEFAULT_MAX_DEPTH
from .errors import ComputeFailed, InvalidValue, ScriptError
from .keys import SwarmKeys

#: Bump when the canonical encoding changes: old results are then simply not found.
ENCODING_VERSION = b"memgang-memo/1"
ON_ERROR = ("raise", "retry")

DEFAULT_LEASE_S = 10.0
#: A claim's hash outlives its lease by this factor, so a dead claimer's claim disappears.
CLAIM_KEEP_FACTOR = 3
#: How long a stored error stays for the waiters of its claim to read it.
ERROR_KEEP_MS = 60_000
#: How long unread doorbell tokens stay.
WAKE_KEEP_MS = 60_000
#: Waiters wake this long after the claimer's lease would end, to re-check it.
LEASE_SLACK_S = 0.05

_EXT_SET = 1


# --- the content hash -----------------------------------------------------------------------


def canonical(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "inputs") -> bytes:
    """A deterministic msgpack encoding of ``value``.

    Mappings are encoded with their keys sorted by their own encoding, sets and frozensets
    as a sorted extension type, tuples as lists; ``None``, bools, ints, floats, str and bytes
    as themselves (so ``1``, ``1.0``, ``True`` and ``"1"`` all differ). Anything else is
    refused with :class:`InvalidValue` naming its type.
    """
    data: bytes = msgpack.packb(_norm(value, 1, max_depth, what), use_bin_type=True)
    return data


def _norm(value: Any, depth: int, max_depth: int, what: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if depth > max_depth:
        raise InvalidValue(f"{what} are nested deeper than {max_depth} levels")
    if isinstance(value, Mapping):
        items = [(canonical(k, max_depth=max_depth, what=what),
                  _norm(v, depth + 1, max_depth, what)) for k, v in value.items()]
        return dict(sorted(items, key=lambda kv: kv[0]))
    if isinstance(value, (list, tuple)):
        return [_norm(v, depth + 1, max_depth, what) for v in value]
    if isinstance(value, (set, frozenset)):
        members = sorted(canonical(v, max_depth=max_depth, what=what) for v in value)
        return msgpack.ExtType(_EXT_SET, b"".join(members))
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise InvalidValue(f"{what} cannot be hashed for compute-once: {type(value).__name__} "
                       f"has no canonical encoding (use str, bytes, numbers, bool, None, "
                       f"lists, tuples, dicts and sets of those)")


def digest(name: str, inputs: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> str:
    """The content hash (64 hex characters) that names computation ``name`` on ``inputs``."""
    if not isinstance(name, str) or not name:
        raise InvalidValue(f"a compute-once name must be a non-empty string, got {name!r}")
    h = hashlib.sha256(ENCODING_VERSION)
    h.update(b"\0")
    h.update(name.encode())
    h.update(b"\0")
    h.update(canonical(inputs, max_depth=max_depth))
    return h.hexdigest()


def function_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function: the default name of ``@swarm.shared``."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}"


def call_inputs(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
                ) -> dict[str, Any]:
    """The arguments of a call by parameter name, defaults applied: ``f(1)`` and
    ``f(x=1)`` hash the same."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{function_name(fn)}(): {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def default_agent() -> str:
    """The agent ``@swarm.shared`` computes as when none is named: ``proc-<pid>``."""
    return f"proc-{os.getpid()}"


def new_token() -> str:
    """A claim token: unique per attempt, so a stale claimer cannot touch a newer claim."""
    return secrets.token_hex(8)


# --- options ---------------------------------------------------------------------------------


# bounds of ttl_s / lease_s: finite, and far below what Redis's PEXPIRE takes
_MAX_SECONDS = 10 * 365 * 86400.0


@dataclass(frozen=True, slots=True)
class Options:
    """Validated options of one compute_once call."""

    ttl_ms: int | None
    lease_ms: int
    on_error: str
    wait: bool
    timeout_s: float | None

    @property
    def renew_every_s(self) -> float:
        return self.lease_ms / 3000

    @classmethod
    def make(cls, *, ttl_s: float | None, lease_s: float, on_error: str, wait: bool,
             timeout_s: float | None) -> Options:
        if ttl_s is not None and not (isinstance(ttl_s, (int, float)) and
                                      0 < ttl_s < _MAX_SECONDS):
            raise InvalidValue(f"ttl_s must be a positive number or None, got {ttl_s!r}")
        if not (isinstance(lease_s, (int, float)) and 0.05 <= lease_s < _MAX_SECONDS):
            raise InvalidValue(f"lease_s must be at least 0.05 seconds, got {lease_s!r}")
        if on_error not in ON_ERROR:
            raise InvalidValue(f"on_error must be one of {', '.join(ON_ERROR)}, "
                               f"got {on_error!r}")
        if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise InvalidValue(f"timeout_s must be a positive number or None, got {timeout_s!r}")
        return cls(None if ttl_s is None else max(1, round(ttl_s * 1000)),
                   round(lease_s * 1000), on_error, wait, timeout_s)


# --- the script calls -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Done:
    """A stored result (``value`` still packed) and what it cost to compute."""

    value: bytes
    compute_ms: int
    agent: str


@dataclass(frozen=True, slots=True)
class Running:
    """Another agent (``agent``, claim ``token``) computes it; its lease ends in
    ``lease_left_ms``."""

    agent: str
    token: str
    lease_left_ms: int

    def wait_s(self, remaining_s: float | None) -> float:
        """How long to BLPOP the doorbell: until just after the lease would end."""
        wait = self.lease_left_ms / 1000 + LEASE_SLACK_S
        if remaining_s is not None:
            wait = min(wait, remaining_s)
        return max(0.01, wait)


@dataclass(frozen=True, slots=True)
class Failed:
    """The claim this caller waited on raised."""

    agent: str
    remote_type: str
    remote_message: str

    def error(self, name: str, digest_: str) -> ComputeFailed:
        return ComputeFailed(name, digest_, agent=self.agent, remote_type=self.remote_type,
                             remote_message=self.remote_message)


@dataclass(frozen=True, slots=True)
class Claimed:
    """This caller now holds the claim and must compute; ``took_over`` names the agent
    whose lapsed claim it replaced ("" if none)."""

    took_over: str


Claim = Done | Running | Failed | Claimed


@dataclass(frozen=True, slots=True)
class Call:
    """Everything one compute_once call sends, built once."""

    name: str
    digest: str
    agent: str
    token: str
    keys: list[str]
    options: Options

    def claim_args(self, waited: str, retry: bool) -> list[Any]:
        o = self.options
        return [self.agent, self.token, o.lease_ms, waited, "1" if retry else "0",
                o.lease_ms * CLAIM_KEEP_FACTOR]

    def done_args(self, value: bytes, compute_ms: int) -> list[Any]:
        o = self.options
        return [self.agent, self.token, value, compute_ms,
                "" if o.ttl_ms is None else o.ttl_ms, WAKE_KEEP_MS, self.name]

    def fail_args(self, exc: BaseException | None) -> list[Any]:
        """Store ``exc`` for the waiters; ``None`` abandons the claim (cancelled)."""
        if exc is None:
            return [self.agent, self.token, "", "", ERROR_KEEP_MS, WAKE_KEEP_MS]
        message = str(exc)
        if len(message) > 2000:
            message = message[:2000] + "..."
        return [self.agent, self.token, type(exc).__qualname__, message, ERROR_KEEP_MS,
                WAKE_KEEP_MS]

    def renew_args(self) -> list[Any]:
        o = self.options
        return [self.token, o.lease_ms, o.lease_ms * CLAIM_KEEP_FACTOR]


def plan(ks: SwarmKeys, agent: str, name: str, inputs: Any, options: Options, *,
         max_depth: int = DEFAULT_MAX_DEPTH) -> Call:
    d = digest(name, inputs, max_depth=max_depth)
    return Call(name, d, agent, new_token(), [ks.memo(d), ks.memo_wake(d)], options)


def interpret_claim(reply: list[Any]) -> Claim:
    code = reply[0]
    if code == 0:
        return Done(reply[1], int(reply[2]), scripts.text(reply[3]))
    if code == 1:
        return Running(scripts.text(reply[1]), scripts.text(reply[2]), int(reply[3]))
    if code == 2:
        return Failed(scripts.text(reply[1]), scripts.text(reply[2]), scripts.text(reply[3]))
    if code == 3:
        return Claimed(scripts.text(reply[1]))
    raise ScriptError("memo_claim", reply)


def interpret_done(reply: list[Any]) -> tuple[Done | None, bool]:
    """``(None, lost)`` when stored (``lost``: our claim had lapsed meanwhile), or
    ``(Done, True)`` when another agent had stored its result first (use that one)."""
    code = reply[0]
    if code == 0:
        return None, bool(int(reply[1]))
    if code == 1:
        return Done(reply[1], int(reply[2]), scripts.text(reply[3])), True
    raise ScriptError("memo_done", reply)


def interpret_flag(script: str, reply: Any) -> bool:
    """memo_fail / memo_renew: ``True`` if the claim was still ours."""
    if reply in (0, 1):
        return bool(reply == 1)
    raise ScriptError(script, reply)


__all__ = [
    "DEFAULT_LEASE_S",
    "ON_ERROR",
    "Call",
    "Claim",
    "Claimed",
    "Done",
    "Failed",
    "Options",
    "Running",
    "call_inputs",
    "canonical",
    "default_agent",
    "digest",
    "function_name",
    "interpret_claim",
    "interpret_done",
    "interpret_flag",
    "new_token",
    "plan",
]
