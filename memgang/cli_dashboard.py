"""``memgang dashboard``: the live web page of a swarm (extra ``memgang[dashboard]``)."""

from __future__ import annotations

import importlib.util

import click

from .cli import EXIT_NOT_FOUND, EXIT_USAGE, fail, main, url_option
from .config import redact
from .keys import validate_name
from .server import free_port

INSTALL_HINT = "pip install 'memgang[dashboard]'"


def missing_dashboard_deps() -> list[str]:
    """The packages of the dashboard extra that are not installed."""
    return [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]


@main.command()
@url_option
@click.option("--swarm", default=None, help="Show this swarm only (default: every swarm with "
              "events; pick one in the page).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; anything but loopback exposes your swarm's "
                   "metadata to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: a free one).")
def dashboard(url: str | None, swarm: str | None, host: str, port: int) -> None:
    """Serve a live web page of the swarm: agents, the flock, objects, locks, rates."""
    missing = missing_dashboard_deps()
    if missing:
        fail(f"the dashboard needs {' and '.join(missing)}: {INSTALL_HINT}", EXIT_NOT_FOUND)
    if url is None:
        fail("no Redis to show: pass --url or set MEMGANG_URL "
             "(or start one with `memgang server`)", EXIT_USAGE)
    assert url is not None
    if swarm is not None:
        try:
            validate_name(swarm, "swarm")
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    from .dashboard.app import serve

    port = port or free_port()  # uvicorn would pick one too, but we could not print it
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"memgang dashboard at http://{shown}:{port}/  "
               f"(swarm: {swarm or 'all'}, Redis: {redact(url)}; Ctrl-C to stop)")
    try:
        serve(url, swarm, host=host, port=port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}", EXIT_NOT_FOUND)
