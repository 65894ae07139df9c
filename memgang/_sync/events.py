# Generated from memgang/_async/events.py by tools/gen_sync.py: do not edit.
"""Subscriptions: live events over one pub/sub connection per Gang, caught up from the log.

This file is the single implementation; ``memgang/_sync/events.py`` is generated from it by
``tools/gen_sync.py`` (threads there where this uses asyncio tasks). What is delivered, and
why exactly once and in order, is decided by the sans-I/O core in ``memgang/events.py``;
this file only moves bytes:

* :class:`AsyncEventHub` -- ONE pub/sub connection per Gang (so one per process when the
  process uses one Gang, as it should), shared by every subscriber: it SUBSCRIBEs to each
  swarm channel someone listens to (PSUBSCRIBE ``{*}/_events`` for all-swarm subscribers),
  parses each message once, and puts it in every listener's bounded mailbox. A full
  mailbox is flagged instead of blocking the hub, so a slow listener never stalls the
  others; it catches up from the log. On a lost connection (server restart, ``CLIENT
  KILL``, an unanswered PING) it flags every listener, reconnects with backoff (jittered,
  0.05 s doubling up to 2 s), re-subscribes and marks each channel ready once Redis
  confirms it. The hub reads the raw connection itself: nothing resubscribes behind its
  back, and confirmations and PONGs arrive in order with the messages.
  Reading is leader/follower: a stream waiting for its next event takes the *reader role*
  when it is free and reads the connection itself, dispatching every message to every
  listener on the way, until its own mailbox has something; so a waiting subscriber gets
  its event straight from the socket, with no hand-over from another thread (or task).
  Others wait on their mailboxes; the role passes to one of them, or back to the hub's own
  reader when no stream takes it within a moment (everyone busy in a handler). One reader
  at a time, so messages are handled once and in order, whoever reads them.
  It also listens to Redis keyspace notifications (``__keyevent@<db>__:hset|del|expired|
  evicted``) and turns those of watched swarms into logged events (see KeyspaceTracker).
* :class:`AsyncEventStream` -- one subscriber: an async iterator (``async for``) with
  ``get(timeout_s)``; it asks the hub to subscribe, sets its cursor, and hands over what
  its :class:`~memgang.events.Delivery` says, reading the log (XRANGE) when told to.
* :class:`AsyncSubscription` -- the callback form: a task (a thread in the sync shell) that
  runs a stream and calls ``handler(event)`` for each event, in order.
"""

from __future__ import annotations

import logging
import math
import random
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.exceptions

from .. import scripts
from .._backends import (
    SyncBackend,
    SyncHandle,
    SyncHandlers,
    SyncMailbox,
    SyncPubSubConn,
    refuses_a_subscribe,
)
from ..errors import (
    ConnectionLost,
    Error,
    EventGap,
    InvalidValue,
    MalformedEvent,
    NoPermission,
    ScriptError,
    lost_redis,
)
from ..events import (
    KEYEVENTS,
    ON_GAP,
    CatchUp,
    Conversion,
    Delivery,
    DeliveryStats,
    Discover,
    Event,
    EventFilter,
    KeyspaceTracker,
    OnGap,
    Skipped,
    StreamId,
    entry_position,
    gap_event,
    keyspace_flags,
    parse_entry,
    parse_message,
    parse_since,
)
from ..keys import (
    SwarmKeys,
    channel_pattern_all,
    keyevent_channel,
    log_pattern_all,
    swarm_of_channel,
    swarm_of_log,
    validate_name,
)
from ..memory import observe_call, prune_call

if TYPE_CHECKING:
    from .gang import Gang

log = logging.getLogger("memgang.events")

DEFAULT_QUEUE = 4096
DEFAULT_BATCH = 1000
PING_INTERVAL_S = 5.0
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
# the reader role (see AsyncEventHub.lead): a stream that gave it up has this long to come
# back for it before the hub reads again; the hub looks this often while streams take turns
HANDOVER_GRACE_S = 0.2
HUB_CHECK_S = 0.25
_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError,
                 ConnectionLost)

#: A handler: called with each Event; may be a coroutine function in the async shell.
SyncHandler = Callable[[Event], Any]


@dataclass(slots=True)
class HubStats:
    connects: int = 0        # successful (re)connections
    disconnects: int = 0     # connections lost
    messages: int = 0        # events received live
    direct: int = 0          # of which read by a stream waiting for events itself (no hop)
    malformed: int = 0       # messages on event channels that were not events
    notifications: int = 0   # keyspace notifications received
    conversions: int = 0     # conversion scripts run (each logs an event at most once)
    announced: int = 0       # of which announced an event


class _Route:
    """A channel (or pattern) the hub subscribes to, and the listeners on it."""

    __slots__ = ("keyevent", "listeners", "name", "pattern", "ready", "refused", "swarm",
                 "token")

    def __init__(self, name: str, *, pattern: bool = False, keyevent: str = "") -> None:
        self.name = name
        self.pattern = pattern
        self.keyevent = keyevent
        self.swarm = "" if pattern or keyevent else swarm_of_channel(name)
        # weak: a stream its user dropped (a `for` left by `break`) must not stay fed forever
        self.listeners: list[weakref.ref[SyncEventStream]] = []
        self.token = 0
        self.ready = SyncBackend.event()
        self.refused: str | None = None  # Redis's ACLs refused its (P)SUBSCRIBE: why

    def live(self) -> list[SyncEventStream]:
        """The listeners that still exist."""
        return [s for ref in self.listeners if (s := ref()) is not None]


class SyncEventHub:
    """The one pub/sub connection of a Gang and its reader (see the module docstring)."""

    def __init__(self, gang: Gang, *, ping_interval_s: float = PING_INTERVAL_S) -> None:
        self.gang = gang
        self.ping_interval_s = ping_interval_s
        self.routes: dict[str, _Route] = {}
        self.keyspace_users = 0
        self.tracker = KeyspaceTracker(self._watched)
        self.stats = HubStats()
        self.db = int(gang.client.connection_pool.connection_kwargs.get("db") or 0)
        self._lock = SyncBackend.lock()
        self._conn: SyncPubSubConn | None = None
        self._expect: deque[tuple[str, int]] = deque()
        self._tokens = 0
        self._task: SyncHandle | None = None
        self._closed = False
        self._stop = SyncBackend.event()
        self._keyspace_checked = False
        self._swarm_keys: dict[str, SwarmKeys] = {}
        # the current connection had a subscription confirmed: its loss starts the
        # reconnect backoff afresh (a connection refused at once keeps growing it)
        self._served = False
        # The reader role: who reads the connection now: the hub (self), a stream waiting
        # in get() (it reads until its own mailbox has something, and dispatches to every
        # listener on the way: no hand-over between threads for it), or nobody (None).
        # Guarded by `role`; the hub holds it whenever there is no connection.
        self.role = SyncBackend.mutex()
        self._reader: object | None = self
        # streams waiting on their mailbox, in arrival order (a dict: a hundred listeners
        # come and go on every event)
        self._followers: dict[SyncEventStream, None] = {}
        self._nudged: SyncEventStream | None = None  # handed the free role, not taken yet
        self._read_at = -math.inf  # when someone last read (or waited on) the connection
        self._releases = 0
        self._seen_releases = 0
        self._parked = False  # the hub sleeps until the next release (or a kick)
        self._poked = False  # a follower sent a PING to have the reading hub hand over
        self._kick = SyncBackend.event()
        self._failure: BaseException | None = None  # reported by a reading stream
        self._todo: list[Conversion] = []  # keyspace conversions for the hub to run
        self._last_rx = 0.0
        self._ping_sent: float | None = None

    @property
    def live(self) -> bool:
        """True while live events flow: the hub is connected and Redis confirmed every
        subscription. False while it is away or backing off before it reconnects; what
        happens meanwhile reaches each stream by catch-up from the log once it is back."""
        return self._conn is not None and all(r.ready.is_set() for r in self.routes.values())

    # -- listeners --------------------------------------------------------------------------------
    def add(self, stream: SyncEventStream, timeout_s: float) -> None:
        """Route ``stream``'s channels to it; returns once Redis confirmed the subscription."""
        with self._lock:
            if self._closed:
                raise Error("the Gang is closed")
            new: list[_Route] = []
            own: list[_Route] = []
            for name, pattern in stream.routes:
                route = self.routes.get(name)
                if route is None:
                    route = self.routes[name] = _Route(name, pattern=pattern)
                    new.append(route)
                own.append(route)
                # copy on write: the reader iterates listener lists without the lock
                route.listeners = [*route.listeners, weakref.ref(stream)]
            stream.registered = True
            if stream.keyspace:
                self.keyspace_users += 1
                if self.keyspace_users == 1:
                    for kind in KEYEVENTS:
                        name = keyevent_channel(self.db, kind)
                        self.routes[name] = _Route(name, keyevent=kind)
                        new.append(self.routes[name])
            if self._task is None:
                self._task = SyncBackend.spawn(self._run, name="memgang-events-hub")
            elif self._conn is not None:
                self._subscribe(self._conn, new)
        if stream.keyspace and self._conn is not None and not self._keyspace_checked:
            self._check_keyspace()
        ready = self.wait_ready([name for name, _ in stream.routes], timeout_s)
        refused = next((route for route in own if route.refused is not None), None)
        if refused is not None:
            self.remove(stream)
            raise NoPermission(f"subscribing to {refused.name}", refused.refused or "")
        if not ready:
            self.remove(stream)
            raise ConnectionLost(f"could not subscribe to {stream.routes[0][0]} within "
                                 f"{timeout_s}s: is Redis reachable at {self.gang.config!r}?")

    def remove(self, stream: SyncEventStream) -> None:
        """Stop routing to ``stream``; unsubscribe the channels nobody listens to any more."""
        with self._lock:
            if not stream.registered:
                return
            stream.registered = False
            gone: list[_Route] = []
            for name, _ in stream.routes:
                route = self.routes.get(name)
                if route is not None and any(s is stream for s in route.live()):
                    route.listeners = [ref for ref in route.listeners
                                       if ref() is not stream and ref() is not None]
                    # (the reader may have popped a refused route meanwhile)
                    if not route.listeners and (popped := self.routes.pop(name, None)):
                        gone.append(popped)
            if stream.keyspace:
                self.keyspace_users -= 1
                if self.keyspace_users == 0:
                    gone += [route for kind in KEYEVENTS  # (a refused one is gone already)
                             if (route := self.routes.pop(keyevent_channel(self.db, kind), None))]
            if gone and self._conn is not None:
                try:
                    channels = [r.name for r in gone if not r.pattern]
                    patterns = [r.name for r in gone if r.pattern]
                    if channels:
                        self._conn.send("UNSUBSCRIBE", *channels)
                    if patterns:
                        self._conn.send("PUNSUBSCRIBE", *patterns)
                except _REDIS_ERRORS as exc:
                    log.debug("unsubscribe failed (%s); the reader reconnects", exc)
            if self._reader is stream and self._conn is not None:
                # it reads (another thread or task closed it): a reply ends its wait
                self._ping(self._conn, "waking the reading stream")

    # -- the reader role ---------------------------------------------------------------------
    # A stream waiting for its next event takes the role if it is free and reads the
    # connection itself; one that finds it taken waits on its mailbox as a follower. The
    # role passes from a stream that got its event to a follower (nudged), or back to the
    # hub if nobody takes it within HANDOVER_GRACE_S; the hub, reading, gives it to a
    # follower after each message. Messages are read by one reader at a time, in order.

    def lead(self, stream: SyncEventStream) -> bool:
        """Give ``stream`` the reader role if it is free (True); else make it a follower."""
        with self.role:
            if (self._reader is None and self._conn is not None and self._failure is None
                    and not self._closed and stream.registered):
                self._reader = stream
                if self._nudged is stream:
                    self._nudged = None
                return True
            self._followers[stream] = None
            return False

    def read_for(self, stream: SyncEventStream, deadline: float | None) -> None:
        """Read (as ``stream``, which leads) until its mailbox has something, it closes, or
        ``deadline``. A failure of the connection is left to the hub, which logs it and
        reconnects. Any other error (a bug, Ctrl-C, or an exception a signal handler raised
        in this thread, such as ``memgang watch``'s SIGTERM) also makes the hub start over,
        since it may have cut a message short, and is raised to the caller."""
        conn = self._conn
        mailbox = stream.mailbox
        try:
            while conn is not None and not (len(mailbox) or mailbox.flagged or mailbox.closed
                                            or self._closed):
                limit = (self.ping_interval_s if deadline is None
                         else deadline - SyncBackend.monotonic())
                if limit <= 0:
                    return
                self._step(conn, limit)
        except SyncBackend.CANCELLED:
            raise  # only at an await: nothing was cut short
        except BaseException as exc:  # KeyboardInterrupt too: it lands anywhere in a thread
            lost = isinstance(exc, (*_REDIS_ERRORS, redis.exceptions.RedisError))
            with self.role:
                if self._conn is conn and self._failure is None:
                    self._failure = exc if lost else ConnectionLost(
                        f"a stream reading the connection was interrupted by {exc!r}")
                    self._kick.set()
            if not lost:
                raise

    def poke(self) -> None:
        """A stream became a follower while the hub itself reads (it took the role back
        while every stream was busy): a PING, whose reply the hub reads, makes it hand the
        role over now rather than after the next event."""
        with self.role:
            conn = self._conn
            if self._reader is not self or self._poked or conn is None:
                return
            self._poked = True
        self._ping(conn, "asking the hub to hand over")

    @staticmethod
    def _ping(conn: SyncPubSubConn, why: str) -> None:
        """A PING sent only for the reader to wake up to its reply (a failure is the
        reader's to see)."""
        try:
            conn.send("PING")
        except _REDIS_ERRORS as exc:
            log.debug("%s failed (%s)", why, exc)

    def unlead(self, stream: SyncEventStream) -> None:
        """``stream`` gives the role up: to a follower, else (after a grace) to the hub."""
        with self.role:
            if self._reader is not stream:
                return
            self._reader = None
            self._releases += 1
            if self._failure is not None or self._hub_needed():
                self._kick.set()
                return
            self._unpark()
            self._pass_on(stream)

    def unfollow(self, stream: SyncEventStream) -> None:
        with self.role:
            self._followers.pop(stream, None)

    def left(self, stream: SyncEventStream) -> None:
        """``stream`` returns from get(), perhaps by an exception at any point: it holds no
        role, follows no one, and a role it was handed and did not take goes on (if the
        exception cut a hand-over short, the hub takes the role back within its grace)."""
        if self._reader is stream:
            self.unlead(stream)
        if stream in self._followers:
            self.unfollow(stream)
        if self._nudged is not stream:
            return
        with self.role:
            if self._nudged is stream:
                self._nudged = None
                if self._reader is None:
                    self._pass_on(stream)
                    self._unpark()

    def _hand_over(self) -> None:
        """The hub read a message: give the role to a waiting stream, if any."""
        with self.role:
            if self._followers and not self._hub_needed():
                self._reader = None
                self._poked = False
                self._pass_on(None)

    def _pass_on(self, leaving: SyncEventStream | None) -> None:
        """Hand the free role to a follower other than ``leaving`` (under ``role``): wake it,
        unless an event already did."""
        for follower in self._followers:
            if follower is not leaving:
                self._nudged = follower
                if not len(follower.mailbox):
                    follower.mailbox.nudge()
                return

    def _hub_needed(self) -> bool:
        """What only a reading hub sees to (under ``role``): conversions to run, a
        subscription confirmation awaited. With either, the hub reads as soon as nobody
        else does."""
        return bool(self._todo or self._expect)

    def _unpark(self) -> None:
        """Wake the hub if it sleeps until the next release (under ``role``)."""
        if self._parked:
            self._parked = False
            self._kick.set()

    def _want_reader(self) -> None:
        """Someone waits for a reply on the connection (a confirmation, in ``_expect``): if
        nobody reads, the hub takes the role at once."""
        with self.role:
            if self._reader is None:
                self._kick.set()

    def wait_ready(self, names: Sequence[str], timeout_s: float) -> bool:
        """True once every channel in ``names`` is confirmed subscribed (False on timeout)."""
        deadline = SyncBackend.monotonic() + timeout_s
        for name in names:
            route = self.routes.get(name)
            if route is None:
                return False
            remaining = deadline - SyncBackend.monotonic()
            if not route.ready.is_set():
                self._want_reader()  # its confirmation is read by whoever reads
            if not route.ready.is_set() and (
                    remaining <= 0 or not SyncBackend.wait_event(route.ready, remaining)):
                return False
        return True

    def _keys(self, swarm: str) -> SwarmKeys:
        """The swarm's key builder, made once per swarm (this is on the per-event path)."""
        ks = self._swarm_keys.get(swarm)
        if ks is None:
            ks = self._swarm_keys[swarm] = SwarmKeys(swarm)
        return ks

    def _watched(self, swarm: str) -> bool:
        return (self._keys(swarm).channel in self.routes
                or channel_pattern_all() in self.routes)

    # -- the connection ------------------------------------------------------------------------
    def _subscribe(self, conn: SyncPubSubConn, routes: Sequence[_Route]) -> None:
        """Send a (P)SUBSCRIBE for each of ``routes``; each is ready once its confirmation
        arrives. One command per channel, so that a refusal by Redis's ACLs (one error reply
        for the whole command) names exactly one route. Called with the lock held."""
        for route in routes:
            self._tokens += 1
            route.token = self._tokens
            route.ready.clear()
            self._expect.append((route.name, route.token))
        try:
            for route in routes:
                conn.send("PSUBSCRIBE" if route.pattern else "SUBSCRIBE", route.name)
        except _REDIS_ERRORS as exc:
            log.debug("subscribe failed (%s); the reader reconnects", exc)

    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._closed:
            conn = SyncPubSubConn(self.gang.client, max(10.0, 2 * self.ping_interval_s),
                                   "memgang-events")
            try:
                conn.connect()
                if self.keyspace_users:  # before anyone is told the stream is ready
                    self._keyspace_checked = False
                    self._check_keyspace()
                with self._lock:
                    if self._closed:
                        break
                    with self.role:
                        self._failure = None
                        self._poked = False
                        self._last_rx = SyncBackend.monotonic()
                        self._ping_sent = None
                    self._conn = conn
                    self._expect.clear()
                    self._subscribe(conn, list(self.routes.values()))
                if self.stats.connects:
                    log.warning("event hub reconnected to Redis; subscribers catch up from "
                                "the log")
                self.stats.connects += 1
                self._served = False
                self._serve(conn)
            except _REDIS_ERRORS as exc:
                if not self._closed:
                    log.warning("event hub lost Redis (%s); reconnecting", exc)
            except redis.exceptions.ResponseError as exc:  # e.g. NOPERM for its PING
                if not self._closed:
                    log.warning("event hub: Redis refused it (%s); reconnecting", exc)
            except Exception:  # never let the reader die: log it and start over
                if not self._closed:
                    log.exception("event hub: unexpected error; reconnecting")
            finally:
                self._disconnected(conn)
            if self._closed:
                break
            self.stats.disconnects += 1
            if self._served:  # Redis confirmed a subscription on it: a fresh failure
                backoff = BACKOFF_MIN_S
            self._served = False
            SyncBackend.wait_event(self._stop, backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _disconnected(self, conn: SyncPubSubConn) -> None:
        with self._lock:
            was_live = self._conn is conn
            self._conn = None
            self._expect.clear()
            self.tracker.reset()
            for route in self.routes.values():
                route.ready.clear()
                if was_live:
                    for listener in route.live():
                        listener.interrupted()
        conn.close()

    def _serve(self, conn: SyncPubSubConn) -> None:
        """Keep ``conn`` read until it fails (raised) or the hub closes: by the hub itself
        while it holds the reader role, else by the stream that holds it (see ``lead``); the
        hub then only runs the keyspace conversions they queue, takes the role back when it
        has been free for a moment (or someone waits for a confirmation), and reconnects
        when the reading stream reports the connection failed."""
        while not self._closed:
            if self._reader is self:
                if self._todo:  # (queued by a stream that read before the hub took over)
                    self._work()
                self._step(conn, self.ping_interval_s)
                if self._followers:
                    self._hand_over()
                continue
            with self.role:
                failure = self._failure
                # nobody has read for a moment (the streams are busy, or only poll their
                # mailbox): the hub reads, so that nothing piles up and PINGs go on
                if failure is not None or (self._reader is None and (
                        self._hub_needed() or
                        SyncBackend.monotonic() - self._read_at >= HANDOVER_GRACE_S)):
                    self._reader = self  # (a failure: the reading stream left the role)
                    if failure is not None:
                        raise failure
                    continue
                work = bool(self._todo)
                # a stream that kept the role since the last look waits for events: the hub
                # sleeps until its next release (unlead kicks it) instead of looking again
                settled = self._reader is not None and self._releases == self._seen_releases
                self._seen_releases = self._releases
                self._parked = settled and not work
                self._kick.clear()
            if work:
                self._work()
                continue
            SyncBackend.wait_event(
                self._kick, self.ping_interval_s if settled else HUB_CHECK_S)

    def _step(self, conn: SyncPubSubConn, limit_s: float) -> bool:
        """Read one message within ``limit_s`` and handle it; True if one came. Keeps the
        connection's PING check, whoever reads."""
        try:
            msg = conn.read(max(0.0, min(self.ping_interval_s, limit_s)))
        except redis.exceptions.NoPermissionError as exc:
            if not (self._expect and refuses_a_subscribe(exc)):
                raise  # not the answer to a pending (P)SUBSCRIBE: reconnect, with backoff
            self._refused(str(exc))  # the answer to the oldest one (the channel, or the
            return True              # command itself, refused by the ACLs)
        now = self._read_at = SyncBackend.monotonic()
        if msg is None:
            interval = self.ping_interval_s
            if self._ping_sent is not None:
                if now - self._ping_sent >= interval:
                    raise redis.exceptions.TimeoutError(f"no reply to PING within {interval}s")
            elif now - self._last_rx >= interval:
                conn.send("PING")
                self._ping_sent = now
            return False
        self._last_rx = now
        self._ping_sent = None
        self._dispatch(msg)
        return True

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, list) or not msg:
            return  # a bare PONG (nothing subscribed)
        kind = msg[0]
        if kind == b"message":
            name = msg[1].decode()
            route = self.routes.get(name)
            if route is None:
                self.tracker.reset()
            elif route.keyevent:
                self.stats.notifications += 1
                key = msg[2].decode("utf-8", "replace")
                self._queue(self.tracker.notification(route.keyevent, key))
            else:
                self._deliver(route, name, msg[2])
        elif kind == b"pmessage":
            route = self.routes.get(msg[1].decode())
            if route is None:
                self.tracker.reset()
            else:
                self._deliver(route, msg[2].decode(), msg[3])
        else:
            if kind in (b"subscribe", b"psubscribe"):
                self._served = True
                self._confirmed(msg[1].decode())
            elif kind == b"pong":
                self._poked = False
            self.tracker.reset()

    def _refused(self, detail: str) -> None:
        """Redis's ACLs refused the oldest (P)SUBSCRIBE still unconfirmed (the caller checked
        there is one): drop its route (it is not subscribed again on reconnect) and tell
        whoever waits for it why."""
        name, token = self._expect.popleft()
        route = self.routes.get(name)
        if route is None or route.token != token:
            return
        self.routes.pop(name, None)  # (remove() may pop it too, under its lock)
        route.refused = detail
        route.ready.set()
        if route.keyevent:
            log.warning("cannot subscribe to %s (%s): expiries and changes made by other "
                        "tools will not be announced", name, detail)
            return
        for listener in route.live():  # a re-subscription refused: they must not wait on
            listener.refused(NoPermission(f"subscribing to {name}", detail))

    def _confirmed(self, name: str) -> None:
        # (a copy: add() may append from another thread meanwhile)
        if all(expected != name for expected, _ in list(self._expect)):
            return  # not one of ours (any more): leave the others waiting for theirs
        while self._expect:
            expected, token = self._expect.popleft()
            if expected == name:
                route = self.routes.get(name)
                if route is not None and route.token == token:
                    route.ready.set()
                return

    def _deliver(self, route: _Route, channel: str, payload: bytes) -> None:
        try:
            event = parse_message(payload, where=channel)
            if event.swarm != (route.swarm or swarm_of_channel(channel)):
                raise MalformedEvent(f"names swarm {event.swarm!r}", where=channel,
                                     payload=payload)
        except (MalformedEvent, Error) as exc:
            self.stats.malformed += 1
            log.warning("%s", exc)
            self.tracker.reset()
            return
        self.stats.messages += 1
        if self._reader is not self:
            self.stats.direct += 1
        self.tracker.event(event)
        for listener in route.live():
            listener.mailbox.put(event)

    # -- keyspace notifications ------------------------------------------------------------------
    def _queue(self, conversions: list[Conversion]) -> None:
        """Leave conversions to the hub (their scripts are not run on a reading stream's
        time); a stream reading kicks it."""
        if conversions:
            with self.role:
                self._todo += conversions
                if self._reader is not self:
                    self._kick.set()

    def _work(self) -> None:
        with self.role:
            todo, self._todo = self._todo, []
        self._convert(todo)

    def _convert(self, conversions: list[Conversion]) -> None:
        for c in conversions:
            ks = self._keys(c.swarm)
            maxlen = self.gang.settings.log_maxlen
            try:
                if c.script == "observe":
                    reply = self.gang.call("observe", *observe_call(ks, c.key, maxlen))
                else:
                    reply = self.gang.call(
                        "prune", *prune_call(ks, c.key, c.kind, c.cause, maxlen))
            except Error as exc:
                log.warning("could not turn a keyspace notification for %s into an event: %s",
                            c.key, exc)
                continue
            self.stats.conversions += 1
            code = reply[0] if isinstance(reply, list) and reply else None
            if code == 1:
                self.stats.announced += 1
            elif code not in (0, 2):  # a bug: say so, loudly, and carry on
                log.error("%s", ScriptError(c.script, reply))

    def _check_keyspace(self) -> None:
        """Make sure Redis publishes the keyspace notifications memgang needs: turn them on
        where allowed (keeping every flag already set), warn clearly where not."""
        self._keyspace_checked = True
        client = self.gang.client
        try:
            reply = client.config_get("notify-keyspace-events")
        except redis.exceptions.ResponseError as exc:
            log.warning("cannot check notify-keyspace-events (%s): expiries and changes made "
                        "by other tools become events only if the server has at least "
                        "'Eghxe' in notify-keyspace-events", exc)
            return
        except _REDIS_ERRORS as exc:
            log.debug("cannot check notify-keyspace-events now: %s", exc)
            self._keyspace_checked = False
            return
        raw = next(iter(reply.values()), b"")
        current = scripts.text(raw)
        wanted = keyspace_flags(current)
        if wanted is None:
            return
        try:
            client.config_set("notify-keyspace-events", wanted)
        except redis.exceptions.RedisError as exc:
            log.warning("notify-keyspace-events is %r and cannot be set (%s): expiries and "
                        "changes made by other tools will NOT become events. Ask for "
                        "CONFIG SET notify-keyspace-events %s", current, exc, wanted)
            return
        log.warning("notify-keyspace-events was %r: memgang set it to %r so that expiries and "
                    "changes made by other tools become events", current, wanted)

    def close(self) -> None:
        """Stop the reader and close the connection; every stream ends."""
        with self._lock:
            self._closed = True
            self._stop.set()
            self._kick.set()
            listeners = {id(s): s for r in self.routes.values() for s in r.live()}
            conn = self._conn
        for stream in listeners.values():
            stream.mailbox.close()
        if conn is not None:
            conn.close()
        if self._task is not None:
            SyncBackend.join(self._task)


_HUB_MUTEX = SyncBackend.mutex()


def hub_of(gang: Gang) -> SyncEventHub:
    """The Gang's event hub, created on first use."""
    with _HUB_MUTEX:
        hub: SyncEventHub | None = gang.events_hub
        if hub is None:
            hub = gang.events_hub = SyncEventHub(gang)
        return hub


class SyncEventStream:
    """The events of some swarms, exactly once and in log order: ``async for event in
    stream`` (``for`` in the sync shell), or ``await stream.get(timeout_s)``.

    Made by ``Swarm.events()`` (one swarm) or ``Gang.events()`` (some or all swarms). It
    starts (subscribes, fixes ``since="now"``) on ``start()``, on entering ``async with``,
    or at the first iteration; ``aclose()`` (``close()``) or leaving the ``with`` ends it.
    An iterator that raised :class:`~memgang.EventGap` (``on_gap="raise"``) may be iterated
    again: it carries on after the gap.
    """

    def __init__(
        self,
        gang: Gang,
        swarms: Sequence[str] | None,
        types: str | Iterable[str] | None = None,
        *,
        agent: str | Iterable[str] | None = None,
        group: str | None = None,
        context: str | None = None,
        match: str | None = None,
        since: str | None = None,
        on_gap: OnGap = "raise",
        queue_size: int = DEFAULT_QUEUE,
        keyspace: bool = True,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if on_gap not in ON_GAP:
            raise InvalidValue(f"on_gap must be one of {', '.join(ON_GAP)}, got {on_gap!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise InvalidValue(f"queue_size must be a positive int, got {queue_size!r}")
        self.gang = gang
        self.swarms = None if swarms is None else [validate_name(s, "swarm") for s in swarms]
        self.filter = EventFilter.build(types, agent=agent, group=group, context=context,
                                        match=match)
        self.since = parse_since(since)
        self.on_gap = on_gap
        self.keyspace = keyspace
        self.routes: list[tuple[str, bool]] = (
            [(channel_pattern_all(), True)] if self.swarms is None
            else [(SwarmKeys(s).channel, False) for s in dict.fromkeys(self.swarms)])
        self.mailbox = SyncMailbox(queue_size)
        self.delivery = Delivery(self.swarms, self.since, self.filter, batch=batch)
        self._hub: SyncEventHub | None = None
        self.registered = False  # routed to by the hub (set and cleared by it)
        self._started = False
        self._closed = False
        self._resync = False
        # set by the hub when Redis's ACLs refused one of this stream's channels on a
        # re-subscription: get() raises it instead of waiting forever for a channel
        self.refusal: NoPermission | None = None
        self._stop = SyncBackend.event()
        self._retry_s = BACKOFF_MIN_S

    @property
    def last_id(self) -> str | None:
        """Log id of the last event of a one-swarm stream handed over (resume with
        ``since=last_id``)."""
        return self.delivery.last_id

    @property
    def stats(self) -> DeliveryStats:
        return self.delivery.stats

    @property
    def overflows(self) -> int:
        """How many times this stream's queue overflowed (and it caught up from the log)."""
        return self.mailbox.overflows

    @property
    def closed(self) -> bool:
        """Closed by ``aclose()``/``close()``, or because its Gang was closed."""
        return self._closed or self.mailbox.closed

    def start(self) -> SyncEventStream:
        """Subscribe and fix the starting point; idempotent. Raises ConnectionLost."""
        if self._started:
            return self
        if self._closed:
            raise Error("this event stream is closed")
        self._started = True
        try:
            hub = self._hub = hub_of(self.gang)
            hub.add(self, timeout_s=max(5.0, 2 * self.gang.config.connect_timeout_s))
            self._begin()
        except BaseException:
            self.close()
            raise
        return self

    def _begin(self) -> None:
        client = self.gang.client
        tails: dict[str, Event | StreamId | None] = {}
        with lost_redis("cannot start an event stream"):
            with client.pipeline(transaction=False) as pipe:
                pipe.time()
                names = self.swarms if self.since.kind == "now" and self.swarms else []
                for swarm in names:
                    pipe.xrevrange(SwarmKeys(swarm).log, "+", "-", count=1)
                replies = pipe.execute()
        for swarm, tail in zip(names, replies[1:], strict=True):
            tails[swarm] = self._position(swarm, tail)
        self.delivery.begin(tails, scripts.server_ms(replies[0]))

    def interrupted(self) -> None:
        """Called by the hub: live delivery was interrupted; catch up once resubscribed."""
        self.mailbox.flag()

    def refused(self, error: NoPermission) -> None:
        """Called by the hub: Redis refused to subscribe one of this stream's channels."""
        self.refusal = error
        self.mailbox.flag()

    def get(self, timeout_s: float | None = None) -> Event | None:
        """The next event; None on timeout or once the stream is closed. Raises EventGap
        (``on_gap="raise"``) in order, where events were lost."""
        self.start()
        try:
            return self._next(timeout_s)
        finally:
            if self._hub is not None:
                self._hub.left(self)

    def _next(self, timeout_s: float | None) -> Event | None:
        monotonic = SyncBackend.monotonic
        deadline = None if timeout_s is None else monotonic() + timeout_s
        delivery = self.delivery
        mailbox = self.mailbox
        while True:
            item = delivery.pop()
            if item is not None:
                if isinstance(item, EventGap):
                    event = self._gap(item)
                    if event is None:
                        continue
                    return event
                return item
            if self.closed:
                return None
            remaining = None if deadline is None else max(0.0, deadline - monotonic())
            if self._resync:
                assert self._hub is not None
                if self.refusal is not None:
                    raise self.refusal
                wait = 1.0 if remaining is None else min(remaining, 1.0)
                if self._hub.wait_ready([name for name, _ in self.routes], wait):
                    self._resync = False
                    delivery.resync()
                elif remaining == 0:
                    return None
                continue
            if delivery.needs_io():
                self._catch_up()
                continue
            received = mailbox.take()
            if received is None and not (mailbox.flagged or mailbox.closed):
                hub = self._hub
                if hub is None or remaining == 0:  # a poll: what the hub has delivered
                    received = mailbox.get(remaining)
                elif hub.lead(self):  # read the connection ourselves
                    try:
                        hub.read_for(self, deadline)
                    finally:
                        hub.unlead(self)
                    received = mailbox.take()
                else:
                    hub.poke()
                    received = mailbox.get(remaining)
                    hub.unfollow(self)
            if received is not None:
                delivery.live(received)
            elif mailbox.take_flag():
                self._resync = True
            elif deadline is not None and monotonic() >= deadline:
                return None

    def _gap(self, gap: EventGap) -> Event | None:
        if self.on_gap == "raise":
            raise gap
        if self.on_gap == "event":
            return gap_event(gap)
        log.warning("%s", gap)
        return None

    def _catch_up(self) -> None:
        request = self.delivery.next_request()
        try:
            if isinstance(request, Discover):
                self.delivery.discovered(self._scan_logs())
            elif isinstance(request, CatchUp):
                entries, tail, before = self._read_log(request)
                self.delivery.caught_up(request.swarm, entries, tail, before)
        except (*_REDIS_ERRORS, redis.exceptions.ResponseError) as exc:
            if self.closed:
                return
            log.warning("catching up from the log failed (%s); retrying in %.2fs", exc,
                        self._retry_s)
            SyncBackend.wait_event(self._stop, self._retry_s)
            self._retry_s = min(self._retry_s * 2, BACKOFF_MAX_S)
            return
        self._retry_s = BACKOFF_MIN_S

    def _read_log(self, req: CatchUp) -> tuple[
            list[Event | Skipped], Event | StreamId | None, Event | StreamId | None]:
        key = SwarmKeys(req.swarm).log
        with self.gang.client.pipeline(transaction=False) as pipe:
            pipe.xrange(key, "(" + req.after if req.after else "-", "+", count=req.count)
            pipe.xrevrange(key, "+", "-", count=1)
            if req.resolve and req.after:
                pipe.xrevrange(key, req.after, "-", count=1)
            replies = pipe.execute()
        swarm = req.swarm
        entries: list[Event | Skipped] = []
        for eid, fields in replies[0]:
            entries.append(self._entry(swarm, eid, fields))
        tail = self._position(swarm, replies[1])
        before = self._position(swarm, replies[2]) if len(replies) > 2 else None
        return entries, tail, before

    def _position(self, swarm: str, reply: list[Any]) -> Event | StreamId | None:
        if not reply:
            return None
        entry = self._entry(swarm, *reply[0])
        return entry if isinstance(entry, Event) else entry.sid

    @staticmethod
    def _entry(swarm: str, eid: bytes, fields: dict[bytes, bytes]) -> Event | Skipped:
        try:
            return parse_entry(swarm, eid, fields)
        except MalformedEvent as exc:
            log.warning("%s; skipped", exc)
            sid, n = entry_position(eid, fields)
            return Skipped(sid, n, exc)

    def _scan_logs(self) -> list[str]:
        found: list[str] = []
        for raw in self.gang.client.scan_iter(match=log_pattern_all(), count=1000,
                                                   _type="stream"):
            try:
                found.append(validate_name(swarm_of_log(raw.decode()), "swarm"))
            except Error:
                continue
        return found

    def __iter__(self) -> SyncEventStream:
        return self

    def __next__(self) -> Event:
        event = self.get()
        if event is None:
            raise StopIteration
        return event

    def close(self) -> None:
        """Stop: unsubscribe (if nobody else listens) and end the iteration."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self.mailbox.close()
        if self._hub is not None:
            self._hub.remove(self)

    def __enter__(self) -> SyncEventStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "all swarms" if self.swarms is None else ", ".join(self.swarms)
        return f"EventStream({where}, since={self.since.kind}, last_id={self.last_id})"


class SyncSubscription:
    """Calls ``handler(event)`` for every event of ``stream``, in order, one at a time, in
    its own task (a thread in the sync shell). A handler that raises is logged (logger
    ``memgang.events``) and counted in ``errors``; the next event still comes. ``stop()``
    ends it (also from inside the handler)."""

    def __init__(self, stream: SyncEventStream, handler: SyncHandler) -> None:
        if not callable(handler):
            raise InvalidValue(f"handler must be callable, got {handler!r}")
        if stream.on_gap == "raise":
            raise InvalidValue("a subscription cannot raise EventGap: use on_gap='event' "
                               "(the handler gets an event_gap event) or 'log'")
        self.stream = stream
        self.handler = handler
        self.errors = 0
        self._task: SyncHandle | None = None

    def start(self) -> SyncSubscription:
        if self._task is None:
            self.stream.start()
            name = getattr(self.handler, "__name__", "handler")
            self._task = SyncBackend.spawn(self._run, name=f"memgang-events-{name}")
        return self

    def _run(self) -> None:
        stream = self.stream
        while not stream.closed:
            try:
                event = stream.get()
            except NoPermission as exc:  # Redis's ACLs no longer let it subscribe: stop
                log.error("event subscription %r stopped: %s", self.handler, exc)
                stream.close()
                return
            except Exception:  # a bug; keep the subscription alive
                log.exception("event subscription: reading the next event failed")
                SyncBackend.sleep(BACKOFF_MIN_S)
                continue
            if event is None:
                continue
            try:
                SyncHandlers.call(self.handler, event)
            except Exception:
                self.errors += 1
                log.exception("event handler %r failed on %s %s", self.handler, event.type,
                              event.id)

    @property
    def last_id(self) -> str | None:
        return self.stream.last_id

    @property
    def stats(self) -> DeliveryStats:
        return self.stream.stats

    @property
    def running(self) -> bool:
        return self._task is not None and not self.stream.closed

    def stop(self) -> None:
        """Stop receiving; waits for the handler's current call to return."""
        self.stream.close()
        if self._task is not None:
            SyncBackend.join(self._task)

    def __enter__(self) -> SyncSubscription:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Subscription({self.handler!r}, {self.stream!r})"


def subscribe(gang: Gang, swarms: Sequence[str] | None, handler: SyncHandler,
                    types: str | Iterable[str] | None, options: dict[str, Any]
                    ) -> SyncSubscription:
    """What ``Swarm.subscribe``/``Gang.subscribe`` do: a started subscription."""
    options.setdefault("on_gap", "event")
    return SyncSubscription(SyncEventStream(gang, swarms, types, **options),
                                   handler).start()
