"""The only place where Redis key, channel and stream names are built and validated.

A memory object lives at ``{swarm}/space/id``: three segments, the swarm wrapped in braces so
that it is a Redis Cluster hash tag. Every key a swarm owns -- objects, indexes, locks, fences,
the event log, conflicts, presence -- carries the same tag and so lives in one hash slot, which
is what lets one Lua script touch them all atomically, on one server or on a cluster.

System keys live under ``{swarm}/_...``; user names may not start with ``_``, so they never
collide.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar, cast

from .errors import InvalidKey

P = ParamSpec("P")
T = TypeVar("T")

MAX_KEY_BYTES = 255

# no braces (hash tag), glob characters, backslash, slash (segment separator), "|" (the
# field separator of lock entries), whitespace or control characters; no leading underscore
# (reserved for system keys).
_BAD = r"{}*?\[\]\\/|\s\x00-\x1f\x7f"
_NAME_RE = re.compile(rf"[^{_BAD}_][^{_BAD}]*\Z")
_BAD_CHAR_RE = re.compile(rf"[{_BAD}]")


def _cached(check: Callable[P, T]) -> Callable[P, T]:
    """``functools.lru_cache`` for the checks below, which see the same names and keys again
    and again. A call the cache cannot take (an unhashable argument: a list given as a key,
    say) goes to the check itself, whose type test names what is wrong; the bare cache
    would raise ``TypeError: unhashable type`` before the check ran."""
    cached = cast(Callable[P, T], functools.lru_cache(maxsize=65536)(check))

    @functools.wraps(check)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return cached(*args, **kwargs)
        except TypeError:  # only hashing raises it: the checks raise InvalidKey
            return check(*args, **kwargs)

    return call


@_cached
def validate_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a valid swarm, space, id, group, context or tag name.

    Raises :class:`InvalidKey` naming the offending character otherwise.
    """
    if not isinstance(name, str):
        raise InvalidKey(f"{what} must be a string, got {type(name).__name__}", name=repr(name))
    if _NAME_RE.match(name):
        if len(name.encode()) > MAX_KEY_BYTES:
            raise InvalidKey(f"{what} {name[:40]!r}... is longer than {MAX_KEY_BYTES} bytes",
                             name=name)
        return name
    if not name:
        raise InvalidKey(f"{what} must not be empty", name=name)
    if name.startswith("_"):
        raise InvalidKey(f"{what} {name!r} must not start with '_' (reserved)", name=name)
    bad = _BAD_CHAR_RE.search(name)
    char = bad.group() if bad else "?"
    raise InvalidKey(f"{what} {name!r} contains the forbidden character {char!r}", name=name)


@dataclass(frozen=True, slots=True)
class Key:
    """A parsed memory key: ``{swarm}/space/id``."""

    swarm: str
    space: str
    id: str
    #: ``{swarm}/space/id``, and ``space/id`` (the key without its swarm): built once, as
    #: every write and read asks for them several times
    full: str = field(init=False, repr=False, compare=False)
    local: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "local", f"{self.space}/{self.id}")
        object.__setattr__(self, "full", f"{{{self.swarm}}}/{self.local}")

    def __str__(self) -> str:
        return self.full


def _checked(swarm: str, space: str, id_: str) -> Key:
    validate_name(swarm, "swarm")
    validate_name(space, "space")
    validate_name(id_, "id")
    key = Key(swarm, space, id_)
    if len(key.full.encode()) > MAX_KEY_BYTES:
        raise InvalidKey(f"key {key.full[:60]!r}... is longer than {MAX_KEY_BYTES} bytes",
                         name=key.full)
    return key


@_cached
def parse_full(key: str) -> Key:
    """Parse a full key ``{swarm}/space/id``."""
    if not isinstance(key, str) or not key.startswith("{"):
        raise InvalidKey(f"{key!r} is not a full memory key of the form {{swarm}}/space/id",
                         name=str(key))
    end = key.find("}/")
    if end < 0:
        raise InvalidKey(f"{key!r} is not a full memory key of the form {{swarm}}/space/id",
                         name=key)
    rest = key[end + 2:].split("/")
    if len(rest) != 2:
        raise InvalidKey(f"{key!r} must have exactly three segments: {{swarm}}/space/id",
                         name=key)
    return _checked(key[1:end], rest[0], rest[1])


@_cached
def resolve(swarm: str, own_space: str, ref: str) -> Key:
    """Resolve what a caller passed as a key.

    ``id`` is in the caller's own space, ``space/id`` is another space of the same swarm,
    and ``{swarm}/space/id`` is a full key (which must be in this swarm).
    """
    if not isinstance(ref, str):
        raise InvalidKey(f"a key must be a string or MemoryRef, got {type(ref).__name__}",
                         name=repr(ref))
    if ref.startswith("{"):
        key = parse_full(ref)
        if key.swarm != swarm:
            raise InvalidKey(f"{ref!r} belongs to swarm {key.swarm!r}, not {swarm!r}", name=ref)
        return key
    parts = ref.split("/")
    if len(parts) == 1:
        return _checked(swarm, own_space, parts[0])
    if len(parts) == 2:
        return _checked(swarm, parts[0], parts[1])
    raise InvalidKey(f"{ref!r} has too many '/': use id, space/id or {{swarm}}/space/id",
                     name=ref)


class SwarmKeys:
    """Builds every system key and channel of one swarm."""

    __slots__ = ("_p", "swarm", "write_head")

    def __init__(self, swarm: str) -> None:
        self.swarm = validate_name(swarm, "swarm")
        self._p = f"{{{swarm}}}/_"
        #: The keys every write.lua call starts with (memgang.memory.plan_write_many), in
        #: its order: built once, not per write.
        self.write_head = (self.seq, self.log, self.idx_all, self.idx_agent, self.idx_group,
                           self.idx_context, self.conflict_index)

    # -- objects ---------------------------------------------------------------------------
    def obj(self, space: str, id_: str) -> str:
        return _checked(self.swarm, space, id_).full

    # -- indexes ---------------------------------------------------------------------------
    @property
    def idx_all(self) -> str:
        """Sorted set of every object's full key, scored by creation time (ms)."""
        return self._p + "idx/all"

    @property
    def idx_agent(self) -> str:
        """Sorted set of ``"<writer>\\0<key>"`` members (score 0, read by lex range)."""
        return self._p + "idx/agent"

    @property
    def idx_group(self) -> str:
        """Sorted set of ``"<group>\\0<key>"`` members."""
        return self._p + "idx/group"

    @property
    def idx_context(self) -> str:
        """Sorted set of ``"<context>\\0<key>"`` members."""
        return self._p + "idx/context"

    # -- versions, log, channel -------------------------------------------------------------
    @property
    def seq(self) -> str:
        """The swarm's version counter: versions are unique and monotonic per swarm."""
        return self._p + "seq"

    @property
    def log(self) -> str:
        """The swarm's bounded event log (a stream)."""
        return self._p + "log"

    @property
    def log_n(self) -> str:
        """Counter of the log's entries: each event's position n (INCR, never expires)."""
        return self._p + "logn"

    @property
    def channel(self) -> str:
        """The pub/sub channel every event of the swarm is published on."""
        return self._p + "events"

    # -- conflicts ---------------------------------------------------------------------------
    def conflicts(self, key: Key) -> str:
        """Hash of the losing writes kept for ``key`` under on_conflict="manual"."""
        return self._p + "conflicts/" + key.local

    @property
    def conflict_index(self) -> str:
        """Sorted set of the keys that have unresolved conflicts."""
        return self._p + "conflicts"

    # -- locks -------------------------------------------------------------------------------
    def lock(self, key: Key) -> str:
        """Hash of the current holders of the lock on ``key``."""
        return self._p + "lock/" + key.local

    def lock_queue(self, key: Key) -> str:
        """Queue of waiters for the lock on ``key``."""
        return self._p + "lockq/" + key.local

    def lock_waiters(self, key: Key) -> str:
        """Hash of the queued waiters of the lock on ``key``: id -> mode, agent, lease, wake."""
        return self._p + "lockw/" + key.local

    def fence(self, key: Key) -> str:
        """Newest fencing token issued for ``key``; never expires, never goes back."""
        return self._p + "fence/" + key.local

    def wake(self, listener_id: str) -> str:
        """Pub/sub CHANNEL (not a key) of one process's lock-wake listener in this swarm: a
        grant PUBLISHes "<waiter id>|<token>|<lease_ms>" here, the listener wakes that waiter."""
        return self._p + "wake/" + listener_id

    @property
    def lock_index(self) -> str:
        """Set of lock names (full keys) that currently have holders or waiters."""
        return self._p + "locks"

    # -- agents ------------------------------------------------------------------------------
    @property
    def presence(self) -> str:
        """Sorted set of live agents scored by heartbeat deadline (ms)."""
        return self._p + "presence"

    @property
    def agents(self) -> str:
        """Hash of agent name -> JSON description (role, pid, host, started)."""
        return self._p + "agents"

    def stats(self, agent: str) -> str:
        """Hash of an agent's counters."""
        return self._p + "stats/" + agent

    @property
    def stats_index(self) -> str:
        """Set of the agent names that have a stats hash (so listing them needs no SCAN)."""
        return self._p + "stats"

    def memo(self, digest: str) -> str:
        """Compute-once result/claim for a content hash."""
        return self._p + "memo/" + digest

    def memo_wake(self, digest: str) -> str:
        """Doorbell of a compute-once claim: the result (or error) RPUSHes one token per
        waiter; waiters BLPOP it."""
        return self._p + "memowake/" + digest


INDEX_SEP = "\0"


def index_range(value: str) -> tuple[str, str]:
    """ZRANGEBYLEX bounds selecting the ``"<value>\\0<key>"`` members of one scope value."""
    return "[" + value + INDEX_SEP, "(" + value + "\x01"


def channel_pattern_all() -> str:
    """The PSUBSCRIBE pattern matching every swarm's event channel."""
    return "{*}/_events"


def log_pattern_all() -> str:
    """The SCAN MATCH pattern of every swarm's event log (``watch --all`` catching up)."""
    return "{*}/_log"


def swarm_of_log(key: str) -> str:
    """The swarm a ``{swarm}/_log`` stream belongs to."""
    if key.startswith("{") and key.endswith("}/_log"):
        return key[1:-len("}/_log")]
    raise InvalidKey(f"{key!r} is not a memgang event log", name=key)


def keyevent_channel(db: int, event: str) -> str:
    """Redis's keyspace-notification channel for one event type (``hset``, ``del``,
    ``expired``, ...) in database ``db``: the message is the name of the key."""
    return f"__keyevent@{db}__:{event}"


def swarm_of_channel(channel: str) -> str:
    """The swarm a ``{swarm}/_events`` channel belongs to."""
    if channel.startswith("{") and channel.endswith("}/_events"):
        return channel[1:-len("}/_events")]
    raise InvalidKey(f"{channel!r} is not a memgang event channel", name=channel)


__all__ = [
    "INDEX_SEP",
    "MAX_KEY_BYTES",
    "Key",
    "SwarmKeys",
    "channel_pattern_all",
    "index_range",
    "keyevent_channel",
    "log_pattern_all",
    "parse_full",
    "resolve",
    "swarm_of_channel",
    "swarm_of_log",
    "validate_name",
]
