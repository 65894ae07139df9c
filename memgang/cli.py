"""The ``memgang`` command: one click group.

Exit codes: 0 ok; 1 not found, conflict or refused; 2 bad usage or bad input.
Every command takes ``--url`` (envvar ``MEMGANG_URL``). Commands of other concerns live in
their own modules (``memgang/cli_*.py``) and are added to the group at the bottom.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from . import errors
from ._sync.gang import Gang, connect
from .codec import dumps_json, loads_json
from .keys import parse_full, validate_name
from .memory import MemoryObject

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2


def url_option(fn: F) -> F:
    """``--url`` with envvar MEMGANG_URL, on every command."""
    return click.option(
        "--url", envvar="MEMGANG_URL", default=None, metavar="URL",
        help="redis://host:port/db, rediss://..., or unix:///path.sock (env MEMGANG_URL).",
    )(fn)


def fail(message: str, code: int) -> None:
    click.echo(f"memgang: {message}", err=True)
    sys.exit(code)


@contextmanager
def gang_for(url: str | None) -> Iterator[Gang]:
    """Connect for one command; memgang errors become clear messages and exit codes."""
    if not url:
        fail("no Redis to talk to: pass --url or set MEMGANG_URL "
             "(or start one with `memgang server`)", EXIT_USAGE)
    try:
        gang = connect(url)
    except (errors.InvalidKey, errors.InvalidValue) as exc:  # a malformed URL
        fail(str(exc), EXIT_USAGE)
        raise  # unreachable: fail() exits
    except errors.Error as exc:
        fail(str(exc), EXIT_NOT_FOUND)
        raise  # unreachable: fail() exits
    try:
        yield gang
    except (errors.NotFound, errors.ConflictError, errors.LockError, errors.Forbidden) as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    except (errors.InvalidKey, errors.InvalidValue) as exc:
        fail(str(exc), EXIT_USAGE)
    except errors.Error as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    finally:
        gang.close()


def split_key(key: str, as_agent: str | None) -> tuple[str, str, str]:
    """(swarm, agent, key) from a full key ``{swarm}/space/id`` or ``swarm/space/id``."""
    if not key.startswith("{"):
        parts = key.split("/")
        if len(parts) != 3:
            raise errors.InvalidKey(f"{key!r}: give the key as swarm/space/id or "
                                    f"{{swarm}}/space/id", name=key)
        key = f"{{{parts[0]}}}/{parts[1]}/{parts[2]}"
    k = parse_full(key)
    return k.swarm, validate_name(as_agent, "agent") if as_agent else k.space, k.full


def object_json(obj: MemoryObject) -> dict[str, Any]:
    return {
        "key": obj.key, "value": obj.value, "version": obj.version, "agent": obj.agent,
        "created_ms": obj.created_ms, "updated_ms": obj.updated_ms, "group": obj.group,
        "context": obj.context, "tags": list(obj.tags), "ttl_ms": obj.ttl_ms,
        "derived_from": [str(r) for r in obj.derived_from], "hash": obj.content_hash,
    }


def echo_json(data: Any) -> None:
    click.echo(dumps_json(data).decode())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memgang")
def main() -> None:
    """memgang: one shared, real-time memory in Redis for a gang of AI agents."""


@main.command()
@url_option
@click.argument("key")
@click.argument("value")
@click.option("--agent", help="Write as this agent (default: the key's space).")
@click.option("--ttl", "ttl_s", type=float, help="Expire after this many seconds.")
@click.option("--group", help="Scope: group.")
@click.option("--context", help="Scope: context.")
@click.option("--expected-version", type=int, help="Compare-and-set on this version.")
@click.option("--merge", is_flag=True, help="Field-level merge into the stored mapping.")
def put(url: str | None, key: str, value: str, agent: str | None, ttl_s: float | None,
        group: str | None, context: str | None, expected_version: int | None,
        merge: bool) -> None:
    """Write VALUE (JSON) at KEY (swarm/space/id)."""
    try:
        data = loads_json(value)
    except ValueError as exc:
        fail(f"VALUE is not valid JSON: {exc}", EXIT_USAGE)
    with gang_for(url) as gang:
        swarm, who, full = split_key(key, agent)
        ref = gang.swarm(swarm).agent(who).write(
            full, data, ttl_s=ttl_s, group=group, context=context,
            expected_version=expected_version, on_conflict="merge" if merge else "lww")
        click.echo(str(ref))


@main.command()
@url_option
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="The object and its metadata as JSON.")
def get(url: str | None, key: str, as_json: bool) -> None:
    """Print the value at KEY (swarm/space/id); exit 1 if there is none."""
    with gang_for(url) as gang:
        swarm, who, full = split_key(key, None)
        obj = gang.swarm(swarm).agent(who).read(full)
        if obj is None:
            raise errors.NotFound(full)
        echo_json(object_json(obj) if as_json else obj.value)


@main.command(name="ls")
@url_option
@click.argument("swarm")
@click.option("--agent", help="Only objects last written by this agent.")
@click.option("--group", help="Only objects in this group.")
@click.option("--context", help="Only objects in this context.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def ls_(url: str | None, swarm: str, agent: str | None, group: str | None,
        context: str | None, limit: int | None, as_json: bool) -> None:
    """List the objects of SWARM, newest first, narrowed by scope."""
    with gang_for(url) as gang:
        objs = gang.swarm(swarm).read_scope(agent=agent, group=group, context=context,
                                            limit=limit)
        for obj in objs:
            if as_json:
                echo_json(object_json(obj))
            else:
                scope = " ".join(f"{k}={v}" for k, v in
                                 (("group", obj.group), ("context", obj.context)) if v)
                click.echo(f"{obj.key}  v{obj.version}  {obj.agent}  {scope}".rstrip())


@main.command()
@url_option
@click.argument("key")
@click.option("--agent", help="Delete as this agent (default: the key's space).")
@click.option("--expected-version", type=int, help="Only if this is the current version.")
def rm(url: str | None, key: str, agent: str | None, expected_version: int | None) -> None:
    """Delete the object at KEY; exit 1 if there was none."""
    with gang_for(url) as gang:
        swarm, who, full = split_key(key, agent)
        if not gang.swarm(swarm).agent(who).delete(full, expected_version=expected_version):
            raise errors.NotFound(full)
        click.echo(f"deleted {full}")


@main.command()
@click.option("--port", type=int, default=None, help="Listen on this TCP port (0: a free one).")
@click.option("--unix", "unix_path", default=None, help="Listen on this unix socket path.")
@click.option("--dir", "data_dir", default=None, help="Data directory (kept across restarts).")
@click.option("--aof", is_flag=True, help="Append-only file persistence (needs --dir to keep).")
def server(port: int | None, unix_path: str | None, data_dir: str | None, aof: bool) -> None:
    """Run a private redis-server in the foreground, configured for memgang."""
    from .server import EmbeddedServer, serve_forever

    try:
        srv = EmbeddedServer(port=port if port is not None else (None if unix_path else 0),
                             unix=unix_path is not None or port is None, data_dir=data_dir,
                             aof=aof)
    except errors.ServerError as exc:
        fail(str(exc), EXIT_USAGE)
        return
    if unix_path:
        srv.socket_path = unix_path
    try:
        srv.start()
        click.echo(f"memgang server at {srv.url}  (export MEMGANG_URL={srv.url})")
        sys.stdout.flush()
        code = serve_forever(srv)
    except errors.ServerError as exc:
        fail(str(exc), EXIT_NOT_FOUND)
        return
    sys.exit(code)


# Each concern's commands live in their own module and add themselves to `main`.
COMMAND_MODULES = (
    "cli_bench",
    "cli_dashboard",
    "cli_demo",
    "cli_locks",
    "cli_stats",
    "cli_watch",
)


def _load_commands() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"memgang.{name}")


_load_commands()
