"""Memory objects: the sans-I/O core of write / read / delete / scoped reads.

This module builds the exact KEYS and ARGV of each script call and interprets each reply;
it performs no I/O. The sync shell (``memgang._sync``) and the async shell
(``memgang._async``) only send what it builds and hand back what it returns, so the logic of
every operation exists once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import scripts
from .codec import Codec, dumps_json, loads_json, pack_strings
from .errors import Error, InvalidKey, InvalidValue, ManualConflict
from .keys import INDEX_SEP, Key, SwarmKeys, index_range, parse_full, resolve, validate_name
from .resp import Packed, PartCache, bulk, bulk_pair, bulks

_MAX_TTL_S = 10 * 365 * 86400.0  # finite, and far below Redis's PEXPIRE limit
POLICIES: tuple[str, ...] = ("lww", "merge", "manual")


@dataclass(frozen=True, slots=True)
class MemoryRef:
    """A reference to one version of a memory object: pass this instead of the data."""

    key: str
    version: int

    def __str__(self) -> str:
        return f"{self.key}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> MemoryRef:
        """Parse ``{swarm}/space/id@version``."""
        key, sep, version = text.rpartition("@")
        if not sep or not version.isdigit():
            raise InvalidKey(f"{text!r} is not a reference of the form {{swarm}}/space/id@N",
                             name=text)
        parse_full(key)
        return cls(key, int(version))

    def to_list(self) -> list[Any]:
        return [self.key, self.version]


@dataclass(frozen=True, slots=True)
class MemoryObject:
    """One memory object as read from the store."""

    key: str
    value: Any
    version: int
    agent: str
    created_ms: int
    updated_ms: int
    content_hash: str
    group: str | None = None
    context: str | None = None
    tags: tuple[str, ...] = ()
    readable_by: tuple[str, ...] = ()
    writable_by: tuple[str, ...] = ()
    derived_from: tuple[MemoryRef, ...] = ()
    ttl_ms: int | None = None
    requested_version: int | None = field(default=None, compare=False)

    @property
    def ref(self) -> MemoryRef:
        return MemoryRef(self.key, self.version)

    @property
    def moved_on(self) -> bool:
        """True when read through a reference whose version is no longer the current one."""
        return self.requested_version is not None and self.requested_version != self.version

    @property
    def space(self) -> str:
        return parse_full(self.key).space

    @property
    def id(self) -> str:
        return parse_full(self.key).id


def _names(values: Iterable[str] | None, what: str) -> bytes | str:
    if values is None:
        return ""
    if isinstance(values, str):
        raise InvalidKey(f"{what} must be a list of names, not a string", name=values)
    return dumps_json([validate_name(v, what) for v in values])


def _refs(items: Sequence[MemoryRef | str] | None) -> bytes | str:
    if not items:
        return ""
    out: list[list[Any]] = []
    for item in items:
        ref = item if isinstance(item, MemoryRef) else MemoryRef.parse(item)
        out.append(ref.to_list())
    return dumps_json(out)


@dataclass(slots=True)
class WritePlan:
    """A write of one or more objects (one write.lua call), ready to send.

    ``outcomes`` turns the reply into one MemoryRef or typed error per object;
    ``interpret`` is the single-object form that raises.
    """

    keys_of: list[Key]
    call: Packed  # the write.lua call's KEYS and ARGV
    writer: str
    expected: int | None
    fence: int | None

    def outcomes(self, reply: list[Any]) -> list[MemoryRef | Error]:
        out: list[MemoryRef | Error] = []
        for key, one in zip(self.keys_of, reply, strict=True):
            try:
                out.append(_written(key.full, one, self.writer, self.expected, self.fence))
            except Error as exc:
                out.append(exc)
        return out

    def interpret(self, reply: list[Any]) -> MemoryRef:
        """The new version's MemoryRef; raises the typed error of a refusal."""
        return _written(self.keys_of[0].full, reply[0], self.writer, self.expected,
                        self.fence)


def _written(full: str, reply: int | list[Any], writer: str, expected: int | None,
             fence: int | None) -> MemoryRef:
    """write.lua's reply for one object: its new version (an integer) if written, else
    ``[code, ...]``, raised as its typed error."""
    if isinstance(reply, int):
        return MemoryRef(full, reply)
    if reply[0] == scripts.MANUAL_CONFLICT:
        raise ManualConflict(full, expected=expected, current=int(reply[1]),
                             conflict_id=scripts.text(reply[2]), agent=writer)
    scripts.raise_refusal("write", reply, key=full, agent=writer, expected=expected,
                          fence=fence)


@dataclass(frozen=True, slots=True)
class Settings:
    """Per-Gang bounds used when planning calls."""

    codec: Codec
    log_maxlen: int


def plan_write(ks: SwarmKeys, settings: Settings, key: Key, writer: str, value: Any,
               **options: Any) -> WritePlan:
    """Validate everything and build the write.lua call for one object (no I/O)."""
    return plan_write_many(ks, settings, [(key, value)], writer, **options)


def plan_write_many(
    ks: SwarmKeys,
    settings: Settings,
    items: Sequence[tuple[Key, Any]],
    writer: str,
    *,
    on_conflict: str = "lww",
    expected_version: int | None = None,
    ttl_s: float | None = None,
    group: str | None = None,
    context: str | None = None,
    tags: Iterable[str] | None = None,
    readable_by: Iterable[str] | None = None,
    writable_by: Iterable[str] | None = None,
    derived_from: Sequence[MemoryRef | str] | None = None,
    fence: int | None = None,
    resolve_ids: Sequence[str] = (),
) -> WritePlan:
    """Validate everything and build one write.lua call for ``items`` (key, value) that share
    the options. Nothing here touches Redis; a bad item raises before anything is sent."""
    first = items[0][0].full if items else None
    codec = settings.codec
    shared = _shared_options(ks, settings, writer, on_conflict, ttl_s, group, context, tags,
                             readable_by, writable_by, resolve_ids, first)
    # the last three change from write to write: expected version, derived_from, fence
    if expected_version is None and fence is None and not derived_from:
        options_arg = shared[1]
    else:
        options_arg = bulk(shared[0] + _pack_own(expected_version, derived_from, fence, first))
    if not items:
        raise InvalidValue("nothing to write")
    merge = on_conflict == "merge"
    pack = codec.pack_patch if merge else codec.pack
    head_keys, log_n = _swarm_parts(ks)
    # KEYS: the swarm's seven, each object's four, the log's counter; ARGV: the options,
    # then each object's value and digest
    parts = [head_keys]
    values = [options_arg]
    for key, value in items:
        parts.append(_object_keys(ks, key))
        packed = pack(value, key=key.full)
        # the value's SHA-1 is taken here, not in Lua: hashing is the client's work, and the
        # server's time is shared by every agent (a merged value is made, and hashed, by
        # write.lua)
        values.append(bulk_pair(packed, b"" if merge
                                else hashlib.sha1(packed).hexdigest().encode()))
    parts.append(log_n)
    parts += values
    n = len(items)
    call = Packed(len(ks.write_head) + 4 * n + 1, 1 + 2 * n, b"".join(parts))
    return WritePlan([key for key, _ in items], call, writer, expected_version, fence)


@dataclass(frozen=True, slots=True)
class PlainWrite:
    """One writer's write of one object with every option at its default (last write wins,
    no expiry, no scope, no checks): the call most writes make. The whole ``EVALSHA``
    request but the value is packed once (see :func:`plain_write`; the shell keeps it per
    key), so a write packs and hashes only its value. The bytes are those of
    ``plan_write_many(...).call.evalsha(sha)`` for the same write."""

    key: Key
    writer: str
    head: bytes  # EVALSHA, the SHA-1, KEYS and the options: all but the value's two ARGV
    codec: Codec

    def request(self, value: Any) -> bytes:
        """The whole request writing ``value``; raises InvalidValue naming the key."""
        packed = self.codec.pack(value, key=self.key.full)
        return self.head + bulk_pair(packed, hashlib.sha1(packed).hexdigest().encode())

    def interpret(self, reply: list[Any]) -> MemoryRef:
        """The new version's MemoryRef; raises the typed error of a refusal."""
        one = reply[0]
        if type(one) is int:  # every write that lands
            return MemoryRef(self.key.full, one)
        return _written(self.key.full, one, self.writer, None, None)


def plain_write(ks: SwarmKeys, settings: Settings, key: Key, writer: str, sha: bytes
                ) -> PlainWrite:
    """The :class:`PlainWrite` of ``writer`` at ``key``, for write.lua loaded as ``sha``
    (its 40 hex digits), built from the parts ``plan_write_many`` keeps (the options as it
    validates and keeps them)."""
    options_arg = _shared_options(ks, settings, writer, "lww", None, None, None, None, None,
                                  None, (), key.full)[1]
    head_keys, log_n = _swarm_parts(ks)
    body = b"".join((head_keys, _object_keys(ks, key), log_n, options_arg))
    return PlainWrite(key, writer, Packed(len(ks.write_head) + 5, 3, body).evalsha(sha),
                      settings.codec)


def _shared_options(ks: SwarmKeys, settings: Settings, writer: str, on_conflict: str,
                    ttl_s: float | None, group: str | None, context: str | None,
                    tags: Iterable[str] | None, readable_by: Iterable[str] | None,
                    writable_by: Iterable[str] | None, resolve_ids: Sequence[str],
                    first: str | None) -> tuple[bytes, bytes]:
    """The first 13 of write.lua's 16 options (ARGV[1]), packed, and ARGV[1] ready for a
    write that has none of the last three. Most writes repeat them: they are validated and
    packed once per distinct set (kept by the options as given, when they are plain values:
    None, str, numbers, tuples)."""
    options = (ks.swarm, writer, on_conflict, ttl_s, group, context, tags, readable_by,
               writable_by, resolve_ids, settings.log_maxlen, settings.codec.max_bytes)
    keep = (type(tags) in _PLAIN and type(readable_by) in _PLAIN
            and type(writable_by) in _PLAIN and type(resolve_ids) in _PLAIN)
    if keep:
        try:
            shared = _OPTIONS.get(options)
        except TypeError:  # an option that cannot be a dict key: a bad one, named below
            keep = False
        else:
            if shared is not None:
                return shared
    packed_options = _pack_options(ks, settings, writer, on_conflict, ttl_s, group, context,
                                   tags, readable_by, writable_by, resolve_ids, first)
    shared = (packed_options, bulk(packed_options + _NO_VERSION_REFS_FENCE))
    if keep:
        _OPTIONS.put(options, shared)
    return shared


def _pack_options(ks: SwarmKeys, settings: Settings, writer: str, on_conflict: str,
                  ttl_s: float | None, group: str | None, context: str | None,
                  tags: Iterable[str] | None, readable_by: Iterable[str] | None,
                  writable_by: Iterable[str] | None, resolve_ids: Sequence[str],
                  first: str | None) -> bytes:
    """The first 13 of write.lua's options, validated, as a msgpack stream of strings."""
    if on_conflict not in POLICIES:
        raise InvalidValue(f"on_conflict must be one of {', '.join(POLICIES)}, "
                           f"got {on_conflict!r}", key=first)
    ttl_ms = ""
    if ttl_s is not None:
        if not isinstance(ttl_s, (int, float)) or not 0 < ttl_s < _MAX_TTL_S:
            raise InvalidValue(f"ttl_s must be a positive number, got {ttl_s!r}", key=first)
        ttl_ms = str(max(1, round(ttl_s * 1000)))
    if group is not None:
        validate_name(group, "group")
    if context is not None:
        validate_name(context, "context")
    options = (writer, on_conflict, ttl_ms, group or "", context or "",
               _names(tags, "tag"), _names(readable_by, "readable_by"),
               _names(writable_by, "writable_by"),
               settings.log_maxlen, settings.codec.max_bytes, ks.swarm, ks.channel,
               ",".join(resolve_ids))
    assert len(options) == _N_OPTIONS
    return pack_strings(options)


def _pack_own(expected_version: int | None, derived_from: Sequence[MemoryRef | str] | None,
              fence: int | None, first: str | None) -> bytes:
    """The last 3 of write.lua's options, validated, as a msgpack stream of strings."""
    if expected_version is not None and (
        not isinstance(expected_version, int) or isinstance(expected_version, bool)
        or expected_version < 0
    ):
        raise InvalidValue(f"expected_version must be a non-negative int, "
                           f"got {expected_version!r}", key=first)
    if fence is not None and (not isinstance(fence, int) or isinstance(fence, bool)
                              or fence < 1):
        raise InvalidValue(f"fence must be a positive int token, got {fence!r}", key=first)
    return pack_strings(("" if expected_version is None else expected_version,
                         _refs(derived_from), "" if fence is None else fence))


_N_OPTIONS = 13  # the first 13 of write.lua's 16 options (ARGV[1])
_NO_VERSION_REFS_FENCE = pack_strings(("", "", ""))  # the last three of most writes
_PLAIN = frozenset({type(None), tuple})  # option types kept by value in _OPTIONS

# packed parts of write.lua calls (memgang.resp): the options of recent writes, the KEYS of
# recent objects, each swarm's own KEYS
_OPTIONS: PartCache[tuple[bytes, bytes]] = PartCache(1024)
_OBJECT_KEYS: PartCache[bytes] = PartCache(8192)
_SWARM_KEYS: PartCache[tuple[bytes, bytes]] = PartCache(1024)


def _object_keys(ks: SwarmKeys, key: Key) -> bytes:
    """The four KEYS of one object in a write.lua call, packed (kept by the swarm whose
    keys they are built with, and the object's key)."""
    what = (ks.swarm, key.full)
    return _OBJECT_KEYS.get(what) or _OBJECT_KEYS.put(
        what, bulks((key.full, ks.lock(key), ks.fence(key), ks.conflicts(key))))


def _swarm_parts(ks: SwarmKeys) -> tuple[bytes, bytes]:
    """The swarm's KEYS of a write.lua call, packed: the seven first ones, and the last."""
    return _SWARM_KEYS.get(ks.swarm) or _SWARM_KEYS.put(
        ks.swarm, (bulks(ks.write_head), bulk(ks.log_n)))


@dataclass(slots=True)
class DeletePlan:
    keys: list[str]
    args: list[Any]
    agent: str
    expected: int | None
    fence: int | None

    def interpret(self, reply: list[Any]) -> int | None:
        """The deleted version, ``None`` if there was no object; raises for every refusal."""
        code = reply[0]
        if code == scripts.OK:
            return int(reply[1])
        if code == scripts.NOT_FOUND:
            return None
        scripts.raise_refusal("delete", reply, key=self.keys[0], agent=self.agent,
                              expected=self.expected, fence=self.fence)


def plan_delete(ks: SwarmKeys, settings: Settings, key: Key, agent: str, *,
                expected_version: int | None = None, fence: int | None = None) -> DeletePlan:
    keys = [key.full, ks.log, ks.idx_all, ks.idx_agent, ks.idx_group, ks.idx_context,
            ks.lock(key), ks.fence(key), ks.log_n]
    args: list[Any] = [
        agent, "" if expected_version is None else expected_version,
        "" if fence is None else fence, settings.log_maxlen, ks.swarm, ks.channel,
    ]
    return DeletePlan(keys, args, agent, expected_version, fence)


def read_call(ks: SwarmKeys, key: Key, reader: str) -> tuple[list[str], list[str]]:
    return [key.full, ks.lock(key)], [reader]


def prune_call(ks: SwarmKeys, key: str, kind: str, cause: str, log_maxlen: int,
               found: Sequence[str] = ("", "", "")) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of prune.lua for the vanished (or stale) object at full key ``key``;
    ``found``: the writer, group and context under which its index entries were found."""
    return ([key, ks.log, ks.idx_all, ks.idx_agent, ks.idx_group, ks.idx_context, ks.log_n],
            [kind, cause, log_maxlen, ks.swarm, ks.channel, *found])


def observe_call(ks: SwarmKeys, key: str, log_maxlen: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of observe.lua for a value changed behind memgang's back."""
    return [key, ks.seq, ks.log, ks.idx_all, ks.log_n], [log_maxlen, ks.swarm, ks.channel]


def _s(value: Any) -> str | None:
    return scripts.text(value) if value else None


def _names_of(raw: Any) -> tuple[str, ...]:
    return tuple(loads_json(raw)) if raw else ()


def interpret_read(reply: list[Any], key: str, reader: str,
                   requested_version: int | None = None) -> MemoryObject | None:
    """A MemoryObject, ``None`` when there is no such object, or the typed refusal."""
    if isinstance(reply[0], int):  # a refusal (an object's reply starts with its value)
        if reply[0] == scripts.NOT_FOUND:
            return None
        scripts.raise_refusal("read", reply, key=key, agent=reader)
    (v, ver, agent, ctime, mtime, digest, group, ctx, tags, rb, wb, df, pttl) = reply
    try:
        return MemoryObject(
            key=key,
            value=Codec.unpack(v),
            version=int(ver),
            agent=scripts.text(agent) if agent else "",
            created_ms=int(ctime or 0),
            updated_ms=int(mtime or 0),
            content_hash=digest.decode() if digest else "",
            group=_s(group),
            context=_s(ctx),
            tags=_names_of(tags),
            readable_by=_names_of(rb),
            writable_by=_names_of(wb),
            derived_from=tuple(MemoryRef(k, int(n)) for k, n in loads_json(df)) if df else (),
            ttl_ms=None if int(pttl) < 0 else int(pttl),
            requested_version=requested_version,
        )
    except (TypeError, ValueError) as exc:  # msgpack's and orjson's errors are ValueErrors
        what = "has no value" if v is None else f"cannot be decoded ({type(exc).__name__}: {exc})"
        raise InvalidValue(f"{key} {what}: its stored fields were changed by something other "
                           "than memgang", key=key) from exc


@dataclass(frozen=True, slots=True)
class ScopeQuery:
    """A scoped read: the index ranges to intersect and the filter the results must pass."""

    agent: str | None = None
    group: str | None = None
    context: str | None = None

    def __post_init__(self) -> None:
        for what in ("agent", "group", "context"):
            value = getattr(self, what)
            if value is not None:
                validate_name(value, what)

    def ranges(self, ks: SwarmKeys) -> list[tuple[str, str, str]]:
        """(index key, lex min, lex max) for each dimension given; empty = every object."""
        out = []
        for idx, value in ((ks.idx_agent, self.agent), (ks.idx_group, self.group),
                           (ks.idx_context, self.context)):
            if value is not None:
                out.append((idx, *index_range(value)))
        return out

    def matches(self, obj: MemoryObject) -> bool:
        """False for an index entry left behind by an earlier object at the same key."""
        return ((self.agent is None or obj.agent == self.agent)
                and (self.group is None or obj.group == self.group)
                and (self.context is None or obj.context == self.context))

    def prune_args(self) -> list[str]:
        return [self.agent or "", self.group or "", self.context or ""]


def members_to_keys(members: Iterable[Any]) -> set[str]:
    """Full keys from ``"<value>\\0<key>"`` index members."""
    return {scripts.text(m).partition(INDEX_SEP)[2] for m in members}


def target(swarm: str, own_space: str, ref: str | MemoryRef) -> tuple[Key, int | None]:
    """Resolve a key argument: ``id``, ``space/id``, a full key, or a MemoryRef."""
    if isinstance(ref, MemoryRef):
        return resolve(swarm, own_space, ref.key), ref.version
    return resolve(swarm, own_space, ref), None


def conflict_entries(raw: Mapping[Any, Any], key: str) -> list[Conflict]:
    """Parse the conflicts hash of one key into Conflict records, oldest first."""
    metas: dict[str, Any] = {}
    values: dict[str, bytes] = {}
    for f, v in raw.items():
        cid, _, kind = scripts.text(f).partition(":")
        if kind == "m":
            metas[cid] = loads_json(v)
        elif kind == "v":
            values[cid] = v
    out = []
    for cid in sorted(metas, key=int):
        m = metas[cid]
        out.append(Conflict(
            id=cid, key=key, agent=m["agent"], base_version=int(m["base"]),
            current_version=int(m["current"]), ts_ms=int(m["ts"]),
            value=Codec.unpack(values[cid]) if cid in values else None,
        ))
    return out


@dataclass(frozen=True, slots=True)
class Conflict:
    """A losing write kept under on_conflict="manual", waiting for resolve()."""

    id: str
    key: str
    agent: str
    base_version: int
    current_version: int
    ts_ms: int
    value: Any


__all__ = [
    "POLICIES",
    "Conflict",
    "DeletePlan",
    "MemoryObject",
    "MemoryRef",
    "PlainWrite",
    "ScopeQuery",
    "Settings",
    "WritePlan",
    "conflict_entries",
    "interpret_read",
    "members_to_keys",
    "observe_call",
    "plain_write",
    "plan_delete",
    "plan_write",
    "plan_write_many",
    "prune_call",
    "read_call",
    "target",
]
