"""The CLI basics, the embedded server and the packaging of the Lua scripts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import orjson
import psutil
import pytest
import redis

import memgang
from memgang.server import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MEMGANG_URL"}
    if url:
        env["MEMGANG_URL"] = url
    return subprocess.run([sys.executable, "-m", "memgang", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_cli_put_get_ls_rm_with_exit_codes(url: str, swarm: memgang.Swarm) -> None:
    key = f"{swarm.name}/reader-1/summary-3"
    put = cli("put", key, '{"text": "hi", "n": [1, 2]}', "--group", "g", url=url)
    assert put.returncode == 0, put.stderr
    assert put.stdout.strip().endswith("@" + put.stdout.strip().rpartition("@")[2])
    got = cli("get", key, url=url)
    assert got.returncode == 0 and orjson.loads(got.stdout) == {"text": "hi", "n": [1, 2]}
    full = cli("get", key, "--json", "--url", url)
    meta = orjson.loads(full.stdout)
    assert meta["agent"] == "reader-1" and meta["group"] == "g"
    listing = cli("ls", swarm.name, "--group", "g", "--json", url=url)
    assert [orjson.loads(line)["key"] for line in listing.stdout.splitlines()] == [meta["key"]]
    assert cli("ls", swarm.name, "--group", "other", url=url).stdout == ""
    conflict = cli("put", key, "1", "--expected-version", "999", url=url)
    assert conflict.returncode == 1 and "conflict" in conflict.stderr
    assert cli("rm", key, url=url).returncode == 0
    missing = cli("get", key, url=url)
    assert missing.returncode == 1 and "no memory object" in missing.stderr
    assert cli("rm", key, url=url).returncode == 1


def test_cli_bad_input_exits_2_with_a_clear_message(url: str, swarm: memgang.Swarm) -> None:
    bad_json = cli("put", f"{swarm.name}/a/x", "{nope", url=url)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    bad_key = cli("put", f"{swarm.name}/a/b/c", "1", url=url)
    assert bad_key.returncode == 2 and "swarm/space/id" in bad_key.stderr
    bad_name = cli("get", f"{swarm.name}/a/x y", url=url)
    assert bad_name.returncode == 2 and "forbidden character" in bad_name.stderr
    no_url = cli("get", f"{swarm.name}/a/x")
    assert no_url.returncode == 2 and "MEMGANG_URL" in no_url.stderr
    assert cli("put").returncode == 2


def test_connect_without_url_starts_an_embedded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMGANG_URL", raising=False)
    gang = memgang.connect()
    try:
        assert gang.server is not None and gang.url.startswith("unix://")
        me = gang.swarm("s").agent("a")
        me.write("x", 1)
        obj = me.read("x")
        assert obj is not None and obj.value == 1
        pid = gang.server.pid
        assert pid is not None and psutil.pid_exists(pid)
        with redis.Redis.from_url(gang.url, decode_responses=True) as client:
            flags = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert set(flags) == set("Eghxe")  # what memgang listens to, and nothing more
    finally:
        gang.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_embedded_server_dies_with_its_parent(tmp_path: Path) -> None:
    code = ("import sys, memgang.server as s; srv = s.EmbeddedServer().start(); "
            "print(srv.pid, flush=True); sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert psutil.Process(child_pid).name().startswith("redis-server")
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    gone = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not psutil.pid_exists(child_pid) or \
                psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE:
            gone = True
            break
        time.sleep(0.05)
    assert gone, "redis-server outlived the process that started it"


def test_embedded_server_with_aof_keeps_data_across_restart(server: EmbeddedServer,
                                                            tmp_path: Path) -> None:
    srv = EmbeddedServer(binary=server.binary, data_dir=tmp_path, aof=True).start()
    try:
        gang = memgang.connect(srv.url)
        me = gang.swarm("s").agent("a")
        me.write("kept", {"v": 1})
        gang.close()
        srv.restart()
        gang = memgang.connect(srv.url)
        obj = gang.swarm("s").agent("a").read("kept")
        assert obj is not None and obj.value == {"v": 1}
        gang.close()
    finally:
        srv.stop()


def test_server_binary_errors_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMGANG_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(memgang.ServerError, match="MEMGANG_REDIS_SERVER"):
        EmbeddedServer()


def test_cli_server_command_serves_until_interrupted(tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    with subprocess.Popen([sys.executable, "-m", "memgang", "server", "--unix", str(sock),
                           "--dir", str(tmp_path)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert f"unix://{sock}" in line
            gang = memgang.connect(f"unix://{sock}")
            gang.swarm("s").agent("a").write("x", 1)
            gang.close()
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(15) == 0


def test_wheel_ships_the_lua_scripts(tmp_path: Path) -> None:
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path), str(ROOT)], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("memgang-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    lua = {Path(n).name for n in names if n.startswith("memgang/lua/")}
    assert lua == {p.name for p in (ROOT / "lua").glob("*.lua")}
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = subprocess.run(
        [sys.executable, "-I", "-c",
         f"import sys; sys.path.insert(0, {str(site)!r}); import memgang.scripts as s; "
         "print(s.lua_dir()); print(sorted(s.sources()))"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert probe.returncode == 0, probe.stderr
    where, names_line = probe.stdout.splitlines()
    assert where.startswith(str(site))
    assert "write" in names_line


def test_cli_refuses_empty_or_malformed_urls_and_bad_ttl(url: str, swarm: memgang.Swarm) -> None:
    empty = cli("put", f"{swarm.name}/a/x", "1", "--url", "")
    assert empty.returncode == 2 and "MEMGANG_URL" in empty.stderr
    malformed = cli("put", f"{swarm.name}/a/x", "1", "--url", "redis://localhost:notaport")
    assert malformed.returncode == 2 and "bad Redis URL" in malformed.stderr
    for bad in ("nan", "inf"):
        ttl = cli("put", f"{swarm.name}/a/x", "1", "--ttl", bad, url=url)
        assert ttl.returncode == 2 and "ttl_s" in ttl.stderr
