# Generated from memgang/_async/gang.py by tools/gen_sync.py: do not edit.
"""Gang, Swarm and AgentMemory: the I/O shell over the sans-I/O core of memgang.memory.

This file is the single implementation; ``memgang/_sync/gang.py`` is generated from it by
``tools/gen_sync.py`` (``make lint`` and ``make test`` check that it is up to date).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions

from .. import scripts
from .._backends import SyncFunc, SyncRedis, SyncThunk, P, sync_no_retry
from ..agent import AgentInfo
from ..codec import Codec, dumps_json
from ..config import Config, redact
from ..errors import (
    ConnectionLost,
    Error,
    InvalidKey,
    InvalidValue,
    Locked,
    LockTimeout,
    NotFound,
    from_redis,
    lost_redis,
)
from ..keys import SwarmKeys, validate_name
from ..locks import DEFAULT_LEASE_MS, LockState
from ..memo import default_agent
from ..memory import (
    Conflict,
    MemoryObject,
    MemoryRef,
    PlainWrite,
    ScopeQuery,
    Settings,
    conflict_entries,
    interpret_read,
    members_to_keys,
    plain_write,
    plan_delete,
    plan_write_many,
    prune_call,
    read_call,
    target,
)
from ..metrics import Stats, parse_hash
from ..resp import Packed
from ..server import EmbeddedServer
from . import memo as _memo
from . import presence as _presence
from .events import SyncEventHub, SyncEventStream, SyncHandler, SyncSubscription
from .events import subscribe as _subscribe
from .locks import SyncLease, SyncLockRuntime, OnLost, lock_states
from .wire import SyncWire

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..events import EventOptions

_SEEN_CACHE = 4096
# keys whose default-options write request an agent keeps (AgentMemory._plain_write)
_PLAIN_CACHE = 1024
# objects per write.lua call in write_many: big enough to spread the call's cost, small
# enough that one call never holds Redis for long (~64 x 20 us)
_BATCH = 64
T = TypeVar("T")


def connect(url: str | None = None, *, config: Config | None = None,
                  **options: Any) -> Gang:
    """Connect to Redis: ``url``, else ``MEMGANG_URL``, else an embedded redis-server.

    ``options`` are :class:`memgang.Config` fields (``max_value_bytes``, ``max_depth``,
    ``log_maxlen``, ...).
    """
    cfg = config or Config.from_url(url, **options)
    server = None
    if cfg.url is None:
        server = EmbeddedServer()
        server.start()
        cfg = cfg.with_url(server.url)
    assert cfg.url is not None
    try:
        client = SyncRedis.from_url(
            cfg.url,
            socket_timeout=cfg.socket_timeout_s,
            socket_connect_timeout=cfg.connect_timeout_s,
            health_check_interval=30,
            **{"retry": sync_no_retry(), **cfg.redis_options},
        )
    except ValueError as exc:  # redis-py's verdict on a malformed URL (bad port, ...)
        if server is not None:
            server.stop()
        raise InvalidValue(f"bad Redis URL {redact(cfg.url)}: {exc}") from exc
    gang = Gang(cfg, client, server)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        gang.close()
        raise ConnectionLost(f"cannot reach Redis at {cfg!r}: {exc}") from exc
    return gang


class Gang:
    """A connection to the shared memory; hands out swarms."""

    def __init__(self, config: Config, client: SyncRedis, server: EmbeddedServer | None = None
                 ) -> None:
        self.config = config
        self.client = client
        self.server = server
        self.codec = Codec(config.max_value_bytes, config.max_depth)
        self.settings = Settings(self.codec, config.log_maxlen)
        self.wire = SyncWire(client)  # every script call goes this way (memgang._async.wire)
        # every agent's counters, by (swarm, agent): close() flushes what is pending
        self.stats: dict[tuple[str, str], Stats] = {}
        # lock-wake listener and lease watchdog, started by the first lock (memgang.locks)
        self.lock_runtime: SyncLockRuntime | None = None
        # the one pub/sub connection of every event subscriber (memgang._async.events)
        self.events_hub: SyncEventHub | None = None

    @property
    def url(self) -> str:
        assert self.config.url is not None
        return self.config.url

    def swarm(self, name: str) -> Swarm:
        return Swarm(self, name)

    def events(self, types: str | Iterable[str] | None = None, *,
               swarms: Sequence[str] | None = None,
               **options: Unpack[EventOptions]) -> SyncEventStream:
        """The events of ``swarms`` (default: every swarm), like :meth:`Swarm.events`."""
        return SyncEventStream(self, swarms, types, **options)

    def subscribe(self, handler: SyncHandler, types: str | Iterable[str] | None = None,
                        *, swarms: Sequence[str] | None = None,
                        **options: Unpack[EventOptions]) -> SyncSubscription:
        """Call ``handler`` for the events of ``swarms`` (default: every swarm), like
        :meth:`Swarm.subscribe`."""
        return _subscribe(self, swarms, handler, types, dict(options))

    def flush_stats(self, only: Sequence[tuple[str, str]] | None = None) -> None:
        """Send the agents' counters not yet in Redis (``only`` those (swarm, agent)) in one
        pipelined round trip of HINCRBY."""
        batch = [(swarm, agent, stats.take(), stats)
                 for (swarm, agent), stats in list(self.stats.items())
                 if only is None or (swarm, agent) in only]
        batch = [item for item in batch if item[2]]
        if not batch:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for swarm, agent, pending, _ in batch:
                    ks = SwarmKeys(swarm)
                    pipe.sadd(ks.stats_index, agent)
                    for counter, n in pending.items():
                        pipe.hincrby(ks.stats(agent), counter, n)
                pipe.execute()
        except redis.exceptions.RedisError as exc:
            for _, _, pending, stats in batch:
                stats.put_back(pending)
            raise ConnectionLost(f"flushing agent stats failed: {exc}") from exc

    def call(self, script: str, keys: Sequence[Any] | Packed, args: Sequence[Any] = ()
                   ) -> Any:
        """Run one script; redis-py errors become memgang errors (errors.from_redis; written
        out rather than ``lost_redis``, whose message is built before the call: this is
        every operation's path)."""
        try:  # (packing too: an argument that cannot be sent is a ScriptError)
            return self.wire.request(script, self.wire.pack(script, keys, args))
        except redis.exceptions.RedisError as exc:
            raise from_redis(f"the {script} script", exc, script=script) from exc

    def request(self, script: str, request: bytes) -> Any:
        """:meth:`call` of a request packed whole (bytes kept from ``wire.pack``)."""
        try:
            return self.wire.request(script, request)
        except redis.exceptions.RedisError as exc:
            raise from_redis(f"the {script} script", exc, script=script) from exc

    def call_many(self, script: str,
                        calls: Iterable[tuple[Sequence[Any] | Packed, Sequence[Any]]]
                        ) -> list[Any]:
        """Run ``script`` once per (keys, args), pipelined in one round trip; the replies in
        order. An error reply is raised (as :meth:`call` does) once every call has run."""
        with lost_redis(f"the {script} script", script=script):
            replies = self.wire.run([(script, keys, args) for keys, args in calls])
            for reply in replies:
                if isinstance(reply, redis.exceptions.RedisError):
                    raise reply
        return replies

    def close(self) -> None:
        """Close the connections (and stop the embedded server this Gang started)."""
        try:
            if self.lock_runtime is not None:
                self.lock_runtime.close()
            if self.events_hub is not None:
                self.events_hub.close()
            with contextlib.suppress(Error):
                self.flush_stats()
            self.wire.close()
            self.client.close()
        finally:
            if self.server is not None:
                self.server.stop()

    def __enter__(self) -> Gang:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gang({self.config!r})"


class Swarm:
    """One swarm: a namespace of memory objects that share one hash slot."""

    def __init__(self, gang: Gang, name: str) -> None:
        self.gang = gang
        self.keys = SwarmKeys(name)  # validates the name
        self.name = self.keys.swarm

    def agent(self, name: str) -> AgentMemory:
        """Memory acting as agent ``name``: its own space is ``{swarm}/name/...``."""
        return AgentMemory(self, name)

    def read(self, key: str | MemoryRef, *, reader: str = "") -> MemoryObject | None:
        """Read ``space/id``, a full key or a MemoryRef (no own space: ``id`` alone is refused)."""
        if isinstance(key, str) and "/" not in key:
            raise InvalidKey(f"{key!r}: a swarm-level read needs space/id or a full key",
                             name=key)
        return _read(self, "_", reader, key)

    def read_scope(self, agent: str | None = None, group: str | None = None,
                         context: str | None = None, *, limit: int | None = None,
                         reader: str = "") -> list[MemoryObject]:
        """Objects last written by ``agent``, in ``group`` and in ``context`` (those given),
        most recently updated first, at most ``limit`` of them.

        Index entries of objects that expired or were deleted by other tools are pruned on
        the way. Objects this reader may not see (readable_by, exclusive locks) are left out,
        and so is an object another tool left undecodable (with a warning naming it; reading
        it alone raises InvalidValue).
        """
        query = ScopeQuery(agent, group, context)
        ks = self.keys
        client = self.gang.client
        ranges = query.ranges(ks)
        with lost_redis(f"scoped read of {self.name} failed"):  # every read below
            with client.pipeline(transaction=False) as pipe:
                if ranges:
                    for idx, low, high in ranges:
                        pipe.zrangebylex(idx, low, high)
                else:
                    pipe.zrange(ks.idx_all, 0, -1)
                found: list[Any] = pipe.execute()
            if ranges:
                sets = [members_to_keys(members) for members in found]
                keys = sorted(set.intersection(*sets))
            else:
                keys = [scripts.text(m) for m in found[0]]
            out: list[MemoryObject] = []
            stale: list[str] = []
            if limit is not None and len(keys) > limit:
                # newest first by each candidate's version (one plain HGET each, no script), so
                # only about `limit` objects are read in full, not the whole scope
                with client.pipeline(transaction=False) as pipe:
                    for k in keys:
                        pipe.hget(k, "ver")
                    versions = pipe.execute()
                stale = [k for k, v in zip(keys, versions, strict=True) if v is None]
                keys = [k for _, k in sorted(((int(v) if v.isdigit() else 0, k)
                                              for k, v in zip(keys, versions, strict=True)
                                              if v is not None), reverse=True)]
            wanted = len(keys) if limit is None else limit
            chunk = max(wanted, 16)
            for start in range(0, len(keys), chunk):
                if len(out) >= wanted:
                    break
                part = keys[start:start + chunk]
                replies = self.gang.call_many(
                    "read", [read_call(ks, target(self.name, "_", k)[0], reader) for k in part])
                for k, reply in zip(part, replies, strict=True):
                    if reply[0] == scripts.NOT_FOUND:
                        stale.append(k)
                    elif reply[0] in (scripts.FORBIDDEN, scripts.LOCKED):
                        continue  # not visible to this reader right now
                    else:
                        try:
                            obj = interpret_read(reply, k, reader)
                        except InvalidValue as exc:  # one object another tool broke: not all
                            logging.getLogger("memgang").warning("read_scope skips %s", exc)
                            continue
                        if obj is not None and query.matches(obj):
                            out.append(obj)
                        elif obj is not None:
                            stale.append(k)  # an entry left by an earlier object at this key
        for k in stale:
            self.gang.call(  # a vanished object is announced once (lua/prune.lua)
                "prune", *prune_call(ks, k, "memory_expired", "vanished",
                                     self.gang.settings.log_maxlen, query.prune_args()))
        out.sort(key=lambda o: o.version, reverse=True)  # versions are the swarm's order
        return out if limit is None else out[:limit]

    def conflicts(self) -> dict[str, list[Conflict]]:
        """Every key with unresolved manual conflicts, and its kept losing writes."""
        client = self.gang.client
        out: dict[str, list[Conflict]] = {}
        for raw in client.zrange(self.keys.conflict_index, 0, -1):
            full = scripts.text(raw)
            key = target(self.name, "_", full)[0]
            entries = conflict_entries(client.hgetall(self.keys.conflicts(key)), full)
            if entries:
                out[full] = entries
        return out

    def shared(self, ttl_s: float | None = None, *, agent: str | None = None,
               **options: Any) -> Callable[[SyncFunc[P, T]], SyncFunc[P, T]]:
        """Decorator: calls with the same arguments are computed once across the swarm
        (see :meth:`AgentMemory.compute_once`), as ``agent`` (default: ``proc-<pid>``)."""
        return self.agent(agent or default_agent()).shared(ttl_s=ttl_s, **options)

    def agents(self) -> list[AgentInfo]:
        """The live agents of this swarm (heartbeat current), with their roles, by name."""
        return _presence.live_agents(self)

    def stats(self) -> dict[str, dict[str, int]]:
        """Every agent's counters (reads, writes, hits, waits, ...) as kept in Redis."""
        client = self.gang.client
        with lost_redis(f"reading the stats of {self.name} failed"):
            names = sorted(scripts.text(m) for m in client.smembers(self.keys.stats_index))
            with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self.keys.stats(name))
                rows = pipe.execute()
        return {name: parse_hash(row) for name, row in zip(names, rows, strict=True)}

    def locks(self) -> list[LockState]:
        """Every lock with holders or waiters: mode, holders and lease left, queue."""
        return lock_states(self)

    def events(self, types: str | Iterable[str] | None = None,
               **options: Unpack[EventOptions]) -> SyncEventStream:
        """This swarm's events, each once and in log order (``async for``, ``get()``).

        Filters: ``types``, ``agent`` (name or names), ``group``, ``context``, ``match`` (a
        glob on ``space/id``, or on the full key if it starts with ``{``). ``since``: None
        or "now" (events after the stream starts: use ``async with`` to fix that point),
        "start" (all the log holds) or a log id. ``on_gap``: "raise" (EventGap), "event"
        or "log". See :class:`memgang.aio.EventStream`.
        """
        return SyncEventStream(self.gang, [self.name], types, **options)

    def subscribe(self, handler: SyncHandler, types: str | Iterable[str] | None = None,
                        **options: Unpack[EventOptions]) -> SyncSubscription:
        """Call ``handler(event)`` for each of this swarm's events, in order, in a task of
        its own (a thread in the sync API); gaps come as ``event_gap`` events. Returns the
        started :class:`memgang.aio.Subscription`; ``stop()`` ends it."""
        return _subscribe(self.gang, [self.name], handler, types, dict(options))

    def __repr__(self) -> str:
        return f"Swarm({self.name!r})"


def _read(swarm: Swarm, space: str, reader: str, ref: str | MemoryRef
                ) -> MemoryObject | None:
    key, version = target(swarm.name, space, ref)
    ks, args = read_call(swarm.keys, key, reader)
    reply = swarm.gang.call("read", ks, args)
    return interpret_read(reply, key.full, reader, version)


class AgentMemory:
    """Memory acting as one agent: writes are recorded as this agent's."""

    def __init__(self, swarm: Swarm, name: str) -> None:
        self.swarm = swarm
        self.gang = swarm.gang
        self.name = validate_name(name, "agent")
        # the version of each key this agent last read or wrote: the base of its manual
        # writes; bounded, oldest dropped first
        self._seen: dict[str, int] = {}
        # the request of a write with every option at its default, but its value, by the key
        # as the caller names it (the most common write; see memory.PlainWrite)
        self._plain: dict[str, PlainWrite] = {}
        # counters, flushed to {swarm}/_stats/<name> (memgang.metrics); one per agent name
        self.stats = self.gang.stats.setdefault((swarm.name, self.name), Stats())

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to one of this agent's counters; flushes them at most once a second.
        Counting never fails the operation it counts: a failed flush is retried later."""
        if self.stats.incr(counter, n):
            try:
                self.flush_stats()
            except ConnectionLost as exc:
                logging.getLogger("memgang.metrics").debug("stats flush failed: %s", exc)

    def flush_stats(self) -> None:
        """Send this agent's counters not yet in Redis, in one pipelined round trip."""
        self.gang.flush_stats([(self.swarm.name, self.name)])

    def compute_once(self, name: str, inputs: Any, fn: SyncThunk[T], **options: Any
                           ) -> T:
        """``fn()``, computed once across the swarm for (``name``, ``inputs``): reused if
        stored, awaited if another agent computes it now, taken over if that agent dies.

        Options: ``ttl_s`` (keep the result that long; default for good), ``lease_s`` (the
        claim's lease, renewed while ``fn`` runs; default 10), ``on_error`` ("raise": waiters
        get ComputeFailed; "retry": one of them computes again), ``wait=False`` (raise
        Computing instead of waiting), ``timeout_s`` (ComputeTimeout). See
        ``memgang/memo.py`` for the protocol."""
        return _memo.compute_once(self, name, inputs, fn, **options)

    def shared(self, ttl_s: float | None = None, **options: Any
               ) -> Callable[[SyncFunc[P, T]], SyncFunc[P, T]]:
        """Decorator form of :meth:`compute_once`, keyed by the function and its arguments."""
        return _memo.shared(self, ttl_s=ttl_s, **options)

    def _remember(self, key: str, version: int) -> None:
        seen = self._seen  # oldest first: a key seen again moves to the end
        seen.pop(key, None)
        seen[key] = version
        if len(seen) > _SEEN_CACHE:
            del seen[next(iter(seen))]

    def key(self, ref: str | MemoryRef) -> str:
        """The full key that ``ref`` names for this agent."""
        return target(self.swarm.name, self.name, ref)[0].full

    def write(
        self,
        key: str | MemoryRef,
        value: Any,
        *,
        ttl_s: float | None = None,
        group: str | None = None,
        context: str | None = None,
        tags: Iterable[str] | None = None,
        readable_by: Iterable[str] | None = None,
        writable_by: Iterable[str] | None = None,
        on_conflict: str = "lww",
        expected_version: int | None = None,
        fence: int | None = None,
        derived_from: Sequence[MemoryRef | str] | None = None,
        _resolve: Sequence[str] = (),
    ) -> MemoryRef:
        """Write ``value`` at ``key`` under the conflict policy ``on_conflict``.

        Returns a :class:`MemoryRef` to the new version. Raises ConflictError (or
        ManualConflict), Locked, StaleFence, Forbidden, InvalidKey or InvalidValue; a refused
        write changes nothing and announces nothing.
        """
        if (on_conflict == "lww" and expected_version is None and ttl_s is None
                and group is None and context is None and tags is None
                and readable_by is None and writable_by is None and fence is None
                and derived_from is None and not _resolve):
            plain = self._plain.get(key) if type(key) is str else None
            if plain is None:
                plain = self._plain_write(key)
            ref = plain.interpret(self.gang.request("write", plain.request(value)))
        else:
            k = target(self.swarm.name, self.name, key)[0]
            if on_conflict == "manual" and expected_version is None:
                expected_version = self._seen.get(k.full, 0)
            plan = plan_write_many(
                self.swarm.keys, self.gang.settings, [(k, value)], self.name,
                on_conflict=on_conflict, expected_version=expected_version, ttl_s=ttl_s,
                group=group, context=context, tags=tags, readable_by=readable_by,
                writable_by=writable_by, derived_from=derived_from, fence=fence,
                resolve_ids=_resolve,
            )
            ref = plan.interpret(self.gang.call("write", plan.call))
        self._remember(ref.key, ref.version)
        self.count("writes")
        return ref

    def _plain_write(self, key: str | MemoryRef) -> PlainWrite:
        """The :class:`~memgang.memory.PlainWrite` of ``key`` (resolved and checked here),
        kept for the next write of the same key, up to ``_PLAIN_CACHE`` keys."""
        plain = plain_write(self.swarm.keys, self.gang.settings,
                            target(self.swarm.name, self.name, key)[0], self.name,
                            self.gang.wire.sha("write"))
        if type(key) is str:
            if len(self._plain) >= _PLAIN_CACHE:
                self._plain.clear()  # (each is cheap to make again)
            self._plain[key] = plain
        return plain

    def write_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        **options: Any,
    ) -> list[MemoryRef]:
        """Write many objects: batches of write.lua calls, all sent in one pipelined round
        trip. Each object is checked and written on its own terms (a refused one changes
        nothing); each batch is one atomic step.

        ``options`` are the keyword arguments of :meth:`write`, applied to every item.
        Raises the first refusal after all writes were attempted; the others are kept.
        """
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        ks, settings, swarm = self.swarm.keys, self.gang.settings, self.swarm.name
        plans = [
            plan_write_many(ks, settings, [(target(swarm, self.name, key)[0], value)
                                           for key, value in pairs[i:i + _BATCH]],
                            self.name, **options)
            for i in range(0, len(pairs), _BATCH)
        ]
        replies = self.gang.call_many("write", [(plan.call, ()) for plan in plans])
        refs: list[MemoryRef] = []
        first_error: Error | None = None
        written = 0
        for plan, reply in zip(plans, replies, strict=True):
            for key, outcome in zip(plan.keys_of, plan.outcomes(reply), strict=True):
                if isinstance(outcome, Error):
                    first_error = first_error or outcome
                    outcome = MemoryRef(key.full, 0)
                else:
                    written += 1
                    self._remember(key.full, outcome.version)
                refs.append(outcome)
        if written:
            self.stats.incr("writes", written)
        if first_error is not None:
            raise first_error
        return refs

    def read(self, ref: str | MemoryRef, *, wait_s: float | None = None
                   ) -> MemoryObject | None:
        """Read ``id``, ``space/id``, a full key or a MemoryRef; ``None`` if there is none.

        Read through a MemoryRef, the object says ``moved_on`` when a newer version has
        replaced the referenced one. A key another agent holds ``exclusive`` raises Locked,
        or, with ``wait_s``, is read as soon as that lock is released (queued FIFO behind it
        as a read lease), raising Locked only if it is still held after ``wait_s``.
        """
        try:
            obj = _read(self.swarm, self.name, self.name, ref)
        except Locked:
            if wait_s is None:
                raise
            key = target(self.swarm.name, self.name, ref)[0]
            try:
                with self.lock(key.full, "read", timeout_s=wait_s):
                    obj = _read(self.swarm, self.name, self.name, ref)
            except LockTimeout:
                obj = _read(self.swarm, self.name, self.name, ref)
        if obj is not None:
            self._remember(obj.key, obj.version)
        self.count("reads")
        return obj

    def lock(self, name: str | MemoryRef, mode: str = "write", *,
             timeout_s: float | None = None, lease_ms: int = DEFAULT_LEASE_MS,
             on_lost: OnLost | None = None) -> SyncLease:
        """A ``read`` / ``write`` / ``exclusive`` lease on ``name`` (resolved like a key), as a
        context manager: ``async with me.lock("global/report") as lease: ...``.

        Fair (FIFO), renewed by a watchdog while held, enforced by the write/delete/read
        scripts; write and exclusive leases carry a fencing token (``lease.token``) to pass as
        ``fence=``. ``timeout_s=None`` waits as long as it takes, ``0`` only tries.
        """
        return SyncLease(self, target(self.swarm.name, self.name, name)[0], mode,
                          timeout_s=timeout_s, lease_ms=lease_ms, on_lost=on_lost)

    def delete(self, key: str | MemoryRef, *, expected_version: int | None = None,
                     fence: int | None = None) -> bool:
        """Delete an object; ``False`` if there was none. Announces ``memory_deleted``."""
        k = target(self.swarm.name, self.name, key)[0]
        plan = plan_delete(self.swarm.keys, self.gang.settings, k, self.name,
                           expected_version=expected_version, fence=fence)
        deleted = plan.interpret(self.gang.call("delete", plan.keys, plan.args))
        self._seen.pop(k.full, None)
        return deleted is not None

    def resolve(self, key: str | MemoryRef, *, take: str | None = None,
                      value: Any = None, keep_current: bool = False) -> MemoryRef:
        """Settle the manual conflicts of ``key``.

        ``take=conflict_id`` writes that kept value as the new version; ``value=...`` writes
        a value of your own (say, a merge of both); ``keep_current=True`` discards the kept
        writes (the current value is written again, so that clearing them is part of the same
        atomic write). The write and the clearing of the conflicts are one step, guarded by
        compare-and-set on the current version. Returns the new version's ref.
        """
        k = target(self.swarm.name, self.name, key)[0]
        chosen = sum((take is not None, value is not None, keep_current))
        if chosen != 1:
            raise InvalidValue("resolve needs exactly one of take=, value= or keep_current=True",
                               key=k.full)
        client = self.gang.client
        entries = conflict_entries(client.hgetall(self.swarm.keys.conflicts(k)), k.full)
        if not entries:
            raise NotFound(f"{k.full} (no unresolved conflicts)")
        ids = [c.id for c in entries]
        if take is not None:
            match = [c for c in entries if c.id == take]
            if not match:
                raise NotFound(f"{k.full} conflict {take}")
            value = match[0].value
        current = self.read(k.full)
        current_version = current.version if current else 0
        if keep_current:
            if current is None:
                raise NotFound(k.full)
            value = current.value
        return self.write(k.full, value, expected_version=current_version, _resolve=ids)

    def share_knowledge(self, topic: str, value: Any) -> str:
        """Announce a finding to the swarm as a ``knowledge_shared`` event; returns its id.

        The value travels inside the event (JSON, bounded by max_value_bytes) and stays in
        the swarm's log, so agents that join later can catch up on it.
        """
        validate_name(topic, "topic")
        self.gang.codec.pack(value, key=topic)  # same bounds and type checks as a write
        payload = dumps_json(value)
        if len(payload) > self.gang.codec.max_bytes:
            raise InvalidValue(f"knowledge {topic!r} is {len(payload)} bytes as JSON; the limit "
                               f"is {self.gang.codec.max_bytes}", key=topic)
        ks = self.swarm.keys
        reply = self.gang.call(
            "share", [ks.log, ks.log_n], [self.name, topic, payload, self.gang.settings.log_maxlen,
                                ks.swarm, ks.channel])
        return scripts.text(reply)

    def __repr__(self) -> str:
        return f"AgentMemory({self.swarm.name!r}, {self.name!r})"
