"""The dashboard's web server: a Starlette app that streams the swarm's state to the page.

Routes::

    GET /                 the page (static/index.html)
    GET /static/...       its script and style: every asset ships in the package, no CDN
    GET /api/state        the current state as JSON (?swarm=NAME)
    GET /api/stream       the same state as server-sent events, pushed on every change
    GET /healthz          "ok"

A :class:`Hub` runs three asyncio tasks next to the server: the event subscription (folded
into a :class:`~memgang.dashboard.state.DashboardState`), a poller (presence, locks, counters,
and the Redis connection status), and a pusher that wakes the page's streams at most every
``push_s`` when something changed (and every second anyway, so lease countdowns and the rate
chart move). Redis going away shows as ``status.redis == "disconnected"`` and every loop keeps
retrying; nothing the server receives, however malformed, stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.exceptions
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import aio
from ..codec import dumps_json
from ..config import redact
from ..errors import Error, EventGap
from . import sources
from .state import DashboardState

log = logging.getLogger("memgang.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
# errors that mean "Redis is not there right now": retried, shown as disconnected
TRANSIENT = (Error, redis.exceptions.RedisError, OSError, asyncio.TimeoutError)

EventSource = Callable[[aio.Gang, "str | None", "str | None"], AsyncIterator[Any]]
Poller = Callable[[aio.Gang, str], Awaitable[sources.Polled]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Hub:
    """Keeps the state up to date and tells the page's streams when it moved."""

    def __init__(self, url: str, swarm: str | None = None, *, poll_s: float = 1.0,
                 push_s: float = 0.1, timeout_s: float = 3.0,
                 events: EventSource = sources.event_stream,
                 poll: Poller = sources.poll_swarm) -> None:
        self.url = url
        self.swarm = swarm
        self.poll_s = poll_s
        self.push_s = push_s
        self.timeout_s = timeout_s
        self.events = events
        self.poll = poll
        self.state = DashboardState(swarm)
        self.gang: aio.Gang | None = None
        self.tick = 0
        self._tick_event = asyncio.Event()
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._cache: dict[str | None, tuple[int, bytes]] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(fn(), name=f"memgang-dashboard-{fn.__name__}")
                       for fn in (self._poll_loop, self._event_loop, self._push_loop)]

    async def stop(self) -> None:
        self._stopping.set()
        self._wake()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.gang is not None:
            with contextlib.suppress(Exception):
                await self.gang.close()
            self.gang = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _down(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}".strip()
        if self.state.connected is not False:
            log.warning("Redis at %s is unreachable: %s", redact(self.url), message)
        self.state.set_connection(False, now_ms(), message[:300])
        self._connected.clear()

    # -- the poller: connection status, presence, locks, counters ---------------------------
    async def _poll_loop(self) -> None:
        while not self.stopping:
            try:
                if self.gang is None:
                    self.gang = await asyncio.wait_for(
                        aio.connect(self.url, connect_timeout_s=self.timeout_s), self.timeout_s)
                await self._poll_once(self.gang)
            except TRANSIENT as exc:
                self._down(exc)
            except Exception:  # a bug in a poll must not end the loop
                log.exception("dashboard poll failed")
            else:
                if self.state.connected is not True:
                    log.info("Redis at %s is reachable", redact(self.url))
                self.state.set_connection(True, now_ms())
                self._connected.set()
            self.state.set_events(self._feed_live())
            await self._pause(self.poll_s)

    def _feed_live(self) -> bool | None:
        """Whether the event feed is live (None: it has not started): Redis answering the
        poller says nothing about it, since the event hub reconnects on its own backoff."""
        hub = None if self.gang is None else self.gang.events_hub
        return None if hub is None else hub.live

    async def _poll_once(self, gang: aio.Gang) -> None:
        # every call is bounded: a frozen Redis (SIGSTOP) must show as down, not hang us
        names = [self.swarm] if self.swarm is not None else list(self.state.swarms)
        if not names:  # nothing to show yet: still learn the server's clock
            server_ms = await asyncio.wait_for(sources.server_time_ms(gang), self.timeout_s)
            self.state.set_server_time(server_ms, now_ms())
            return
        for name in names:
            st = self.state.swarm(name)
            polled = await asyncio.wait_for(self.poll(gang, name), self.timeout_s)
            t = now_ms()
            self.state.set_server_time(polled.server_ms, t)
            st.set_presence(polled.presence, polled.roles, t)
            st.set_locks(polled.locks)
            st.set_counters(polled.counters)
        self.state.touch()

    # -- the subscription ---------------------------------------------------------------------
    async def _event_loop(self) -> None:
        # first everything the log still holds, so the page starts with the swarm's recent
        # past; after a failure, on from the last event applied (all swarms: from now, as
        # cursors are per swarm and replaying everything again would count it twice)
        since: str | None = "start"
        while not self.stopping:
            await self._connected.wait()
            gang = self.gang
            if gang is None:
                await self._pause(self.poll_s)
                continue
            try:
                async for event in self.events(gang, self.swarm, since):
                    self.state.apply(sources.event_mapping(event), now_ms())
            except EventGap as exc:  # only with on_gap="raise": carry on from now
                log.warning("events were lost (%s); following live from here", exc)
            except TRANSIENT as exc:
                self._down(exc)
            except Exception:
                log.exception("dashboard subscription failed; resubscribing")
            since = self._last_id() or "now"
            await self._pause(min(self.poll_s, 0.5))

    def _last_id(self) -> str | None:
        if self.swarm is not None:
            return self.state.swarm(self.swarm).last_id
        return None

    # -- pushing to the page ------------------------------------------------------------------
    def _wake(self) -> None:
        self.tick += 1
        event, self._tick_event = self._tick_event, asyncio.Event()
        event.set()

    async def _push_loop(self) -> None:
        seen = -1
        last_push = 0.0
        while not self.stopping:
            await asyncio.sleep(self.push_s)
            t = time.monotonic()
            if self.state.generation != seen or t - last_push >= 1.0:
                seen = self.state.generation
                last_push = t
                self._wake()

    async def next_tick(self, after: int, timeout_s: float) -> bool:
        """Wait until the state is pushed past tick ``after``; False on timeout."""
        if self.tick > after:
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._tick_event.wait(), timeout_s)
            return True
        return False

    def snapshot_json(self, swarm: str | None) -> bytes:
        cached = self._cache.get(swarm)
        if cached is not None and cached[0] == self.tick:
            return cached[1]
        body = self.state.snapshot(swarm, now_ms())
        body["url"] = redact(self.url)
        data = dumps_json(body)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[swarm] = (self.tick, data)
        return data


def create_app(url: str, swarm: str | None = None, *, allowed_hosts: list[str] | None = None,
               **hub_options: Any) -> Starlette:
    """The dashboard as an ASGI app; ``allowed_hosts`` guards against DNS rebinding
    (default: loopback names only; ``["*"]`` when serving other hosts on purpose)."""
    hub = Hub(url, swarm, **hub_options)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def state(request: Request) -> Response:
        return Response(hub.snapshot_json(request.query_params.get("swarm") or None),
                        media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        swarm_name = request.query_params.get("swarm") or None

        async def frames() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n\n"
            seen = -1
            while not hub.stopping:
                if await hub.next_tick(seen, 15.0):
                    seen = hub.tick
                    yield b"event: state\ndata: " + hub.snapshot_json(swarm_name) + b"\n\n"
                else:
                    yield b": keep-alive\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream", headers={
            "Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/api/stream", stream),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(TrustedHostMiddleware,
                               allowed_hosts=allowed_hosts or LOOPBACK_HOSTS)],
        lifespan=lifespan,
    )
    app.state.hub = hub
    return app


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def _uvicorn_config(app: Starlette, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=1, lifespan="on")


def serve(url: str, swarm: str | None = None, *, host: str = "127.0.0.1", port: int = 8765,
          log_level: str = "warning") -> None:
    """Run the dashboard until interrupted (``memgang dashboard``)."""
    import uvicorn

    app = create_app(url, swarm, allowed_hosts=None if is_loopback(host) else ["*"])
    uvicorn.Server(_uvicorn_config(app, host, port, log_level)).run()


class BackgroundDashboard:
    """The dashboard served from a thread of this process (tests, and a demo beside it).

    ::

        with BackgroundDashboard(url, "report-42") as dash:
            print(dash.address)
    """

    def __init__(self, url: str, swarm: str | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, log_level: str = "warning", start_timeout_s: float = 10.0,
                 **hub_options: Any) -> None:
        import threading

        import uvicorn

        from ..server import free_port

        self.host = host
        self.port = port or free_port()
        self.app = create_app(url, swarm, **hub_options)
        self.server = uvicorn.Server(_uvicorn_config(self.app, host, self.port, log_level))
        self._thread = threading.Thread(target=self.server.run, name="memgang-dashboard",
                                        daemon=True)
        self._start_timeout_s = start_timeout_s

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
        return hub

    def start(self) -> BackgroundDashboard:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.address}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)

    def __enter__(self) -> BackgroundDashboard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
