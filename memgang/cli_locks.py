"""``memgang locks SWARM``: every lock of a swarm with its mode, holders, lease left and queue."""

from __future__ import annotations

import click

from .cli import echo_json, gang_for, main, url_option
from .keys import validate_name
from .locks import LockState


def _lease_left(ms: int) -> str:
    return "expired" if ms <= 0 else f"{ms / 1000:.1f}s"


def render(states: list[LockState]) -> list[str]:
    """Human-readable lines: one block per lock, holders first, then the queue in order."""
    if not states:
        return ["no lock is held or waited for"]
    lines = []
    for state in states:
        fence = f"  (newest token {state.fence})" if state.fence is not None else ""
        lines.append(f"{state.name}  {state.mode or 'free'}{fence}")
        for h in state.holders:
            token = f"  token {h.token}" if h.token is not None else ""
            lines.append(f"  holder  {h.mode:<9}  {h.agent}  lease left "
                         f"{_lease_left(h.lease_left_ms)}{token}")
        for i, w in enumerate(state.queue, 1):
            note = "  (abandoned: not re-checked in time)" if w.abandoned else ""
            lines.append(f"  queue   {i:>3}. {w.mode:<9}  {w.agent}{note}")
    return lines


@main.command()
@url_option
@click.argument("swarm")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document: a list of locks with holders and queue.")
def locks(url: str | None, swarm: str, as_json: bool) -> None:
    """Show every lock of SWARM: mode, holders with lease left, and the queue in order."""
    with gang_for(url) as gang:
        states = gang.swarm(validate_name(swarm, "swarm")).locks()
        if as_json:
            echo_json([state.to_json() for state in states])
        else:
            for line in render(states):
                click.echo(line)
