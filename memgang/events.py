"""Events, and how every subscriber gets each one exactly once, in order: the sans-I/O core.

Where events come from
----------------------
Every committed change runs ONE Lua script that also appends the event to the swarm's log
(a stream, ``{swarm}/_log``: field ``e`` is the event JSON without its id, field ``n`` its
position) and PUBLISHes the same JSON, with ``"id"`` (the log entry id) and ``"n"``, on the
swarm's channel (``{swarm}/_events``). ``n`` counts the log's entries: 1, 2, 3, ... So the log
id orders events, and ``n`` tells whether any are missing between two of them.

How a subscriber gets them (memgang/_async/events.py does the I/O)
-------------------------------------------------------------------
Live events arrive over pub/sub, through one connection per Gang shared by all subscribers
(the hub), into a bounded queue per subscriber. The :class:`Delivery` state machine below
decides, for one subscriber, what to hand over:

* it remembers, per swarm, the id and ``n`` of the last event handed over (the cursor);
* a live event whose ``n`` follows the cursor's is handed over; one at or before the
  cursor is a duplicate (dropped); one whose ``n`` jumps ahead means messages were lost, and
  the swarm is marked for **catch-up**;
* after a reconnect, or when the subscriber's queue overflowed (the hub stops filling a
  full queue and flags it), every swarm is marked for catch-up;
* catch-up reads the log after the cursor (``XRANGE (cursor +``) in batches, while live
  events wait in the queue; once the log is exhausted the queue is read again, and live
  events already replayed from the log are dropped as duplicates. So an event that arrives
  by both paths is handed over once, and none falls between them: live delivery is always
  resumed *before* the log is read;
* if the log was trimmed past the cursor, the first entry's ``n`` says exactly how many
  events are gone: an :class:`~memgang.errors.EventGap` is produced, in order, just before
  the first event after the hole (``on_gap="raise"`` raises it from the iterator, which may
  be resumed; ``"event"`` hands over an Event of type ``event_gap``; ``"log"`` logs a
  warning). Gaps are never skipped silently.

Keyspace notifications
----------------------
Expiry, eviction and changes made by other tools (``redis-cli HSET``/``DEL``) are turned into
``memory_expired`` / ``memory_updated`` / ``memory_deleted`` events with ``agent: null``, and
these are **appended to the log** like any other event (so they are caught up, ordered and
numbered like the rest), by the scripts ``lua/observe.lua`` and ``lua/prune.lua``. Every
subscribed process sees the notification and runs the script, but the script decides from
the store's state, atomically, and fixes that state as it announces, so each change is logged
once. :class:`KeyspaceTracker` keeps memgang's own writes from costing a script call; see its
docstring. Limits, inherent to notifications: a change made while no process is subscribed,
or during a reconnect, is never seen (Redis does not keep notifications); a foreign change that
memgang overwrites or deletes before a watcher converts it (about a round trip) is reported
only by what followed; an object found gone by ``read_scope`` before any watcher noticed is
announced as ``memory_expired`` with ``cause: "vanished"``.
"""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import orjson

from . import scripts
from .codec import dumps_json, loads_json
from .errors import EventGap, InvalidKey, InvalidValue, MalformedEvent
from .keys import parse_full
from .memory import MemoryRef

if TYPE_CHECKING:
    from typing_extensions import TypedDict
else:
    from typing import TypedDict

#: Every event type memgang emits, plus GAP (a gap notice handed over with on_gap="event").
EVENT_TYPES: frozenset[str] = frozenset({
    "memory_updated", "memory_deleted", "memory_expired", "knowledge_shared",
    "lock_acquired", "lock_released", "lock_expired", "conflict_detected", "sync_complete",
    "agent_joined", "agent_left",
})
GAP = "event_gap"

StreamId: TypeAlias = tuple[int, int]
MAX_SEQ = (1 << 64) - 1
ZERO: StreamId = (0, 0)

OnGap = Literal["raise", "event", "log"]
ON_GAP: tuple[str, ...] = ("raise", "event", "log")

_KNOWN = frozenset({"id", "n", "type", "swarm", "key", "agent", "version", "ts", "scope"})


def parse_id(text: str | bytes) -> StreamId | None:
    """``"ms-seq"`` (or ``"ms"``) as a comparable tuple; ``None`` if it is not a stream id."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    ms, sep, seq = text.partition("-")
    if not ms.isdigit() or (sep and not seq.isdigit()):
        return None
    sid = int(ms), int(seq) if sep else 0
    if sid[0] > MAX_SEQ or sid[1] > MAX_SEQ:  # Redis stream ids are two unsigned 64-bit numbers
        return None
    return sid


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


def id_before(sid: StreamId) -> StreamId:
    """The largest stream id smaller than ``sid`` (for inclusive-start reads)."""
    ms, seq = sid
    if seq > 0:
        return ms, seq - 1
    return (ms - 1, MAX_SEQ) if ms > 0 else ZERO


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a swarm, as published and as kept in its log.

    ``id`` is the log entry id (``"<ms>-<seq>"``); events of a swarm order by it (``<``
    compares ``sid``). ``n`` is the entry's position in the log (``None`` for messages that
    did not come from memgang's scripts). ``key`` is the full key of the object (or lock)
    concerned, ``None`` for events about no key; ``agent`` is ``None`` when no agent made
    the change (expiry, another tool). ``data`` holds the type-specific fields (``size``,
    ``derived_from``, ``topic``, ``value``, ``cause``, ...); ``raw`` is the JSON with ``id``
    and ``n``, as ``redis-cli SUBSCRIBE`` shows it.
    """

    id: str
    type: str
    swarm: str
    key: str | None = None
    agent: str | None = None
    version: int = 0
    ts_ms: int = 0
    n: int | None = None
    group: str | None = None
    context: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)
    raw: str = field(default="", compare=False, repr=False)
    sid: StreamId = field(default=ZERO, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.sid == ZERO:
            sid = parse_id(self.id)
            if sid is None:
                raise MalformedEvent(f"id {self.id!r} is not a stream id")
            object.__setattr__(self, "sid", sid)

    def __lt__(self, other: Event) -> bool:
        return self.sid < other.sid

    @property
    def scope(self) -> dict[str, str | None]:
        return {"group": self.group, "context": self.context}

    @property
    def ref(self) -> MemoryRef | None:
        """A reference to the version this event announces (memory events only)."""
        if self.key is None or not self.version or not self.type.startswith("memory_"):
            return None
        return MemoryRef(self.key, self.version)

    @property
    def value(self) -> Any:
        """The value carried by a ``knowledge_shared`` event (``None`` otherwise)."""
        return self.data.get("value")

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (what ``memgang watch --json`` prints)."""
        if self.raw:
            out: dict[str, Any] = loads_json(self.raw)
            return out
        return {"id": self.id, "n": self.n, "type": self.type, "swarm": self.swarm,
                "key": self.key, "agent": self.agent, "version": self.version,
                "ts": self.ts_ms, "scope": self.scope, **self.data}

    def to_json(self) -> str:
        return self.raw or dumps_json(self.to_dict()).decode()


def _text(value: Any, what: str, where: str, payload: bytes | str, *, optional: bool
          ) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{what} must be a non-empty string, got {value!r}", where=where,
                             payload=payload)
    return value


def _int(value: Any, what: str, where: str, payload: bytes | str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvent(f"{what} must be an integer, got {value!r}", where=where,
                             payload=payload)
    return value


def _ok_name(value: Any) -> bool:
    return value is None or (type(value) is str and value != "")


def _build(d: Any, *, id_: str | None, sid: StreamId | None, n: int | None, raw: str,
           where: str, payload: bytes | str) -> Event:
    """The Event in ``d``: a fast path for well-formed events (the hub parses every
    message once for all its listeners), the checks below for a precise error otherwise."""
    if type(d) is dict:
        get = d.get
        fid, fsid, fn = id_, sid, n
        if fid is None:
            fid, fn = get("id"), get("n")
            fsid = parse_id(fid) if type(fid) is str else None
        kind, swarm, key, agent = get("type"), get("swarm"), get("key"), get("agent")
        version, ts, scope = get("version", 0), get("ts", 0), get("scope")
        if (fsid is not None and type(kind) is str and kind and type(swarm) is str and swarm
                and _ok_name(key) and _ok_name(agent) and type(version) is int
                and type(ts) is int and (fn is None or type(fn) is int)
                and (scope is None or type(scope) is dict)):
            group = context = None
            if scope:
                group, context = scope.get("group"), scope.get("context")
            if (group is None or type(group) is str) and (context is None or type(context) is str):
                data = {k: v for k, v in d.items() if k not in _KNOWN}
                assert fid is not None
                return Event(fid, kind, swarm, key, agent, version, ts, fn, group or None,
                             context or None, data, raw, fsid)
    return _build_checked(d, id_=id_, sid=sid, n=n, raw=raw, where=where, payload=payload)


def _build_checked(d: Any, *, id_: str | None, sid: StreamId | None, n: int | None, raw: str,
                   where: str, payload: bytes | str) -> Event:
    if not isinstance(d, dict):
        raise MalformedEvent("not a JSON object", where=where, payload=payload)
    if id_ is None:
        id_ = _text(d.get("id"), "id", where, payload, optional=False)
        assert id_ is not None
        sid = parse_id(id_)
        if sid is None:
            raise MalformedEvent(f"id {id_!r} is not a stream id", where=where, payload=payload)
        raw_n = d.get("n")
        n = None if raw_n is None else _int(raw_n, "n", where, payload)
    kind = _text(d.get("type"), "type", where, payload, optional=False)
    swarm = _text(d.get("swarm"), "swarm", where, payload, optional=False)
    key = _text(d.get("key"), "key", where, payload, optional=True)
    agent = _text(d.get("agent"), "agent", where, payload, optional=True)
    version = _int(d.get("version", 0), "version", where, payload)
    ts = _int(d.get("ts", 0), "ts", where, payload)
    scope = d.get("scope") or {}
    if not isinstance(scope, dict):
        raise MalformedEvent("scope must be an object", where=where, payload=payload)
    group, context = scope.get("group"), scope.get("context")
    if not isinstance(group, (str, type(None))) or not isinstance(context, (str, type(None))):
        raise MalformedEvent("scope group/context must be strings or null", where=where,
                             payload=payload)
    data = {k: v for k, v in d.items() if k not in _KNOWN}
    assert kind is not None and swarm is not None and sid is not None
    return Event(id_, kind, swarm, key, agent, version, ts, n, group or None, context or None,
                 data, raw, sid)


def parse_message(payload: bytes | str, *, where: str = "") -> Event:
    """An event as published on a swarm channel; raises :class:`MalformedEvent`."""
    try:
        d = loads_json(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON ({exc})", where=where, payload=payload) from exc
    raw = payload if isinstance(payload, str) else payload.decode()
    return _build(d, id_=None, sid=None, n=None, raw=raw, where=where, payload=payload)


def parse_entry(swarm: str, entry_id: bytes | str, fields: Mapping[Any, Any]) -> Event:
    """An entry of a swarm's log (as redis-py returns XRANGE); raises MalformedEvent."""
    eid = scripts.text(entry_id)
    sid = parse_id(eid)
    body = fields.get(b"e")
    if body is None:
        body = fields.get("e")
    if sid is None or body is None:
        raise MalformedEvent("no event field 'e'" if sid else "bad entry id",
                             where=_in_log(swarm, eid), payload=repr(dict(fields))[:200])
    n = _n_of(fields)
    body_s = scripts.text(body)
    try:
        d = loads_json(body_s)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON ({exc})", where=_in_log(swarm, eid),
                             payload=body_s) from exc
    head = f'{{"id":"{eid}"' if n is None else f'{{"id":"{eid}","n":{n}'
    raw = head + ("," + body_s[1:] if len(body_s) > 2 else "}")
    try:
        event = _build(d, id_=eid, sid=sid, n=n, raw=raw, where="", payload=body_s)
        if event.swarm != swarm:
            raise MalformedEvent(f"names swarm {event.swarm!r}, not {swarm!r}")
    except MalformedEvent as exc:
        raise MalformedEvent(exc.reason, where=_in_log(swarm, eid), payload=body_s) from None
    return event


def _in_log(swarm: str, eid: str) -> str:
    return f"the log of {swarm} ({eid})"


def _n_of(fields: Mapping[Any, Any]) -> int | None:
    raw_n = fields.get(b"n")
    if raw_n is None:
        raw_n = fields.get("n")
    if raw_n is None:
        return None
    try:
        return int(raw_n)
    except (TypeError, ValueError):
        return None


def entry_position(entry_id: bytes | str, fields: Mapping[Any, Any]
                   ) -> tuple[StreamId, int | None]:
    """(id, n) of a log entry even when its event cannot be parsed (to step over it)."""
    return parse_id(entry_id) or ZERO, _n_of(fields)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A log entry that is not a valid event: stepped over (and reported), never delivered."""

    sid: StreamId
    n: int | None
    error: MalformedEvent


# --- filters -----------------------------------------------------------------------------------

def _names(value: str | Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidValue(f"{what} must be a non-empty string or a list of them, "
                               f"got {item!r}")
    return frozenset(items)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants. Every given criterion must hold; gap notices always
    pass. ``match`` is a glob (fnmatch, case-sensitive) on the key: on the full key
    ``{swarm}/space/id`` if it starts with ``{``, else on ``space/id``; events without a key
    never match it."""

    types: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    group: str | None = None
    context: str | None = None
    match: str | None = None
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    full_key: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def build(cls, types: str | Iterable[str] | None = None, *,
              agent: str | Iterable[str] | None = None, group: str | None = None,
              context: str | None = None, match: str | None = None) -> EventFilter:
        kinds = _names(types, "types")
        if kinds is not None:
            unknown = sorted(kinds - EVENT_TYPES - {GAP})
            if unknown:
                raise InvalidValue(f"unknown event type(s) {', '.join(unknown)}: known are "
                                   f"{', '.join(sorted(EVENT_TYPES))}")
        for what, value in (("group", group), ("context", context), ("match", match)):
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidValue(f"{what} must be a non-empty string, got {value!r}")
        regex = re.compile(fnmatch.translate(match)) if match else None
        return cls(kinds, _names(agent, "agent"), group, context, match, regex,
                   bool(match and match.startswith("{")))

    def matches(self, event: Event) -> bool:
        if event.type == GAP:
            return True
        if self.types is not None and event.type not in self.types:
            return False
        if self.agents is not None and event.agent not in self.agents:
            return False
        if self.group is not None and event.group != self.group:
            return False
        if self.context is not None and event.context != self.context:
            return False
        if self.regex is not None:
            key = event.key
            if key is None:
                return False
            if not self.full_key and key.startswith("{"):
                key = key[key.find("}/") + 2:]
            return self.regex.match(key) is not None
        return True

    @property
    def everything(self) -> bool:
        """True when nothing is filtered out."""
        return (self.types is None and self.agents is None and self.group is None
                and self.context is None and self.match is None)


# --- where a subscription starts ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Since:
    """``now`` (the default: events after the subscription starts), ``start`` (everything
    the log still holds) or ``id`` (events after that log id)."""

    kind: Literal["now", "start", "id"]
    sid: StreamId = ZERO

    @property
    def id(self) -> str:
        return format_id(self.sid)


def parse_since(since: str | None) -> Since:
    if since is None or since == "now":
        return Since("now")
    if since in ("start", "0", "0-0", "-"):
        return Since("start")
    sid = parse_id(since) if isinstance(since, str) else None
    if sid is None:
        raise InvalidValue(f"since must be None, 'now', 'start' or a log id like "
                           f"'1718000000000-0', got {since!r}")
    return Since("id", sid)


# --- delivery ---------------------------------------------------------------------------------

@dataclass(slots=True)
class Cursor:
    """Where one subscriber is in one swarm's log."""

    sid: StreamId = ZERO
    n: int | None = 0          # n of the last event handed over; None: not known (yet)
    from_start: bool = False   # since="start": the first entry read is taken as it is
    resolve: bool = False      # n must be looked up (the entry at or before sid) first
    approx: bool = False       # n was inferred (no entry at or before sid was left)

    @property
    def id(self) -> str:
        return format_id(self.sid)


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Read ``count`` log entries of ``swarm`` after ``after`` (``None``: from the start);
    with ``resolve``, also the entry at or before ``after``. Always also the log's tail."""

    swarm: str
    after: str | None
    resolve: bool
    count: int


@dataclass(frozen=True, slots=True)
class Discover:
    """Find every swarm that has a log (``SCAN MATCH {*}/_log``): all-swarm subscribers."""


@dataclass(slots=True)
class DeliveryStats:
    delivered: int = 0      # handed over (after filtering)
    live: int = 0           # accepted from pub/sub
    replayed: int = 0       # accepted from the log
    duplicates: int = 0     # dropped: already handed over
    catchups: int = 0       # log reads
    resyncs: int = 0        # reconnects or queue overflows that required a catch-up
    gaps: int = 0
    skipped: int = 0        # malformed log entries stepped over


class Delivery:
    """Exactly-once, in-order delivery for one subscriber (sans-I/O).

    The I/O shell feeds it live events (:meth:`live`), tells it when live delivery was
    interrupted (:meth:`resync`), performs the reads it asks for (:meth:`next_request` ->
    :meth:`caught_up` / :meth:`discovered`) and hands over what :meth:`pop` returns. Live
    events must only be fed while :meth:`needs_io` is False.
    """

    def __init__(self, swarms: Sequence[str] | None, since: Since, filt: EventFilter, *,
                 batch: int = 1000) -> None:
        if batch < 1:
            raise InvalidValue(f"batch must be positive, got {batch}")
        self.all_swarms = swarms is None
        self.since = since
        self.filter = filt
        self._everything = filt.everything
        self.batch = batch
        self.cursors: dict[str, Cursor] = {}
        self.pending: dict[str, None] = {}
        self.discover = False
        self.ready: deque[Event | EventGap] = deque()
        self.stats = DeliveryStats()
        self.start_sid: StreamId = ZERO
        self._swarms = list(swarms or ())

    # -- starting ---------------------------------------------------------------------------------
    def begin(self, tails: Mapping[str, Event | StreamId | None], now_ms: int) -> None:
        """Set the cursors once subscribed: ``tails`` is the last entry of each named swarm's
        log (for since="now"; an unparsable entry may be given as its (id, n)); ``now_ms`` the
        server's time (all-swarm subscribers: swarms first seen after a resync start there)."""
        since = self.since
        if since.kind == "now":
            self.start_sid = id_before((now_ms, 0))
        else:
            self.start_sid = since.sid
        for swarm in self._swarms:
            if since.kind == "now":
                tail = tails.get(swarm)
                if isinstance(tail, Event):
                    self.cursors[swarm] = Cursor(tail.sid, tail.n)
                elif tail is not None:
                    self.cursors[swarm] = Cursor(tail, None)
                else:
                    self.cursors[swarm] = Cursor(ZERO, 0)
            else:
                self._add(swarm)
        if self.all_swarms and since.kind != "now":
            self.discover = True

    def _add(self, swarm: str) -> None:
        since = self.since
        if since.kind == "start":
            self.cursors[swarm] = Cursor(ZERO, None, from_start=True)
        else:
            self.cursors[swarm] = Cursor(self.start_sid, None, resolve=True)
        self.pending[swarm] = None

    @property
    def last_id(self) -> str | None:
        """Id of the last event handed over (or skipped past) of a single-swarm subscriber."""
        if len(self.cursors) != 1:
            return None
        cursor = next(iter(self.cursors.values()))
        return cursor.id if cursor.sid != ZERO else None

    # -- live --------------------------------------------------------------------------------------
    def live(self, event: Event) -> None:
        cursor = self.cursors.get(event.swarm)
        if cursor is None:
            if not self.all_swarms:
                return  # not ours (cannot happen: the hub routes by channel)
            self.cursors[event.swarm] = Cursor(event.sid, event.n)
            self._accept(event, live=True)
            return
        if event.swarm in self.pending:
            return  # the log will hand it over
        if event.sid <= cursor.sid:
            self.stats.duplicates += 1
            return
        if cursor.n is not None and event.n is not None and event.n != cursor.n + 1:
            # a jump ahead: live messages were lost; a step back: the log was reset.
            # Either way the log knows what happened.
            self.pending[event.swarm] = None
            return
        cursor.sid, cursor.n = event.sid, event.n
        self._accept(event, live=True)

    def resync(self) -> None:
        """Live delivery was interrupted (reconnect, queue overflow): re-read every log."""
        self.stats.resyncs += 1
        for swarm in self.cursors:
            self.pending[swarm] = None
        if self.all_swarms:
            self.discover = True

    # -- catch-up ----------------------------------------------------------------------------------
    def needs_io(self) -> bool:
        return bool(self.pending) or self.discover

    def next_request(self) -> CatchUp | Discover | None:
        if self.discover:
            return Discover()
        for swarm in self.pending:
            cursor = self.cursors[swarm]
            after = None if cursor.from_start and cursor.sid == ZERO else cursor.id
            return CatchUp(swarm, after, cursor.resolve, self.batch)
        return None

    def discovered(self, swarms: Iterable[str]) -> None:
        self.discover = False
        for swarm in swarms:
            if swarm not in self.cursors:
                self._add(swarm)

    def caught_up(self, swarm: str, entries: Sequence[Event | Skipped],
                  tail: Event | StreamId | None, before: Event | StreamId | None = None) -> None:
        """Feed the reply of a :class:`CatchUp`: the entries after the cursor, the log's last
        entry, and (if ``resolve`` was asked) the entry at or before the cursor."""
        cursor = self.cursors[swarm]
        self.stats.catchups += 1
        if cursor.resolve:
            cursor.resolve = False
            if before is None:
                cursor.n, cursor.approx = 0, True
            else:
                cursor.n = before.n if isinstance(before, Event) else None
        for entry in entries:
            if entry.sid <= cursor.sid:
                continue
            if cursor.from_start:
                cursor.from_start = False
            elif cursor.n is not None and entry.n is not None and entry.n != cursor.n + 1:
                self._gap(swarm, cursor, entry)
            cursor.sid, cursor.n, cursor.approx = entry.sid, entry.n, False
            if isinstance(entry, Skipped):
                self.stats.skipped += 1
            else:
                self._accept(entry, live=False)
        if len(entries) >= self.batch:
            return  # more to read
        self.pending.pop(swarm, None)
        if entries:
            return
        tail_sid = tail.sid if isinstance(tail, Event) else tail
        if tail_sid is not None and tail_sid < cursor.sid:
            # the log went back in time: the server lost entries it had published (restart
            # without persistence of the last writes). Follow it from its new end.
            tail_n = tail.n if isinstance(tail, Event) else None
            cursor.sid, cursor.n = tail_sid, tail_n
        elif tail_sid is None and cursor.n and not cursor.approx:
            self.ready.append(EventGap(
                swarm, last_seen=cursor.id, oldest=None,
                detail="the log is gone (deleted, or the server lost its data); events "
                       "written after the last one seen may be lost"))
            self.stats.gaps += 1
            cursor.n = 0

    def _gap(self, swarm: str, cursor: Cursor, entry: Event | Skipped) -> None:
        assert cursor.n is not None and entry.n is not None
        oldest = format_id(entry.sid)
        if entry.n <= cursor.n:
            gap = EventGap(swarm, last_seen=cursor.id, oldest=oldest,
                           detail="the log was reset (deleted, or the server restarted "
                                  "without its data)")
        elif cursor.approx:
            gap = EventGap(swarm, last_seen=cursor.id, oldest=oldest,
                           detail=f"the log no longer reaches back to {cursor.id}; up to "
                                  f"{entry.n - 1} earlier events were trimmed")
        else:
            missing = entry.n - cursor.n - 1
            gap = EventGap(swarm, last_seen=cursor.id, oldest=oldest, missing=missing,
                           detail="the log was trimmed (raise log_maxlen, or consume "
                                  "faster)")
        self.stats.gaps += 1
        self.ready.append(gap)

    def _accept(self, event: Event, *, live: bool) -> None:
        if live:
            self.stats.live += 1
        else:
            self.stats.replayed += 1
        self.ready.append(event)

    # -- handing over ------------------------------------------------------------------------------
    def pop(self) -> Event | EventGap | None:
        """The next event (matching the filter) or gap to hand over, or None."""
        ready = self.ready
        everything, match = self._everything, self.filter.matches
        while ready:
            item = ready.popleft()
            if type(item) is not Event:
                return item
            if everything or match(item):
                self.stats.delivered += 1
                return item
        return None


def gap_event(gap: EventGap) -> Event:
    """A gap as an Event of type ``event_gap`` (``on_gap="event"``): it carries the id of the
    first event after the hole (which it precedes) and ``data`` = missing, last_seen,
    detail."""
    sid = parse_id(gap.oldest) if gap.oldest else parse_id(gap.last_seen)
    data = {"missing": gap.missing, "last_seen": gap.last_seen, "detail": gap.detail}
    assert sid is not None
    return Event(format_id(sid), GAP, gap.swarm, None, None, 0, sid[0], None, None, None,
                 data, "", sid)


# --- keyspace notifications -------------------------------------------------------------------

KEYEVENTS: tuple[str, ...] = ("hset", "del", "expired", "evicted")
# flags notify-keyspace-events needs: keyevent channels (E), generic (g: del), hash (h),
# expired (x), evicted (e)
NEEDED_FLAGS = "Eghxe"
_ALL_CLASSES = "g$lshzxetd"


def keyspace_flags(current: str) -> str | None:
    """The ``notify-keyspace-events`` value to set so memgang gets what it needs, keeping
    every flag already on; ``None`` if ``current`` already has it all."""
    have = set(current)
    if "A" in have:
        have |= set(_ALL_CLASSES)
    missing = [flag for flag in NEEDED_FLAGS if flag not in have]
    if not missing:
        return None
    return current + "".join(missing)


@dataclass(frozen=True, slots=True)
class Conversion:
    """Run a script that turns a keyspace notification into a logged event (at most once).

    ``script`` is ``"observe"`` (a value changed behind memgang's back) or ``"prune"`` (an
    object vanished: ``kind`` is the event type, ``cause`` why)."""

    script: Literal["observe", "prune"]
    key: str
    swarm: str
    kind: str = ""
    cause: str = ""


_FOLLOWS = {"hset": "memory_updated", "del": "memory_deleted"}
_VANISH = {"expired": ("memory_expired", "ttl"), "evicted": ("memory_expired", "evicted"),
           "del": ("memory_deleted", "del")}


class KeyspaceTracker:
    """Turns keyspace notifications into conversions, skipping memgang's own changes.

    memgang's scripts publish an object's ``memory_updated``/``memory_deleted`` event and
    change the object in one atomic step, the event first. So on the one connection that
    receives both the swarm's events and the ``hset``/``del`` notifications, the
    notification of memgang's own change *immediately follows* its event for the same key
    (the scripts touch no other subscribed notification in between). A notification that
    follows anything else was made by another tool, and is converted at once. (Event first:
    a reader that gets an event returns it to its subscriber without first reading the
    notification behind it.)

    Whether to announce is decided again, atomically, by the conversion script from the
    store's state (observe.lua: the value's SHA-1 disagrees with its ``hash`` field;
    prune.lua: the object is gone but still in the index of all objects), and the script
    fixes that state as it announces. So a mistaken guess here costs one script call and
    never a duplicate, and several processes converting the same notification log it once.
    Expiry and eviction are never memgang's doing and are converted at once.
    """

    def __init__(self, watched: Callable[[str], bool]) -> None:
        self.watched = watched
        # (key, type) of the event just read, if a notification of memgang's own may follow
        self.last: tuple[str | None, str] | None = None

    def notification(self, kind: str, key: str) -> list[Conversion]:
        last, self.last = self.last, None
        if last is not None and last[1] == _FOLLOWS.get(kind) and last[0] == key:
            return []  # memgang's own change, announced by the event just before
        try:
            k = parse_full(key)
        except InvalidKey:
            return []  # a system key ({s}/_...) or not memgang's
        if not self.watched(k.swarm):
            return []
        if kind == "hset":
            return [Conversion("observe", key, k.swarm)]
        vanish = _VANISH.get(kind)
        if vanish is None:
            return []
        return [Conversion("prune", key, k.swarm, vanish[0], vanish[1])]

    def event(self, event: Event) -> None:
        self.last = (event.key, event.type)

    def reset(self) -> None:
        """Anything else arrived, or the connection is new: no notification may follow."""
        self.last = None


class EventOptions(TypedDict, total=False):
    """The keyword options of ``events()`` and ``subscribe()`` (see AsyncEventStream)."""

    agent: str | Iterable[str] | None
    group: str | None
    context: str | None
    match: str | None
    since: str | None
    on_gap: OnGap
    queue_size: int
    keyspace: bool


__all__ = [
    "EVENT_TYPES",
    "GAP",
    "KEYEVENTS",
    "CatchUp",
    "Conversion",
    "Cursor",
    "Delivery",
    "DeliveryStats",
    "Discover",
    "Event",
    "EventFilter",
    "EventOptions",
    "KeyspaceTracker",
    "Since",
    "Skipped",
    "entry_position",
    "format_id",
    "gap_event",
    "id_before",
    "keyspace_flags",
    "parse_entry",
    "parse_id",
    "parse_message",
    "parse_since",
]
