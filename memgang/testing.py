"""A pytest plugin for testing your own agents against a real, private Redis.

Installed with memgang (entry point ``pytest11``), it offers:

- ``memgang_server``: one embedded redis-server for the whole test run (session scope);
- ``memgang_gang``: a :class:`memgang.Gang` connected to it, closed after the test;
- ``memgang_swarm``: a fresh, empty swarm for each test (a unique name), so tests never see
  each other's memory and no flush is needed between them.

``MEMGANG_TEST_URL`` points the fixtures at a server of your own instead (a test database).

An in-process fakeredis mode is not offered: memgang's scripts call ``redis.sha1hex``, which
fakeredis's Lua runtime does not provide, so they cannot pass there (see README).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from ._sync.gang import Gang, Swarm, connect
from .server import EmbeddedServer

ENV_TEST_URL = "MEMGANG_TEST_URL"


def fresh_swarm_name(prefix: str = "t") -> str:
    """A swarm name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def memgang_server() -> Iterator[EmbeddedServer | None]:
    """The embedded redis-server shared by the run (``None`` with MEMGANG_TEST_URL)."""
    if os.environ.get(ENV_TEST_URL):
        yield None
        return
    server = EmbeddedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def memgang_gang(memgang_server: EmbeddedServer | None) -> Iterator[Gang]:
    url = os.environ.get(ENV_TEST_URL) or (memgang_server.url if memgang_server else None)
    gang = connect(url)
    try:
        yield gang
    finally:
        gang.close()


@pytest.fixture
def memgang_swarm(memgang_gang: Gang) -> Swarm:
    return memgang_gang.swarm(fresh_swarm_name())
