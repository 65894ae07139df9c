"""The dashboard's picture of a swarm, built from events and polled state: sans-I/O.

Nothing here talks to Redis or to a browser. The server (``app.py``) feeds it

- every event of the subscription (``apply``: a mapping shaped like the event JSON the Lua
  scripts publish; anything else is counted as malformed and dropped, never raised), and
- what events cannot tell, polled about once a second (``set_presence``, ``set_locks``,
  ``set_counters``, ``set_server_time``, ``set_connection``): who is alive, who holds which
  lock and how long the lease has left, the compute-once counters, the server's clock,

and asks it for ``snapshot(now_ms)``: a JSON-ready dict that the page renders as is.
Every method takes the time from its caller, so tests drive it with any clock they like.

What it keeps per swarm: agents (alive or gone, role, last action), the flock's edges (an
edge ``a -> b`` when ``b`` writes something ``derived_from`` an object ``a`` wrote), memory
objects (counts by agent and group, sizes, latest writes), locks, the event rate of the last
two minutes, compute-once savings and the latest events. Memory is bounded: at most
``max_objects`` objects are tracked one by one (the oldest are forgotten beyond that) and
``max_swarms`` swarms.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidKey
from ..keys import parse_full

log = logging.getLogger("memgang.dashboard")

RATE_WINDOW_S = 120  # seconds of event-rate history
RATE_RECENT_S = 5  # "events/s" is the mean over this many full seconds
ACTIVE_FOR_MS = 30_000  # an agent without presence counts as active this long after acting
FEED_LEN = 40
LATEST_LEN = 25
MAX_AGENTS_SHOWN = 200
MAX_EDGES_SHOWN = 400
MAX_LOCKS_SHOWN = 100

MEMORY_WRITES = frozenset({"memory_updated"})
MEMORY_GONE = frozenset({"memory_deleted", "memory_expired"})
LOCK_HELD = frozenset({"lock_acquired"})
LOCK_FREED = frozenset({"lock_released", "lock_expired"})

# compute-once counters of the agents' stats hashes (memgang.metrics): shown name -> counter
MEMO_FIELDS: dict[str, str] = {
    "hits": "hits", "waits": "waits", "computed": "misses", "saved_ms": "saved_ms",
}


# --------------------------------------------------------------------------------------------
# parsing helpers: tolerant, never raising on bad input
# --------------------------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    """A non-empty string from a str or bytes value, else None."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and value:
        return value
    return None


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e18:
        return int(value)
    if isinstance(value, (str, bytes)):
        try:
            return int(float(value))
        except (ValueError, OverflowError):
            return default
    return default


def space_of(key: str) -> str | None:
    """The space of a full key ``{swarm}/space/id``, or None if it is not one."""
    try:
        return parse_full(key).space
    except InvalidKey:
        return None


def local_key(key: str) -> str:
    """``space/id`` of a full key, for display; the key itself when it is not a full key."""
    try:
        return parse_full(key).local
    except InvalidKey:
        return key


def derived_refs(raw: Any) -> list[tuple[str, int]]:
    """The ``[[key, version], ...]`` of an event's derived_from; bad entries are skipped."""
    out: list[tuple[str, int]] = []
    if not isinstance(raw, (list, tuple)):
        return out
    for item in raw:
        if isinstance(item, (list, tuple)) and len(item) >= 1:
            key = _text(item[0])
            if key is not None:
                out.append((key, _int(item[1]) if len(item) > 1 else 0))
    return out


@dataclass(frozen=True, slots=True)
class Holder:
    """One holder of a lock: ``expires_ms`` is in server time (None: not known yet)."""

    mode: str
    agent: str
    expires_ms: int | None
    token: str = ""


@dataclass(frozen=True, slots=True)
class Waiter:
    agent: str
    mode: str = ""


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A lock: its name (a memory key), holders and waiting queue (oldest first)."""

    name: str
    holders: tuple[Holder, ...] = ()
    queue: tuple[Waiter, ...] = ()


def memo_totals(counters: Mapping[str, float]) -> dict[str, float]:
    """hits / waits / computed / saved_ms out of one agent's counters."""
    return {name: counters.get(counter, 0.0) for name, counter in MEMO_FIELDS.items()}


# --------------------------------------------------------------------------------------------
# per-swarm state
# --------------------------------------------------------------------------------------------

@dataclass(slots=True)
class Agent:
    name: str
    role: str | None = None
    first_ms: int = 0
    last_ms: int = 0
    last_action: str | None = None
    last_key: str | None = None
    events: int = 0
    writes: int = 0
    presence_deadline_ms: int | None = None  # server time; None: never seen in presence
    left: bool = False


@dataclass(slots=True)
class Obj:
    agent: str
    group: str | None
    version: int
    size: int


@dataclass(slots=True)
class Edge:
    weight: int = 0
    last_ms: int = 0


@dataclass(slots=True)
class SwarmState:
    """The picture of one swarm."""

    name: str
    max_objects: int = 200_000
    agents: dict[str, Agent] = field(default_factory=dict)
    objects: OrderedDict[str, Obj] = field(default_factory=OrderedDict)
    by_agent: Counter[str] = field(default_factory=Counter)
    by_group: Counter[str] = field(default_factory=Counter)
    bytes_total: int = 0
    edges: dict[tuple[str, str], Edge] = field(default_factory=dict)
    latest: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LATEST_LEN))
    feed: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=FEED_LEN))
    locks: dict[str, LockInfo] = field(default_factory=dict)
    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    rate: dict[int, int] = field(default_factory=dict)  # local second -> events
    by_type: Counter[str] = field(default_factory=Counter)
    events: int = 0
    last_event_ms: int = 0
    last_id: str | None = None

    # -- events -------------------------------------------------------------------------------
    def apply(self, ev: Mapping[str, Any], kind: str, now_ms: int,
              clock_offset_ms: int = 0) -> None:
        """Fold one validated event in (``kind`` is its type). Its time is the server's
        ``ts`` on our clock (``clock_offset_ms``: server minus local), never later than
        ``now_ms``: events replayed from the log land in their own seconds, not all "now"."""
        agent_name = _text(ev.get("agent"))
        key = _text(ev.get("key"))
        ts = _int(ev.get("ts"))
        at = min(now_ms, ts - clock_offset_ms) if ts > 0 else now_ms
        ts = ts if ts > 0 else now_ms + clock_offset_ms
        version = _int(ev.get("version"))
        self.events += 1
        self.by_type[kind] += 1
        self.last_event_ms = max(self.last_event_ms, at)
        if at > now_ms - RATE_WINDOW_S * 1000:
            second = at // 1000
            self.rate[second] = self.rate.get(second, 0) + 1
            if len(self.rate) > RATE_WINDOW_S + 5:
                for old in [s for s in self.rate if s <= now_ms // 1000 - RATE_WINDOW_S]:
                    del self.rate[old]
        event_id = _text(ev.get("id"))
        if event_id is not None:
            self.last_id = event_id

        agent = self._agent(agent_name, at) if agent_name else None
        if agent is not None:
            agent.events += 1
            agent.last_ms = max(agent.last_ms, at)
            agent.last_action = kind
            agent.last_key = key or _text(ev.get("topic"))

        detail: str | None = None
        if kind in MEMORY_WRITES and key is not None:
            size = max(0, _int(ev.get("size")))
            scope = ev.get("scope")
            group = _text(scope.get("group")) if isinstance(scope, Mapping) else None
            writer = agent_name or space_of(key) or "?"
            self._put_object(key, Obj(writer, group, version, size))
            if agent is not None:
                agent.writes += 1
            self.latest.appendleft({"key": key, "local": local_key(key), "agent": writer,
                                    "version": version, "size": size, "group": group,
                                    "ts": ts, "seen_ms": at})
            refs = derived_refs(ev.get("derived_from"))
            for ref_key, _ in refs:
                self._edge(ref_key, writer, at)
            if refs:
                detail = "from " + ", ".join(local_key(k) for k, _ in refs[:3])
            detail = detail or (f"{size} B" + (f" · {group}" if group else ""))
        elif kind in MEMORY_GONE and key is not None:
            self._drop_object(key)
        elif kind in LOCK_HELD and key is not None and agent_name:
            self._lock_held(key, ev, agent_name)
            detail = _text(ev.get("mode"))
        elif kind in LOCK_FREED and key is not None:
            self._lock_freed(key, agent_name)
        elif kind == "agent_joined" and agent is not None:
            agent.left = False
            info = ev.get("info")
            agent.role = (_text(info.get("role")) if isinstance(info, Mapping) else None
                          ) or agent.role
            detail = agent.role
        elif kind == "agent_left" and agent is not None:
            agent.left = True
            agent.presence_deadline_ms = None
            detail = _text(ev.get("reason"))
        elif kind == "knowledge_shared":
            detail = _text(ev.get("topic"))

        self.feed.appendleft({"id": event_id, "type": kind, "key": key,
                              "local": local_key(key) if key else None,
                              "agent": agent_name, "version": version, "ts": ts,
                              "detail": detail})

    def _agent(self, name: str, now_ms: int) -> Agent:
        agent = self.agents.get(name)
        if agent is None:
            agent = self.agents[name] = Agent(name, first_ms=now_ms)
        return agent

    def _put_object(self, key: str, obj: Obj) -> None:
        self._drop_object(key)
        self.objects[key] = obj
        self.by_agent[obj.agent] += 1
        if obj.group:
            self.by_group[obj.group] += 1
        self.bytes_total += obj.size
        while len(self.objects) > self.max_objects:
            # forget the oldest object's details but keep it counted: the counts stay right
            # for everything but deletions of forgotten objects
            self.objects.popitem(last=False)

    def _drop_object(self, key: str) -> None:
        old = self.objects.pop(key, None)
        if old is None:
            return
        self.by_agent[old.agent] -= 1
        if self.by_agent[old.agent] <= 0:
            del self.by_agent[old.agent]
        if old.group:
            self.by_group[old.group] -= 1
            if self.by_group[old.group] <= 0:
                del self.by_group[old.group]
        self.bytes_total -= old.size

    def _edge(self, ref_key: str, writer: str, now_ms: int) -> None:
        known = self.objects.get(ref_key)
        if known is not None:
            source: str | None = known.agent
        else:  # written before we looked: its space, if that is an agent we know
            source = space_of(ref_key)
            if source not in self.agents:
                return
        if source is None or source == writer:
            return
        edge = self.edges.setdefault((source, writer), Edge())
        edge.weight += 1
        edge.last_ms = now_ms

    def _lock_held(self, name: str, ev: Mapping[str, Any], agent: str) -> None:
        # the event names mode and token (its version); the lease shows at the next poll
        mode = _text(ev.get("mode")) or "?"
        version = _int(ev.get("version"))
        token = str(version) if version else ""
        lock = self.locks.get(name, LockInfo(name))
        holders = (*(h for h in lock.holders if h.agent != agent),
                   Holder(mode, agent, None, token))
        queue = tuple(w for w in lock.queue if w.agent != agent)
        self.locks[name] = LockInfo(name, holders, queue)

    def _lock_freed(self, name: str, agent: str | None) -> None:
        lock = self.locks.get(name)
        if lock is None:
            return
        holders = tuple(h for h in lock.holders if agent is not None and h.agent != agent)
        if holders or lock.queue:
            self.locks[name] = LockInfo(name, holders, lock.queue)
        else:
            del self.locks[name]

    # -- polled state -------------------------------------------------------------------------
    def set_presence(self, deadlines: Mapping[str, int], roles: Mapping[str, str | None],
                     now_ms: int) -> None:
        """Presence as polled: agent -> heartbeat deadline (server ms), agent -> role."""
        for name in set(deadlines) | set(roles):
            agent = self._agent(name, now_ms)
            role = roles.get(name)
            if role:
                agent.role = role
        for agent in self.agents.values():
            deadline = deadlines.get(agent.name)
            if deadline is not None:
                agent.presence_deadline_ms = deadline
                agent.left = False
            elif agent.presence_deadline_ms is not None:
                agent.presence_deadline_ms = None
                agent.left = True  # it was present and no longer is

    def set_locks(self, locks: Iterable[LockInfo]) -> None:
        self.locks = {lock.name: lock for lock in locks if lock.holders or lock.queue}

    def set_counters(self, per_agent: Mapping[str, Mapping[str, float]]) -> None:
        self.counters = {agent: dict(c) for agent, c in per_agent.items()}

    # -- the page's view ----------------------------------------------------------------------
    def status_of(self, agent: Agent, now_ms: int, server_ms: int) -> str:
        if agent.left:
            return "gone"
        if agent.presence_deadline_ms is not None:
            return "alive" if agent.presence_deadline_ms > server_ms else "gone"
        return "active" if now_ms - agent.last_ms < ACTIVE_FOR_MS else "idle"

    def snapshot(self, now_ms: int, server_ms: int) -> dict[str, Any]:
        agents = sorted(self.agents.values(), key=lambda a: (-a.last_ms, a.name))
        agents = agents[:MAX_AGENTS_SHOWN]
        second = now_ms // 1000
        counts = [self.rate.get(s, 0) for s in range(second - RATE_WINDOW_S + 1, second + 1)]
        recent = counts[-RATE_RECENT_S - 1:-1]
        edges = sorted(self.edges.items(), key=lambda kv: -kv[1].last_ms)[:MAX_EDGES_SHOWN]
        memo = dict.fromkeys(MEMO_FIELDS, 0.0)
        memo_by_agent: dict[str, dict[str, float]] = {}
        for agent_name, counters in self.counters.items():
            totals = memo_totals(counters)
            if any(totals.values()):
                memo_by_agent[agent_name] = totals
            for k, v in totals.items():
                memo[k] += v
        asked = memo["hits"] + memo["waits"] + memo["computed"]
        statuses = {a.name: self.status_of(a, now_ms, server_ms) for a in agents}
        return {
            "swarm": self.name,
            "agents": [{
                "name": a.name, "role": a.role, "status": statuses[a.name],
                "last_action": a.last_action, "last_key": a.last_key,
                "last_local": local_key(a.last_key) if a.last_key else None,
                "last_ms": a.last_ms or None, "events": a.events, "writes": a.writes,
                "objects": self.by_agent.get(a.name, 0),
                "memo": memo_by_agent.get(a.name),
            } for a in agents],
            "edges": [{"source": s, "target": t, "weight": e.weight, "last_ms": e.last_ms}
                      for (s, t), e in edges],
            "objects": {
                "total": sum(self.by_agent.values()),
                "bytes": self.bytes_total,
                "by_agent": dict(self.by_agent.most_common(30)),
                "by_group": dict(self.by_group.most_common(30)),
                "latest": list(self.latest),
            },
            "locks": [{
                "name": lock.name, "local": local_key(lock.name),
                "holders": [{"mode": h.mode, "agent": h.agent, "token": h.token,
                             "lease_left_ms": None if h.expires_ms is None
                             else max(0, h.expires_ms - server_ms)}
                            for h in lock.holders],
                "queue": [{"agent": w.agent, "mode": w.mode} for w in lock.queue],
            } for lock in sorted(self.locks.values(), key=lambda lk: lk.name)[:MAX_LOCKS_SHOWN]],
            "rate": {"bucket_s": 1, "counts": counts,
                     "per_s": sum(recent) / max(1, len(recent))},
            "memo": {**memo, "asked": asked,
                     "hit_ratio": (memo["hits"] + memo["waits"]) / asked if asked else None,
                     "by_agent": memo_by_agent},
            "totals": {
                "events": self.events,
                "agents": len(self.agents),
                "alive": sum(1 for s in statuses.values() if s in ("alive", "active")),
                "by_type": dict(self.by_type),
            },
            "feed": list(self.feed),
            "last_event_ms": self.last_event_ms or None,
        }


# --------------------------------------------------------------------------------------------
# the whole dashboard
# --------------------------------------------------------------------------------------------

class DashboardState:
    """Everything the page shows: one :class:`SwarmState` per swarm, and the connection.

    ``swarm`` fixes the one swarm to show (events of others are ignored); ``None`` follows
    every swarm that has events, up to ``max_swarms`` (the least recently active is dropped).
    """

    def __init__(self, swarm: str | None = None, *, max_swarms: int = 50,
                 max_objects: int = 200_000) -> None:
        self.fixed = swarm
        self.max_swarms = max_swarms
        self.max_objects = max_objects
        self.swarms: OrderedDict[str, SwarmState] = OrderedDict()
        self.malformed = 0
        self.applied = 0
        self.connected: bool | None = None  # None: not yet tried
        # the event feed (memgang's event hub): None until it has started, then whether
        # live events flow (False while it reconnects; it then catches up from the log)
        self.events_live: bool | None = None
        self.error: str | None = None
        self.status_since_ms = 0
        self.clock_offset_ms = 0  # server time minus local time, as last polled
        self.generation = 0  # bumps on every change: the server pushes when it moves
        if swarm is not None:
            self.swarm(swarm)

    def swarm(self, name: str) -> SwarmState:
        state = self.swarms.get(name)
        if state is None:
            state = self.swarms[name] = SwarmState(name, max_objects=self.max_objects)
            while len(self.swarms) > self.max_swarms:
                oldest = min(self.swarms.values(), key=lambda s: s.last_event_ms)
                del self.swarms[oldest.name]
        return state

    def apply(self, event: Any, now_ms: int) -> bool:
        """Fold in one event; False (and counted) if it is malformed. Never raises."""
        try:
            if not isinstance(event, Mapping):
                raise ValueError(f"an event must be a JSON object, got {type(event).__name__}")
            kind = _text(event.get("type"))
            swarm = _text(event.get("swarm"))
            if kind is None or swarm is None:
                raise ValueError("an event needs a type and a swarm")
            if self.fixed is not None and swarm != self.fixed:
                return False
            self.swarm(swarm).apply(event, kind, now_ms, self.clock_offset_ms)
        except Exception as exc:  # a malformed event must never stop the dashboard
            self.malformed += 1
            if self.malformed <= 10 or self.malformed % 1000 == 0:
                log.warning("dropped malformed event #%d (%s): %.200r", self.malformed, exc,
                            event)
            self.generation += 1
            return False
        self.applied += 1
        self.generation += 1
        return True

    def set_connection(self, connected: bool, now_ms: int, error: str | None = None) -> None:
        if connected != self.connected or error != self.error:
            self.connected = connected
            self.error = None if connected else error
            self.status_since_ms = now_ms
            self.generation += 1

    def set_events(self, live: bool | None) -> None:
        if live != self.events_live:
            self.events_live = live
            self.generation += 1

    def set_server_time(self, server_ms: int, now_ms: int) -> None:
        self.clock_offset_ms = server_ms - now_ms

    def touch(self) -> None:
        """Mark polled state as changed."""
        self.generation += 1

    def default_swarm(self) -> str | None:
        if self.fixed is not None:
            return self.fixed
        if not self.swarms:
            return None
        return max(self.swarms.values(), key=lambda s: s.last_event_ms).name

    def snapshot(self, swarm: str | None, now_ms: int) -> dict[str, Any]:
        """The page's state for ``swarm`` (default: the fixed or the most active swarm)."""
        name = swarm if swarm in self.swarms else self.default_swarm()
        server_ms = now_ms + self.clock_offset_ms
        body = (self.swarms[name].snapshot(now_ms, server_ms) if name is not None
                else SwarmState("").snapshot(now_ms, server_ms))
        body["swarm"] = name
        body["swarms"] = sorted(self.swarms)
        body["fixed"] = self.fixed is not None
        body["now_ms"] = now_ms
        body["status"] = {
            "redis": ("connecting" if self.connected is None
                      else "connected" if self.connected else "disconnected"),
            "events": ("connecting" if self.events_live is None
                       else "live" if self.events_live else "reconnecting"),
            "error": self.error, "since_ms": self.status_since_ms or None,
        }
        body["malformed"] = self.malformed
        return body


__all__ = [
    "DashboardState",
    "Holder",
    "LockInfo",
    "SwarmState",
    "Waiter",
    "derived_refs",
    "local_key",
    "memo_totals",
    "space_of",
]
