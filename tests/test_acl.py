"""Redis ACLs: a user limited to its team's swarm uses memgang there, and anything outside it
is refused at once with NoPermission, without breaking the Gang's shared connections."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import memgang
from memgang.testing import fresh_swarm_name

from _helpers import until


class Users:
    """ACL users for one test, each limited to a fresh swarm; all deleted at teardown."""

    def __init__(self, raw: redis.Redis, url: str) -> None:
        self.raw, self.url, self.names = raw, url, []

    def make(self, *rules: str, keyevents: bool = True) -> tuple[str, str, str]:
        """(swarm, user, url) for a user with ``rules`` and its swarm's keys and channels
        (``{swarm}`` in a rule is that swarm's hash tag)."""
        swarm = fresh_swarm_name("team")
        user = f"u-{swarm}"
        tag = f"{{{swarm}}}"
        scope = [f"~{tag}*", f"&{tag}*"] + (["&__keyevent@*"] if keyevents else [])
        self.raw.execute_command("ACL", "SETUSER", user, "reset", "resetchannels", "on", ">pw",
                                 "+@all", *scope, *(r.replace("{swarm}", tag) for r in rules))
        self.names.append(user)
        scheme, rest = self.url.split("://", 1)
        return swarm, user, f"{scheme}://{user}:pw@{rest}"


@pytest.fixture
def users(raw: redis.Redis, url: str) -> Iterator[Users]:
    made = Users(raw, url)
    yield made
    for name in made.names:
        raw.execute_command("ACL", "DELUSER", name)


@pytest.fixture
def team(users: Users) -> tuple[str, str]:
    """(swarm, url of a user limited to that swarm's keys and channels)."""
    swarm, _, url = users.make()
    return swarm, url


def test_a_user_limited_to_its_swarm_is_refused_elsewhere_and_keeps_working_at_home(
        team: tuple[str, str]) -> None:
    home, url = team
    with memgang.connect(url) as gang:
        mine, other = gang.swarm(home).agent("a"), gang.swarm(fresh_swarm_name("other"))
        got: list[str] = []
        seen = threading.Event()

        def handler(event: memgang.Event) -> None:
            got.append(event.type)
            if event.type == "lock_released":
                seen.set()

        with mine.swarm.subscribe(handler):
            mine.write("x", 1)
            refusals = {
                "write": lambda: other.agent("a").write("x", 1),
                "write_many": lambda: other.agent("a").write_many({"x": 1, "y": 2}),
                "read": lambda: other.agent("a").read("x"),
                "read_scope": lambda: other.read_scope(),
                "lock": lambda: other.agent("a").lock("x", timeout_s=5).acquire(),
                "events": lambda: other.events(since="start").get(timeout_s=5),
            }
            for what, call in refusals.items():
                with pytest.raises(memgang.NoPermission, match="refused by Redis") as caught:
                    call()
                assert "permissions" in caught.value.detail, what
            # the refused subscriptions broke neither the event hub nor the lock wake-ups
            holder = mine.lock("doc")
            holder.acquire()
            waiting = gang.swarm(home).agent("b").lock("a/doc", timeout_s=10)
            thread = threading.Thread(target=waiting.acquire)
            thread.start()
            until(lambda: any(s.queue for s in mine.swarm.locks()), "b to queue")
            holder.release()
            thread.join(10)
            assert waiting.held
            waiting.release()
            mine.write("y", 2)
            assert seen.wait(5)
            until(lambda: got.count("memory_updated") == 2, "both writes to arrive")
        assert mine.read("y") is not None


def test_without_keyspace_channels_events_still_flow_with_a_warning(
        users: Users, caplog: pytest.LogCaptureFixture) -> None:
    swarm_name, _, limited = users.make(keyevents=False)
    with memgang.connect(limited) as gang, caplog.at_level(logging.WARNING):
        swarm = gang.swarm(swarm_name)
        with swarm.events() as events:
            swarm.agent("a").write("x", 1)
            event = events.get(timeout_s=5)
            assert event is not None and event.type == "memory_updated"
        assert "will not be announced" in caplog.text


def test_a_stream_whose_channel_is_revoked_raises_instead_of_waiting_forever(
        raw: redis.Redis, users: Users, caplog: pytest.LogCaptureFixture) -> None:
    swarm_name, user, limited = users.make()
    with memgang.connect(limited) as gang:
        swarm = gang.swarm(swarm_name)
        got: list[str] = []
        sub = swarm.subscribe(lambda e: got.append(e.type))
        with swarm.events() as events:
            swarm.agent("a").write("x", 1)
            assert events.get(timeout_s=5) is not None
            # the operator revokes the channel; the hub's connection drops and its
            # re-subscription is refused
            raw.execute_command("ACL", "SETUSER", user, "resetchannels", "&__keyevent@*")
            raw.client_kill_filter(_type="pubsub", user=user)
            with pytest.raises(memgang.NoPermission, match=swarm.keys.channel):
                events.get(timeout_s=10)
        until(lambda: not sub.running, "the callback subscription to stop")
        assert "stopped" in caplog.text


def test_a_refused_reconnect_of_the_lock_wake_connection_backs_off(
        raw: redis.Redis, users: Users) -> None:
    home, user, limited = users.make()
    with memgang.connect(limited) as gang:
        me = gang.swarm(home).agent("a")
        holder = me.lock("doc")
        holder.acquire()
        # its wake connection can no longer be set up (CLIENT SETNAME refused) once killed
        raw.execute_command("ACL", "SETUSER", user, "-client")
        before = int(raw.info("stats")["total_connections_received"])
        raw.client_kill_filter(_type="pubsub", user=user)
        with pytest.raises(memgang.LockTimeout):
            gang.swarm(home).agent("b").lock("a/doc", timeout_s=3).acquire()
        opened = int(raw.info("stats")["total_connections_received"]) - before
        assert opened < 50  # reconnects back off; a hot loop opened thousands here
        raw.execute_command("ACL", "SETUSER", user, "+client")
        holder.release()


def test_a_user_who_may_not_subscribe_at_all_gets_no_permission_at_once(
        raw: redis.Redis, users: Users) -> None:
    swarm_name, _, limited = users.make("-subscribe")
    with memgang.connect(limited) as gang:
        swarm = gang.swarm(swarm_name)
        before = int(raw.info("stats")["total_connections_received"])
        with pytest.raises(memgang.NoPermission, match="subscribe"):
            swarm.events().get(timeout_s=5)
        with pytest.raises(memgang.NoPermission, match="subscribe"):
            swarm.agent("a").lock("doc", timeout_s=5).acquire()
        swarm.agent("a").write("x", 1)  # what it may do still works
        assert int(raw.info("stats")["total_connections_received"]) - before < 10


def test_a_refused_unsubscribe_is_not_taken_for_another_stream_s_subscribe(
        users: Users, monkeypatch: pytest.MonkeyPatch) -> None:
    from memgang import _backends

    swarm_name, _, limited = users.make("-unsubscribe", "~*", "&*")
    read = _backends.SyncPubSubConn.read
    stall = threading.Event()

    def slow_read(self: Any, timeout_s: float) -> Any:
        if stall.is_set():  # the reader is preempted: the next SUBSCRIBE is sent meanwhile
            stall.clear()
            time.sleep(0.3)
        return read(self, timeout_s)

    monkeypatch.setattr(_backends.SyncPubSubConn, "read", slow_read)
    with memgang.connect(limited) as gang:
        a, b = gang.swarm(swarm_name), gang.swarm(fresh_swarm_name("other"))
        with a.events() as keep:
            with b.events():
                stall.set()
                a.agent("w").write("k", 1)  # the reader delivers it, then stalls
                assert keep.get(timeout_s=10) is not None
            # closed while the reader stalls: its UNSUBSCRIBE is refused (NOPERM), and
            # the next stream's SUBSCRIBE is pending when that answer is read
            with b.events() as events:
                b.agent("w").write("k", 1)
                event = events.get(timeout_s=10)
                assert event is not None and event.type == "memory_updated"
            a.agent("w").write("k", 2)
            assert keep.get(timeout_s=10) is not None
