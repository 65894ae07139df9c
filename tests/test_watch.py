"""``memgang watch`` end to end in a subprocess: JSON lines flushed as events happen, aligned
lines with value previews, the stats panel, malformed messages reported without dying, and
exit status 0 on SIGINT and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

import memgang
from memgang.cli import main
from memgang.cli_watch import KEY_WIDTH, TYPE_WIDTH, WatchStats, format_line, preview
from memgang.events import Event, parse_message
from memgang.testing import fresh_swarm_name

ROOT = Path(__file__).resolve().parent.parent


class Watch:
    """``memgang watch ARGS`` in a subprocess; lines of stdout read as they come."""

    def __init__(self, url: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memgang", "watch", *args, "--url", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
            env={**os.environ, "COLUMNS": "160"})
        assert self.proc.stderr is not None and self.proc.stdout is not None
        ready = self.proc.stderr.readline().decode()
        assert "watching" in ready, ready + self.proc.stderr.read().decode()
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._buffer = b""

    def lines(self, n: int, timeout_s: float = 10.0) -> list[str]:
        """The next ``n`` lines (fails if they do not come: output must be flushed)."""
        assert self.proc.stdout is not None
        out: list[str] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            chunk = self.proc.stdout.read()
            if chunk:
                self._buffer += chunk
            while b"\n" in self._buffer and len(out) < n:
                line, self._buffer = self._buffer.split(b"\n", 1)
                out.append(line.decode())
            if len(out) < n:
                time.sleep(0.01)
        assert len(out) == n, f"got {out} (stderr: {self.stderr()})"
        return out

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(20)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        return (self.proc.stderr.read() or b"").decode()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for w in started:
        w.close()


def test_watch_json_prints_each_event_as_it_happens_and_exits_0_on_sigint(
        url: str, raw: redis.Redis, watches: list[Watch]) -> None:
    name = fresh_swarm_name()
    w = Watch(url, name, "--json")
    watches.append(w)
    gang = memgang.connect(url)
    try:
        me = gang.swarm(name).agent("reader-1")
        me.write("summary-3", {"text": "Q3 up"}, group="summarizers")
        first = json.loads(w.lines(1)[0])  # flushed at once, before anything else happens
        assert (first["type"], first["key"], first["agent"], first["version"]) == \
            ("memory_updated", me.key("summary-3"), "reader-1", 1)
        assert first["scope"] == {"group": "summarizers", "context": None}
        raw.publish(f"{{{name}}}/_events", b"this is not an event")
        me.share_knowledge("trend", {"up": True})
        raw.hset(me.key("summary-3"), "v", b"\xa3abc")  # another tool writes
        rest = [json.loads(line) for line in w.lines(2)]
        me.delete("summary-3")
        rest += [json.loads(line) for line in w.lines(1)]
        assert [(e["type"], e["agent"]) for e in rest] == [
            ("knowledge_shared", "reader-1"), ("memory_updated", None),
            ("memory_deleted", "reader-1")]
        assert [e["n"] for e in [first, *rest]] == [1, 2, 3, 4]
        assert w.stop(signal.SIGINT) == 0
        assert "malformed event" in w.stderr()
    finally:
        gang.close()


def test_watch_on_a_pipe_prints_aligned_lines_with_values_and_exits_0_on_sigterm(
        url: str, watches: list[Watch]) -> None:
    names = [fresh_swarm_name(), fresh_swarm_name()]
    w = Watch(url, *names, "--type", "memory_updated", "--type", "memory_expired")
    watches.append(w)
    gang = memgang.connect(url)
    try:
        a = gang.swarm(names[0]).agent("reader-1")
        b = gang.swarm(names[1]).agent("reader-2")
        a.write("summary-3", {"text": "revenue up 12%"})
        a.share_knowledge("skipped", 1)  # filtered out
        b.write("summary-4", [1, 2, 3], ttl_s=0.05)
        lines = w.lines(3)
        assert "memory_updated" in lines[0] and "}/reader-1/summary-3" in lines[0]
        assert "  reader-1  " in lines[0] and "v1" in lines[0]
        assert '{"text":"revenue up 12%"}' in lines[0]
        assert "}/reader-2/summary-4" in lines[1] and "[1,2,3]" in lines[1]
        assert "memory_expired" in lines[2] and "(ttl)" in lines[2]
        assert "\x1b[" not in "".join(lines)  # no colour on a pipe
        # columns line up: time, type, key, agent at the same places on every line
        agent_at = 12 + 2 + TYPE_WIDTH + 2 + KEY_WIDTH + 2
        assert [line[agent_at:agent_at + 8] for line in lines] == \
            ["reader-1", "reader-2", "-       "]
        assert w.stop(signal.SIGTERM) == 0
    finally:
        gang.close()


def test_watch_all_and_stats_panel(url: str, watches: list[Watch]) -> None:
    name = fresh_swarm_name()
    w = Watch(url, "--all", "--stats")
    watches.append(w)
    gang = memgang.connect(url)
    try:
        gang.swarm(name).agent("busy").write("k", 1)
        deadline = time.monotonic() + 10
        text = ""
        while not ("busy" in text and "conflicts:" in text) and time.monotonic() < deadline:
            text += "\n" + w.lines(1)[0]
        assert "events/s by type" in text and "busy" in text and "lock holders" in text
        assert w.stop(signal.SIGINT) == 0
    finally:
        gang.close()


@pytest.mark.parametrize(("args", "message"), [
    ([], "name the swarm"),
    (["s", "--all"], "name the swarm"),
    (["s", "--json", "--stats"], "do not go together"),
    (["s", "--type", "memory_update"], "unknown event type"),
    (["s", "--since", "yesterday"], "since must be"),
    (["bad{name"], "forbidden character"),
])
def test_watch_usage_errors_exit_2(url: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["watch", *args, "--url", url])
    assert result.exit_code == 2, result.output
    assert message in result.output


def event(**fields: object) -> Event:
    body = {"id": "1700000000000-0", "n": 1, "type": "memory_updated", "swarm": "s",
            "key": "{s}/reader-1/summary-3", "agent": "reader-1", "version": 7,
            "ts": 1700000000000, **fields}
    return parse_message(json.dumps(body))


def test_lines_are_clipped_to_the_terminal_and_say_what_happened() -> None:
    line = format_line(event(), '{"text":"' + "x" * 300 + '"}', width=140, colour=False)
    assert len(line) == 140 and line.endswith("…") and '{"text":"xxx' in line
    assert "reader-1/summary-3" in line and "{s}" not in line and "v7" in line
    gap = event(type="event_gap", key=None, agent=None, version=0, missing=5,
                last_seen="1-0", detail="the log was trimmed")
    assert "5 events lost after 1-0" in preview(gap)
    shared = event(type="knowledge_shared", key=None, topic="trend", value={"up": 1})
    assert preview(shared) == '{"up":1}'
    assert "#trend" in format_line(shared, "", width=120, colour=False)


def test_stats_panel_counts_rates_agents_locks_and_conflicts() -> None:
    panel = WatchStats(started=0.0)
    panel.add(event(agent="a"), 1.0)
    panel.add(event(type="lock_acquired", key="{s}/a/k", agent="a", mode="write"), 1.5)
    panel.add(event(type="conflict_detected", agent="b"), 2.0)
    text = panel.render(2.0, "memgang watch s")
    assert "memory_updated" in text and "{s}/a/k  write  a" in text and "conflicts: 1" in text
    panel.add(event(type="lock_released", key="{s}/a/k", agent="a"), 3.0)
    assert "lock holders (0)" in panel.render(30.0, "t")
    assert "(quiet)" in panel.render(30.0, "t")
