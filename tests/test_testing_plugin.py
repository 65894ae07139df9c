"""The pytest plugin users get with memgang (memgang.testing, loaded by entry point)."""

from __future__ import annotations

import memgang


def test_memgang_swarm_fixture_gives_a_fresh_empty_swarm(memgang_swarm: memgang.Swarm) -> None:
    assert memgang_swarm.read_scope() == []
    me = memgang_swarm.agent("summarizer")
    me.write("s1", {"text": "short"})
    obj = memgang_swarm.read("summarizer/s1")
    assert obj is not None and obj.value == {"text": "short"}


def test_each_test_gets_another_swarm_on_the_same_server(
        memgang_swarm: memgang.Swarm, memgang_gang: memgang.Gang) -> None:
    assert memgang_swarm.read_scope() == []  # the write of the test above is not visible
    assert memgang_gang.server is None  # the session's server is shared, not per test
