"""``memgang watch``: see the gang think, one line per event, as it happens.

On a terminal each event is one aligned, coloured line (time, type, key, agent, version and a
short preview of the value); ``--json`` prints each event as one JSON object per line,
flushed at once, for pipes; ``--stats`` keeps a live panel instead (events/s by type, the
busiest agents, current lock holders, conflicts), redrawn in place.

It runs on a memgang event stream, so it misses nothing: it survives a Redis restart
(reconnects, then catches up from the log), reports a trimmed log as a gap line, and reports
malformed or foreign messages on memgang channels on stderr without stopping. Ctrl-C or
SIGTERM ends it with exit status 0.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import click

from . import errors
from ._backends import SyncBackend
from ._sync.events import SyncEventStream
from ._sync.gang import Gang
from .cli import EXIT_USAGE, fail, gang_for, main, url_option
from .codec import dumps_json
from .events import EVENT_TYPES, GAP, Event

COLOURS: dict[str, dict[str, Any]] = {
    "memory_updated": {"fg": "green"},
    "memory_deleted": {"fg": "red"},
    "memory_expired": {"fg": "yellow"},
    "knowledge_shared": {"fg": "cyan", "bold": True},
    "lock_acquired": {"fg": "magenta"},
    "lock_released": {"fg": "magenta", "dim": True},
    "lock_expired": {"fg": "yellow", "bold": True},
    "conflict_detected": {"fg": "bright_red", "bold": True},
    "sync_complete": {"fg": "blue", "bold": True},
    "agent_joined": {"fg": "blue"},
    "agent_left": {"fg": "blue", "dim": True},
    GAP: {"fg": "white", "bg": "red", "bold": True},
}
TYPE_WIDTH = max(len(t) for t in (*EVENT_TYPES, GAP))
KEY_WIDTH = 40
AGENT_WIDTH = 14
STATS_WINDOW_S = 10.0


class _Stop(Exception):
    """Raised by the SIGTERM handler to end the loop like Ctrl-C does."""


def _clip(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _clip_left(text: str, width: int) -> str:
    """Keep the end (a key's id says the most)."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def _short_key(event: Event, many_swarms: bool) -> str:
    if event.key is None:
        topic = event.data.get("topic")
        return f"#{topic}" if isinstance(topic, str) else "-"
    if many_swarms or not event.key.startswith("{"):
        return event.key
    return event.key[event.key.find("}/") + 2:]


def preview(event: Event, read_value: Any = None) -> str:
    """The short text at the end of a line: the value, the topic's value, or the details."""
    data = dict(event.data)
    if event.type == GAP:
        missing = data.get("missing")
        lost = "events" if missing is None else f"{missing} events"
        return f"{lost} lost after {data.get('last_seen')}: {data.get('detail')}"
    if event.type == "knowledge_shared":
        return dumps_json(data.get("value")).decode()
    if event.type == "memory_updated" and read_value is not None:
        return str(read_value)
    cause = data.pop("cause", None)
    data.pop("size", None)
    bits = [f"({cause})"] if cause else []
    if data:
        bits.append(dumps_json(data).decode())
    return " ".join(bits)


def format_line(event: Event, detail: str, *, width: int, many_swarms: bool = False,
                colour: bool = True) -> str:
    """One aligned line: time, type, key, agent, version, preview (clipped to ``width``)."""
    when = datetime.fromtimestamp(event.ts_ms / 1000).strftime("%H:%M:%S.%f")[:-3]
    kind = event.type.ljust(TYPE_WIDTH)
    key = _clip_left(_short_key(event, many_swarms), KEY_WIDTH).ljust(KEY_WIDTH)
    agent = _clip(event.agent or "-", AGENT_WIDTH).ljust(AGENT_WIDTH)
    # lock events carry the fencing token where memory events carry the version
    mark = "tok" if event.type.startswith("lock_") else "v"
    version = (f"{mark}{event.version}" if event.version else "").rjust(7)
    head = f"{when}  {kind}  {key}  {agent}  {version}  "
    tail = _clip(detail.replace("\n", " "), width - len(head))
    if not colour:
        return (head + tail).rstrip()
    style = COLOURS.get(event.type, {})
    return (click.style(when, dim=True) + "  " + click.style(kind, **style) + "  " + key
            + "  " + click.style(agent, fg="bright_blue") + "  " + version + "  "
            + click.style(tail, dim=True)).rstrip()


@dataclass
class WatchStats:
    """What ``--stats`` shows, updated event by event (sans-I/O: times are passed in)."""

    window_s: float = STATS_WINDOW_S
    started: float = 0.0
    total: int = 0
    recent: deque[tuple[float, str, str | None]] = field(default_factory=deque)
    locks: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (agent, mode)
    conflicts: int = 0
    last_conflicts: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    gaps: int = 0

    def add(self, event: Event, now: float) -> None:
        self.total += 1
        self.recent.append((now, event.type, event.agent))
        self._trim(now)
        if event.type == "lock_acquired" and event.key:
            self.locks[event.key] = (event.agent or "?", str(event.data.get("mode", "")))
        elif event.type in ("lock_released", "lock_expired") and event.key:
            held = self.locks.get(event.key)
            if held is not None and held[0] == event.agent:
                del self.locks[event.key]
        elif event.type == "conflict_detected":
            self.conflicts += 1
            self.last_conflicts.append(f"{event.key} by {event.agent}")
        elif event.type == GAP:
            self.gaps += 1

    def _trim(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - self.window_s:
            self.recent.popleft()

    def render(self, now: float, title: str) -> str:
        self._trim(now)
        # rates over the window, or over the time watched so far (at least a second)
        span = max(1.0, min(self.window_s, now - self.started))
        by_type = Counter(t for _, t, _ in self.recent)
        by_agent = Counter(a for _, _, a in self.recent if a)
        lines = [title, f"events: {self.total} total, {len(self.recent) / span:.1f}/s over "
                        f"the last {span:.0f}s; gaps: {self.gaps}", "",
                 "events/s by type"]
        for kind, n in by_type.most_common():
            lines.append(f"  {kind.ljust(TYPE_WIDTH)}  {n / span:8.1f}")
        if not by_type:
            lines.append("  (quiet)")
        lines += ["", "busiest agents (events/s)"]
        for agent, n in by_agent.most_common(5):
            lines.append(f"  {agent.ljust(AGENT_WIDTH)}  {n / span:8.1f}")
        if not by_agent:
            lines.append("  (none)")
        lines += ["", f"lock holders ({len(self.locks)})"]
        for name, (agent, mode) in sorted(self.locks.items())[:10]:
            lines.append(f"  {name}  {mode}  {agent}")
        lines += ["", f"conflicts: {self.conflicts}"]
        lines += [f"  {c}" for c in self.last_conflicts]
        return "\n".join(lines)


def _value_of(gang: Gang, event: Event) -> str | None:
    """The current value of a memory_updated event's object, as short JSON (best effort)."""
    if event.type != "memory_updated" or event.key is None:
        return None
    try:
        obj = gang.swarm(event.swarm).read(event.key)
        if obj is None:
            return "(gone)"
        text = dumps_json(obj.value).decode()
    except errors.Error as exc:
        return f"({type(exc).__name__})"
    except Exception as exc:  # a foreign value that is not msgpack, say
        return f"(unreadable: {type(exc).__name__})"
    return text if obj.version == event.version else f"(now v{obj.version}) {text}"


class _StderrHandler(logging.Handler):
    """memgang's warnings (reconnecting, malformed messages, gaps) as stderr lines."""

    def emit(self, record: logging.LogRecord) -> None:
        text = f"memgang: {record.getMessage()}"
        click.echo(click.style(text, fg="yellow"), err=True, color=sys.stderr.isatty())


def _log_to_stderr() -> None:
    logger = logging.getLogger("memgang")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler(logging.WARNING))
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)


def _run(gang: Gang, stream: SyncEventStream, out: TextIO, *, as_json: bool, stats: bool,
         many_swarms: bool, tty: bool, title: str) -> None:
    if as_json:
        for event in stream:
            out.write(event.to_json() + "\n")
            out.flush()
        return
    if stats:
        _run_stats(stream, out, tty=tty, title=title)
        return
    for event in stream:
        width = shutil.get_terminal_size((120, 24)).columns if tty else 200
        detail = preview(event, _value_of(gang, event))
        out.write(format_line(event, detail, width=width, many_swarms=many_swarms,
                              colour=tty) + "\n")
        out.flush()


def _run_stats(stream: SyncEventStream, out: TextIO, *, tty: bool, title: str) -> None:
    panel = WatchStats(started=time.monotonic())
    next_draw = 0.0
    while not stream.closed:
        event = stream.get(timeout_s=0.25)
        now = time.monotonic()
        if event is not None:
            panel.add(event, now)
        if now >= next_draw:
            text = panel.render(now, title)
            out.write(("\x1b[H\x1b[2J" + text + "\n") if tty else text + "\n\n")
            out.flush()
            next_draw = now + (0.5 if tty else 2.0)


@main.command()
@url_option
@click.argument("swarms", nargs=-1)
@click.option("--all", "all_swarms", is_flag=True, help="Watch every swarm.")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help=f"Only events of this type (repeatable): {', '.join(sorted(EVENT_TYPES))}.")
@click.option("--agent", help="Only events by this agent.")
@click.option("--match", metavar="GLOB", help="Only events whose key matches GLOB "
              "(on space/id, or on the full key if GLOB starts with '{').")
@click.option("--since", default="now", show_default=True, metavar="start|now|ID",
              help="Start with the whole log (start), new events (now), or after a log id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event, per line.")
@click.option("--stats", is_flag=True, help="A live panel of rates, agents, locks, conflicts.")
def watch(url: str | None, swarms: tuple[str, ...], all_swarms: bool, types: tuple[str, ...],
          agent: str | None, match: str | None, since: str, as_json: bool,
          stats: bool) -> None:
    """Print the events of SWARM... (or of every swarm with --all) as they happen."""
    if bool(swarms) == all_swarms:
        fail("name the swarm(s) to watch, or pass --all", EXIT_USAGE)
    if as_json and stats:
        fail("--json and --stats do not go together", EXIT_USAGE)
    out = sys.stdout
    tty = out.isatty()

    def _terminate() -> None:
        raise _Stop

    undo_signals = SyncBackend.on_stop_signals(_terminate)  # SIGINT and SIGTERM
    try:
        with gang_for(url) as gang:
            try:
                stream = gang.events(list(types) or None, swarms=list(swarms) or None,
                                     agent=agent, match=match, since=since, on_gap="event")
            except (errors.InvalidKey, errors.InvalidValue) as exc:
                fail(str(exc), EXIT_USAGE)
                return
            _log_to_stderr()
            what = " ".join(swarms) or "every swarm"
            try:
                with stream:
                    click.echo(f"memgang: watching {what} (since {since}); Ctrl-C to stop",
                               err=True)
                    _run(gang, stream, out, as_json=as_json, stats=stats,
                         many_swarms=all_swarms or len(swarms) > 1, tty=tty,
                         title=f"memgang watch {' '.join(swarms) or '--all'}")
            except (KeyboardInterrupt, _Stop):
                pass
    except (KeyboardInterrupt, _Stop):
        pass
    except BrokenPipeError:  # `memgang watch --json | head`
        sys.stderr.close()
    finally:
        undo_signals()
