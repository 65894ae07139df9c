"""The dashboard's server over HTTP (no browser): the state and its stream, bad input, Redis
unreachable, what it serves and to whom, and the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import memgang
from memgang.dashboard.app import STATIC, BackgroundDashboard
from memgang.server import EmbeddedServer, free_port

BOUND_S = 15.0  # an upper bound on waits for the dashboard to catch up, never an assertion


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def state(dash: BackgroundDashboard) -> dict[str, Any]:
    status, body = get(dash.address + "api/state")
    assert status == 200
    data: dict[str, Any] = json.loads(body)
    return data


def wait_state(dash: BackgroundDashboard, check: Callable[[dict[str, Any]], bool]
               ) -> dict[str, Any]:
    deadline = time.monotonic() + BOUND_S
    while True:
        data = state(dash)
        if check(data) or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def latest_keys(data: dict[str, Any]) -> set[str]:
    return {o["key"] for o in data["objects"]["latest"]}


@pytest.fixture
def dash(url: str, swarm: memgang.Swarm) -> Iterator[BackgroundDashboard]:
    with BackgroundDashboard(url, swarm.name, poll_s=0.2) as d:
        wait_state(d, lambda s: s["status"]["redis"] == "connected")
        yield d


def test_a_write_reaches_the_state_and_the_stream(dash: BackgroundDashboard,
                                                  swarm: memgang.Swarm) -> None:
    request = urllib.request.Request(dash.address + "api/stream")
    with urllib.request.urlopen(request, timeout=5) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        ref = swarm.agent("reader-1").write("chunk-1", {"text": "t"}, group="chunks")
        found = None
        for _ in range(200):  # frames come at least every second; each is one whole state
            line = stream.readline().decode()
            if line.startswith("data: "):
                data = json.loads(line[6:])
                if ref.key in latest_keys(data):
                    found = data
                    break
    assert found is not None, "the write never reached the stream"
    assert found["swarm"] == swarm.name
    assert found["objects"]["by_agent"] == {"reader-1": 1}
    assert found["status"]["redis"] == "connected"
    assert ref.key in latest_keys(state(dash))


def test_malformed_messages_on_the_channel_do_not_stop_the_dashboard(
        dash: BackgroundDashboard, swarm: memgang.Swarm, raw: redis.Redis) -> None:
    for junk in (b"not json", b"[1, 2]", b"{}", b'{"type": 5}', b"\xff\xfe",
                 json.dumps({"id": "1-1", "type": "memory_updated", "swarm": swarm.name,
                             "key": 7, "derived_from": "x", "scope": 3}).encode()):
        raw.publish(swarm.keys.channel, junk)
    ref = swarm.agent("reader-1").write("after-junk", 1)
    data = wait_state(dash, lambda s: ref.key in latest_keys(s))
    assert ref.key in latest_keys(data)
    assert data["status"]["redis"] == "connected"


def test_redis_unreachable_shows_disconnected_then_connects_when_it_appears(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server()
    srv.stop()
    with BackgroundDashboard(srv.url, "s", poll_s=0.1, timeout_s=1.0) as d:
        data = wait_state(d, lambda s: s["status"]["redis"] == "disconnected")
        assert data["status"]["redis"] == "disconnected"
        assert data["status"]["error"]
        srv.start()
        data = wait_state(d, lambda s: s["status"]["redis"] == "connected")
        assert data["status"]["redis"] == "connected"
        with memgang.connect(srv.url) as gang:
            ref = gang.swarm("s").agent("a").write("k", 1)
        assert ref.key in latest_keys(wait_state(d, lambda s: ref.key in latest_keys(s)))


def test_the_event_feed_shows_reconnecting_until_its_subscription_is_back(
        private_server: Callable[..., EmbeddedServer]) -> None:
    # the poller and the event hub reconnect on their own schedules: Redis answering the
    # poller must not make the page claim that events flow while the hub is still away
    srv = private_server()
    with BackgroundDashboard(srv.url, "s", poll_s=0.1, timeout_s=1.0) as d:
        data = wait_state(d, lambda s: s["status"]["events"] == "live")
        assert (data["status"]["redis"], data["status"]["events"]) == ("connected", "live")
        srv.stop()
        data = wait_state(d, lambda s: s["status"]["events"] == "reconnecting")
        assert data["status"]["events"] == "reconnecting"
        srv.start()
        data = wait_state(d, lambda s: s["status"]["events"] == "live")
        assert data["status"]["events"] == "live"
        assert data["status"]["redis"] == "connected"
        with memgang.connect(srv.url) as gang:
            ref = gang.swarm("s").agent("a").write("after-restart", 1)
        assert ref.key in latest_keys(wait_state(d, lambda s: ref.key in latest_keys(s)))


def test_a_frozen_redis_shows_as_disconnected_until_it_answers_again(
        private_server: Callable[..., EmbeddedServer]) -> None:
    srv = private_server()
    with BackgroundDashboard(srv.url, "s", poll_s=0.1, timeout_s=0.5) as d:
        wait_state(d, lambda s: s["status"]["redis"] == "connected")
        srv.pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            data = wait_state(d, lambda s: s["status"]["redis"] == "disconnected")
            assert data["status"]["redis"] == "disconnected"
        finally:
            srv.resume()
        data = wait_state(d, lambda s: s["status"]["redis"] == "connected")
        assert data["status"]["redis"] == "connected"


def test_it_serves_its_own_assets_and_only_to_local_names(dash: BackgroundDashboard) -> None:
    status, page = get(dash.address)
    assert status == 200 and b"/static/app.js" in page
    for name in ("app.js", "style.css"):
        status, body = get(dash.address + "static/" + name)
        assert status == 200 and body
    # nothing is fetched from elsewhere: no http(s) URL outside the SVG namespace
    for path in STATIC.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert urls == set(), (path.name, urls)
    # a page on another site that resolves its name to 127.0.0.1 (DNS rebinding) gets nothing
    status, _ = get(dash.address + "api/state", {"Host": "attacker.example"})
    assert status == 400


def test_the_command_needs_the_extra_and_says_how_to_install_it(url: str) -> None:
    block = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None; "
             "from memgang.cli import main; main()")
    result = subprocess.run(
        [sys.executable, "-c", block, "dashboard", "--url", url, "--port", str(free_port())],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "pip install 'memgang[dashboard]'" in result.stderr


def test_the_command_serves_the_page_on_localhost(url: str) -> None:
    port = free_port()
    with subprocess.Popen(
            [sys.executable, "-m", "memgang", "dashboard", "--url", url, "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            assert f"http://127.0.0.1:{port}/" in banner
            deadline = time.monotonic() + BOUND_S
            while True:
                try:
                    status, _ = get(f"http://127.0.0.1:{port}/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            assert status == 200
        finally:
            proc.terminate()
            proc.wait(15)
    assert proc.returncode in (0, -15)


def test_bad_options_are_usage_errors(url: str) -> None:
    from click.testing import CliRunner

    from memgang.cli import main

    result = CliRunner().invoke(main, ["dashboard", "--url", url, "--swarm", "bad name"])
    assert result.exit_code == 2 and "swarm" in result.output
    result = CliRunner(env={"MEMGANG_URL": ""}).invoke(main, ["dashboard"])
    assert result.exit_code == 2 and "--url" in result.output
