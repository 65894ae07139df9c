# Generated from memgang/_async/gang.py by tools/gen_sync.py: do not edit.
"""Gang, Swarm and AgentMemory: the I/O shell over the sans-I/O core of memgang.memory.

This file is the single implementation; ``memgang/_sync/gang.py`` is generated from it by
``tools/gen_sync.py`` (``make lint`` and ``make test`` check that it is up to date).
"""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import redis.exceptions

from .. import scripts
from .._backends import SyncFunc, SyncRedis, SyncScript, SyncThunk, P
from ..codec import Codec, dumps_json
from ..config import Config
from ..errors import ConnectionLost, Error, InvalidKey, InvalidValue, NotFound, ScriptError
from ..keys import SwarmKeys, validate_name
from ..memo import default_agent
from ..memory import (
    Conflict,
    MemoryObject,
    MemoryRef,
    Scope,
    Settings,
    conflict_entries,
    interpret_read,
    plan_delete,
    plan_write,
    read_call,
    scope_index_keys,
    target,
)
from ..metrics import Stats, parse_hash
from ..server import EmbeddedServer
from . import memo as _memo

_SCOPE_CACHE = 4096
_RETRIES = 4
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
    client = SyncRedis.from_url(
        cfg.url,
        socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.connect_timeout_s,
        health_check_interval=30,
        **cfg.redis_options,
    )
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
        self.scripts: dict[str, SyncScript] = {
            name: client.register_script(src) for name, src in scripts.sources().items()
        }
        # agents whose unflushed counters close() sends before the connection goes
        self.members: weakref.WeakSet[AgentMemory] = weakref.WeakSet()

    @property
    def url(self) -> str:
        assert self.config.url is not None
        return self.config.url

    def swarm(self, name: str) -> Swarm:
        return Swarm(self, name)

    def call(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one script; redis-py errors become memgang errors."""
        try:
            return self.scripts[script](keys=keys, args=args)
        except redis.exceptions.ConnectionError as exc:
            raise ConnectionLost(f"lost Redis during {script}: {exc}") from exc
        except redis.exceptions.TimeoutError as exc:
            raise ConnectionLost(f"Redis timed out during {script}: {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            raise ScriptError(script, str(exc)) from exc

    def close(self) -> None:
        """Close the connections (and stop the embedded server this Gang started)."""
        try:
            for member in list(self.members):
                with contextlib.suppress(Error):
                    member.flush_stats()
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
        self.name = validate_name(name, "swarm")
        self.keys = SwarmKeys(name)

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
        most recently updated first; ``limit`` keeps the N most recently created.

        Index entries of objects that expired or were deleted by other tools are pruned on
        the way. Objects this reader may not see (readable_by, exclusive locks) are left out.
        """
        idx = scope_index_keys(self.keys, agent=agent, group=group, context=context)
        client = self.gang.client
        try:
            members: list[Any]
            if len(idx) == 1:
                members = client.zrevrange(idx[0], 0, -1 if limit is None else limit - 1)
            else:
                members = client.execute_command(  # type: ignore[no-untyped-call]
                    "ZINTER", len(idx), *idx, "AGGREGATE", "MAX")
        except redis.exceptions.RedisError as exc:
            raise ConnectionLost(f"scoped read of {self.name} failed: {exc}") from exc
        out: list[MemoryObject] = []
        missing: list[str] = []
        keys = [scripts.text(m) for m in members]
        with client.pipeline(transaction=False) as pipe:
            for k in keys:
                ks, args = read_call(self.keys, target(self.name, "_", k)[0], reader)
                self.gang.scripts["read"](keys=ks, args=args, client=pipe)
            replies = pipe.execute(raise_on_error=True)
        for k, reply in zip(keys, replies, strict=True):
            if reply[0] == scripts.NOT_FOUND:
                missing.append(k)
            elif reply[0] in (scripts.FORBIDDEN, scripts.LOCKED):
                continue  # not visible to this reader right now
            else:
                obj = interpret_read(reply, k, reader)
                if obj is not None:
                    out.append(obj)
        for k in missing:
            self.gang.call("prune", [k, self.keys.idx_all, *idx], [])
        out.sort(key=lambda o: o.updated_ms, reverse=True)
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

    def stats(self) -> dict[str, dict[str, int]]:
        """Every agent's counters (reads, writes, hits, waits, ...) as kept in Redis."""
        client = self.gang.client
        try:
            names = sorted(m.decode() for m in client.smembers(self.keys.stats_index))
            with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self.keys.stats(name))
                rows = pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise ConnectionLost(f"reading the stats of {self.name} failed: {exc}") from exc
        return {name: parse_hash(row) for name, row in zip(names, rows, strict=True)}

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
        # what this agent last saw of a key: (version, scope); bounded, oldest dropped first
        self._seen: OrderedDict[str, tuple[int, Scope]] = OrderedDict()
        self.stats = Stats()  # counters, flushed to {swarm}/_stats/<name> (memgang.metrics)
        self.gang.members.add(self)

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to one of this agent's counters; flushes them at most once a second."""
        if self.stats.incr(counter, n):
            self.flush_stats()

    def flush_stats(self) -> None:
        """Send the counters not yet in Redis, in one pipelined round trip."""
        pending = self.stats.take()
        if not pending:
            return
        ks = self.swarm.keys
        try:
            with self.gang.client.pipeline(transaction=False) as pipe:
                pipe.sadd(ks.stats_index, self.name)
                for counter, n in pending.items():
                    pipe.hincrby(ks.stats(self.name), counter, n)
                pipe.execute()
        except redis.exceptions.RedisError as exc:
            self.stats.put_back(pending)
            raise ConnectionLost(f"flushing the stats of {self.name} failed: {exc}") from exc

    def compute_once(self, name: str, inputs: Any, fn: SyncThunk[T], **options: Any
                           ) -> T:
        """``fn()``, computed once across the swarm for (``name``, ``inputs``): reused if
        stored, awaited if another agent computes it now. See :func:`memgang.memo`'s shell
        ``compute_once`` for ``ttl_s``, ``lease_s``, ``on_error``, ``wait``, ``timeout_s``."""
        return _memo.compute_once(self, name, inputs, fn, **options)

    def shared(self, ttl_s: float | None = None, **options: Any
               ) -> Callable[[SyncFunc[P, T]], SyncFunc[P, T]]:
        """Decorator form of :meth:`compute_once`, keyed by the function and its arguments."""
        return _memo.shared(self, ttl_s=ttl_s, **options)

    def _remember(self, key: str, version: int, scope: Scope) -> None:
        self._seen[key] = (version, scope)
        self._seen.move_to_end(key)
        if len(self._seen) > _SCOPE_CACHE:
            self._seen.popitem(last=False)

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
        k = target(self.swarm.name, self.name, key)[0]
        seen = self._seen.get(k.full)
        if on_conflict == "manual" and expected_version is None:
            expected_version = seen[0] if seen else 0
        prev = None
        if seen is not None:
            prev = Scope(seen[1].writer, seen[1].group, seen[1].context)
        plan = plan_write(
            self.swarm.keys, self.gang.settings, k, self.name, value,
            on_conflict=on_conflict, expected_version=expected_version, ttl_s=ttl_s,
            group=group, context=context, tags=tags, readable_by=readable_by,
            writable_by=writable_by, derived_from=derived_from, fence=fence, prev=prev,
            resolve_ids=_resolve,
        )
        for _ in range(_RETRIES):
            outcome = plan.interpret(self.gang.call("write", plan.keys, plan.args))
            if isinstance(outcome, MemoryRef):
                old = prev or Scope()
                self._remember(k.full, outcome.version,
                               Scope(self.name, group or old.group, context or old.context))
                self.count("writes")
                return outcome
            plan.retarget(outcome)
            prev = outcome
        raise ScriptError("write", f"scope of {k.full} kept moving under {_RETRIES} retries")

    def write_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        **options: Any,
    ) -> list[MemoryRef]:
        """Write many objects in one pipelined round trip; each write is still atomic.

        ``options`` are the keyword arguments of :meth:`write`, applied to every item.
        Raises the first refusal after all writes were attempted; the others are kept.
        """
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        plans = []
        for key, value in pairs:
            k = target(self.swarm.name, self.name, key)[0]
            seen = self._seen.get(k.full)
            plans.append(plan_write(self.swarm.keys, self.gang.settings, k, self.name, value,
                                    prev=seen[1] if seen else None, **options))
        write = self.gang.scripts["write"]
        try:
            with self.gang.client.pipeline(transaction=False) as pipe:
                for plan in plans:
                    write(keys=plan.keys, args=plan.args, client=pipe)
                replies = pipe.execute(raise_on_error=True)
        except redis.exceptions.ConnectionError as exc:
            raise ConnectionLost(f"lost Redis during write_many: {exc}") from exc
        refs: list[MemoryRef] = []
        first_error: Error | None = None
        for plan, reply in zip(plans, replies, strict=True):
            try:
                outcome = plan.interpret(reply)
                if isinstance(outcome, Scope):  # rare: redo this one alone
                    outcome = self.write(plan.key.full, pairs[len(refs)][1], **options)
            except Error as exc:
                first_error = first_error or exc
                outcome = MemoryRef(plan.key.full, 0)
            refs.append(outcome)
            if outcome.version:
                self.stats.incr("writes")
                self._remember(plan.key.full, outcome.version,
                               Scope(self.name, options.get("group") or "",
                                     options.get("context") or ""))
        if first_error is not None:
            raise first_error
        return refs

    def read(self, ref: str | MemoryRef) -> MemoryObject | None:
        """Read ``id``, ``space/id``, a full key or a MemoryRef; ``None`` if there is none.

        Read through a MemoryRef, the object says ``moved_on`` when a newer version has
        replaced the referenced one.
        """
        obj = _read(self.swarm, self.name, self.name, ref)
        if obj is not None:
            self._remember(obj.key, obj.version,
                           Scope(obj.agent, obj.group or "", obj.context or ""))
        self.count("reads")
        return obj

    def delete(self, key: str | MemoryRef, *, expected_version: int | None = None,
                     fence: int | None = None) -> bool:
        """Delete an object; ``False`` if there was none. Announces ``memory_deleted``."""
        k = target(self.swarm.name, self.name, key)[0]
        seen = self._seen.get(k.full)
        plan = plan_delete(self.swarm.keys, self.gang.settings, k, self.name,
                           expected_version=expected_version, fence=fence,
                           prev=seen[1] if seen else None)
        for _ in range(_RETRIES):
            try:
                outcome = plan.interpret(self.gang.call("delete", plan.keys, plan.args))
            except NotFound:
                self._seen.pop(k.full, None)
                return False
            if isinstance(outcome, int):
                self._seen.pop(k.full, None)
                return True
            plan.retarget(outcome)
        raise ScriptError("delete", f"scope of {k.full} kept moving under {_RETRIES} retries")

    def resolve(self, key: str | MemoryRef, *, take: str | None = None,
                      value: Any = None, keep_current: bool = False) -> MemoryRef | None:
        """Settle the manual conflicts of ``key``.

        ``take=conflict_id`` writes that kept value as the new version; ``value=...`` writes
        a value of your own (say, a merge of both); ``keep_current=True`` discards the kept
        writes. The write and the clearing of the conflicts are one atomic step, guarded by
        compare-and-set on the current version. Returns the new version's ref, or ``None``
        for keep_current.
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
            "share", [ks.log], [self.name, topic, payload, self.gang.settings.log_maxlen,
                                ks.swarm, ks.channel])
        return scripts.text(reply)

    def __repr__(self) -> str:
        return f"AgentMemory({self.swarm.name!r}, {self.name!r})"
