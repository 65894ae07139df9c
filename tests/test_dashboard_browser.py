"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

The test serves the dashboard itself (uvicorn in a thread, on a free 127.0.0.1 port) against a
private redis-server while agents write, and looks at the page the way a person would: the
agents are listed, a new write shows up, Redis going away shows as disconnected and then
recovers, and so does a restart of the dashboard server. Waiting is Playwright's
``wait_for`` with a timeout, never a sleep. A screenshot of each run is kept under
``test-artifacts/`` (``MEMGANG_UPDATE_SCREENSHOT=1`` also copies one to
``docs/img/dashboard.png`` for the README).

Chromium comes from ``apt-get install -y chromium chromium-driver`` (``make test`` does it);
where it is missing these tests FAIL saying so, unless ``MEMGANG_SKIP_BROWSER=1``.
Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memgang
from memgang.dashboard.app import BackgroundDashboard
from memgang.server import EmbeddedServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
README_SHOT = ROOT / "docs" / "img" / "dashboard.png"
APT_COMMAND = "apt-get install -y chromium chromium-driver"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SWARM = "report-42"
WAIT_MS = 15_000  # generous bound for things that take a poll or a restart
POLL_S = 0.2  # the dashboard's poll interval: how fast it notices Redis going away


def chromium_path() -> str:
    """The system Chromium (``MEMGANG_CHROMIUM``, else ``chromium`` on PATH, else
    /usr/bin/chromium), or a loud failure (a loud skip with MEMGANG_SKIP_BROWSER=1)."""
    wanted = os.environ.get("MEMGANG_CHROMIUM")
    candidates = [wanted] if wanted else [shutil.which("chromium"), "/usr/bin/chromium"]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    message = (f"headless Chromium is not installed ({wanted or 'chromium'} not found), so "
               f"the dashboard's browser tests cannot run. Install it with:\n\n"
               f"    {APT_COMMAND}\n\n(make test does this; MEMGANG_SKIP_BROWSER=1 skips)")
    if os.environ.get("MEMGANG_SKIP_BROWSER") == "1":
        pytest.skip(f"!!! BROWSER TESTS SKIPPED (MEMGANG_SKIP_BROWSER=1): {message}")
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A persistent Chromium context on a fresh profile, dark color scheme."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright's Python package: "
                    "pip install -e '.[dev]' (never `playwright install`: the system "
                    "Chromium is used)", pytrace=False)
    profile = tempfile.mkdtemp(prefix="memgang-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1440, "height": 1000}, color_scheme="dark",
                reduced_motion="no-preference")
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        page.close()
    assert not errors, f"the page raised: {errors}"


class Member(memgang.AgentMixin):
    """An agent of the flock: present (heartbeat, role), no handlers."""


class Flock:
    """A small swarm at work: readers write chunks, summarizers build on them (derived_from
    and compute-once), a reducer builds on the summaries; a background thread keeps writing.

    ``lively=True`` adds what only a still picture needs: the agents join with their roles
    (one leaves again), the reducer holds a lock another agent queues for, and compute-once
    calls take time, so there is time to save.
    """

    def __init__(self, url: str, *, lively: bool = False) -> None:
        self.gang = memgang.connect(url)
        self.swarm = self.gang.swarm(SWARM)
        self.lively = lively
        self.members: list[Member] = []
        names = [("reader-1", "reader"), ("reader-2", "reader"), ("reader-3", "reader"),
                 ("summarizer-1", "summarizer"), ("summarizer-2", "summarizer"),
                 ("reducer", "reducer")]
        if lively:
            self.members = [Member().join_gang(self.swarm, n, role=r) for n, r in names]
            agents = [m.memory for m in self.members]
        else:
            agents = [self.swarm.agent(n) for n, _ in names]
        self.readers, self.summarizers, self.reducer = agents[:3], agents[3:5], agents[5]
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._round_lock = threading.Lock()  # held by the background writer during a round
        self._threads: list[threading.Thread] = []
        self._lease: Any = None
        self.chunks: list[memgang.MemoryRef] = []

    def _summarize(self) -> dict[str, str]:
        if self.lively:
            time.sleep(0.02)  # the work that compute-once saves the second time
        return {"summary": "..."}

    def round(self, i: int) -> None:
        reader = self.readers[i % len(self.readers)]
        chunk = reader.write(f"chunk-{i}", {"text": f"section {i % 5} " * (20 + i % 40)},
                             group="chunks", context=SWARM)
        self.chunks.append(chunk)
        summarizer = self.summarizers[i % len(self.summarizers)]
        # the same section twice: the second summarizer reuses the first one's work
        summarizer.compute_once("summarize", {"section": i % 5}, self._summarize)
        summary = summarizer.write(f"summary-{i}", {"text": "summary"}, group="summaries",
                                   context=SWARM, derived_from=self.chunks[-2:])
        if i % 3 == 2:
            self.reducer.write("global/report", {"upto": i}, group="reports",
                               derived_from=[summary])

    def _spawn(self, fn: Callable[[], None]) -> None:
        thread = threading.Thread(target=fn, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self, rounds: int = 12) -> Flock:
        for member in self.members:
            member.start()
        for i in range(rounds):
            self.round(i)
        self.reducer.share_knowledge("insight", {"tip": "reuse summaries by reference"})
        for agent in self.summarizers:
            agent.flush_stats()
        if self.lively:
            self.members[2].leave_gang()  # reader-3 is done: shown as gone
            self.readers = self.readers[:2]
            self._lease = self.reducer.lock("global/plan", mode="write", lease_ms=20_000)
            self._lease.__enter__()

            def wait_for_the_plan() -> None:
                with self.summarizers[1].lock("global/plan", mode="write", timeout_s=30):
                    pass

            self._spawn(wait_for_the_plan)

        def keep_writing() -> None:
            i = rounds
            while not self._stop.wait(0.25):
                with self._round_lock:
                    if self._paused.is_set():
                        continue
                    try:
                        self.round(i)
                    except memgang.Error:
                        continue  # Redis is being restarted by the test
                i += 1

        self._spawn(keep_writing)
        return self

    def pause(self) -> None:
        """Stop the background writes (returns once a round in progress is done)."""
        self._paused.set()
        with self._round_lock:
            pass

    def stop(self) -> None:
        self._stop.set()
        if self._lease is not None:
            self._lease.__exit__(None, None, None)
        for thread in self._threads:
            thread.join(30)
        for member in self.members:
            member.leave_gang()
        self.gang.close()


@pytest.fixture
def redis_server(private_server: Callable[..., EmbeddedServer]) -> EmbeddedServer:
    return private_server()


def _flock(url: str, lively: bool) -> Iterator[Flock]:
    f = Flock(url, lively=lively)
    try:
        yield f.start()
    finally:
        f.stop()


@pytest.fixture
def flock(redis_server: EmbeddedServer) -> Iterator[Flock]:
    yield from _flock(redis_server.url, lively=False)


@pytest.fixture
def lively_flock(redis_server: EmbeddedServer) -> Iterator[Flock]:
    yield from _flock(redis_server.url, lively=True)


@pytest.fixture
def dashboard(redis_server: EmbeddedServer) -> Iterator[BackgroundDashboard]:
    with BackgroundDashboard(redis_server.url, SWARM, poll_s=POLL_S, timeout_s=1.0) as dash:
        yield dash


def connection(page: Any, state: str) -> Any:
    return page.locator(f'#conn[data-state="{state}"]')


def screenshot(page: Any, name: str, version: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}-redis{version}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_page_shows_the_agents_and_a_new_write_within_a_second(
        page: Any, lively_flock: Flock, dashboard: BackgroundDashboard,
        redis_server: EmbeddedServer) -> None:
    flock = lively_flock
    page.goto(dashboard.address)
    connection(page, "live").wait_for(timeout=WAIT_MS)
    for name in ("reader-1", "reader-2", "reader-3", "summarizer-1", "summarizer-2",
                 "reducer"):
        page.locator(f'#agents tr[data-agent="{name}"]').wait_for(timeout=WAIT_MS)
    # the flock: readers -> summarizers -> reducer, drawn as edges
    page.locator('#flock path[data-edge="reader-1\u2192summarizer-1"]').wait_for(
        timeout=WAIT_MS)
    page.locator('#flock path[data-edge="summarizer-2\u2192reducer"]').wait_for(
        timeout=WAIT_MS)
    page.locator("#m-hits").filter(has_not_text="0").wait_for(timeout=WAIT_MS)

    ref = flock.summarizers[0].write("summary-live", {"text": "fresh"}, group="summaries")
    page.locator(f'#latest tr[data-key="{ref.key}"][data-version="{ref.version}"]').wait_for(
        timeout=1000)
    page.locator('#agents tr[data-agent="summarizer-1"][data-status="alive"]').wait_for(
        timeout=WAIT_MS)
    page.locator('#agents tr[data-agent="reader-3"][data-status="gone"]').wait_for(
        timeout=WAIT_MS)
    page.locator('#locks tr[data-holders="reducer"][data-queue="summarizer-2"]').wait_for(
        timeout=WAIT_MS)

    page.wait_for_timeout(1200)  # let the layout settle for the picture (not an assertion)
    shot = screenshot(page, "dashboard", ".".join(map(str, redis_server.version[:2])))
    if os.environ.get("MEMGANG_UPDATE_SCREENSHOT") == "1":  # refresh the README's picture
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SHOT)


def test_redis_restart_shows_disconnected_then_recovers(
        page: Any, flock: Flock, dashboard: BackgroundDashboard,
        redis_server: EmbeddedServer) -> None:
    page.goto(dashboard.address)
    connection(page, "live").wait_for(timeout=WAIT_MS)

    redis_server.stop(kill=True)
    connection(page, "redis-down").wait_for(timeout=WAIT_MS)
    assert page.locator("#banner").is_visible()
    screenshot(page, "dashboard-redis-down", ".".join(map(str, redis_server.version[:2])))

    redis_server.start()
    connection(page, "live").wait_for(timeout=WAIT_MS)
    assert not page.locator("#banner").is_visible()
    # the subscription is back too, not only the poller: a write after the restart shows.
    # The background writes stop first: the page lists the 12 latest writes, and the hub may
    # still be in its reconnect backoff, so this write can arrive in one catch-up batch with
    # everything written since the restart and never be among the 12 shown
    flock.pause()
    with memgang.connect(redis_server.url) as gang:
        ref = gang.swarm(SWARM).agent("reader-1").write("after-restart", {"ok": True})
    page.locator(f'#latest tr[data-key="{ref.key}"]').wait_for(timeout=WAIT_MS)


def test_the_page_reconnects_when_the_dashboard_server_restarts(
        page: Any, flock: Flock, redis_server: EmbeddedServer) -> None:
    first = BackgroundDashboard(redis_server.url, SWARM, poll_s=POLL_S).start()
    port = first.port
    try:
        page.goto(first.address)
        connection(page, "live").wait_for(timeout=WAIT_MS)
    finally:
        first.stop()
    connection(page, "offline").wait_for(timeout=WAIT_MS)

    with BackgroundDashboard(redis_server.url, SWARM, port=port, poll_s=POLL_S):
        connection(page, "live").wait_for(timeout=WAIT_MS)
        page.locator('#agents tr[data-agent="reducer"]').wait_for(timeout=WAIT_MS)
