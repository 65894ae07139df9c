"""``memgang stats SWARM``: every agent's counters, as kept in Redis (memgang.metrics)."""

from __future__ import annotations

from typing import Any

import click

from .agent import AgentInfo
from .cli import echo_json, gang_for, main, url_option
from .metrics import STANDARD
from .tables import aligned

_MS = {"saved_ms": "saved s", "compute_ms": "compute s", "lock_wait_ms": "lock wait s"}


def stats_rows(stats: dict[str, dict[str, int]], live: list[AgentInfo]) -> list[dict[str, Any]]:
    """One row per agent that has counters or is live, by name."""
    roles = {a.name: a.role for a in live}
    rows = []
    for name in sorted(set(stats) | set(roles)):
        counters = stats.get(name) or dict.fromkeys(STANDARD, 0)
        rows.append({"agent": name, "live": name in roles, "role": roles.get(name),
                     "counters": counters})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """An aligned table: the standard counters, then any agent-defined ones in use."""
    extra = sorted({k for r in rows for k, v in r["counters"].items()
                    if k not in STANDARD and v})
    columns = [*STANDARD, *extra]
    header = ["agent", "role", *(_MS.get(c, c.replace("_", " ")) for c in columns)]
    lines = [header]
    for row in rows:
        role = (row["role"] or "?") if row["live"] else "(gone)"
        cells = [row["agent"], role]
        for c in columns:
            n = row["counters"].get(c, 0)
            cells.append(f"{n / 1000:.2f}" if c.endswith("_ms") else str(n))
        lines.append(cells)
    return "\n".join(aligned(lines, left=(0, 1)))


@main.command()
@url_option
@click.argument("swarm")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: agent -> counters.")
def stats(url: str | None, swarm: str, as_json: bool) -> None:
    """Every agent's counters in SWARM: reads, writes, compute-once hits/misses/waits, time
    saved, lock wait, handler errors (and any the agents count themselves)."""
    with gang_for(url) as gang:
        sw = gang.swarm(swarm)
        rows = stats_rows(sw.stats(), sw.agents())
    if as_json:
        echo_json({r["agent"]: {"live": r["live"], "role": r["role"], **r["counters"]}
                   for r in rows})
    elif not rows:
        click.echo(f"no agent of swarm {swarm} has counters yet")
    else:
        click.echo(render(rows))
