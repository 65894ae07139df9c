"""Functions run in child processes by the multi-process tests (importable under spawn)."""

from __future__ import annotations

import memgang


def cas_increment(url: str, swarm: str, agent: str, key: str, times: int) -> int:
    """Increment a shared counter ``times`` times with an expected_version retry loop.

    Returns how many conflicts it met (and retried).
    """
    gang = memgang.connect(url)
    me = gang.swarm(swarm).agent(agent)
    conflicts = 0
    try:
        for _ in range(times):
            while True:
                obj = me.read(key)
                value, version = (obj.value, obj.version) if obj else (0, 0)
                try:
                    me.write(key, value + 1, expected_version=version)
                    break
                except memgang.ConflictError:
                    conflicts += 1
    finally:
        gang.close()
    return conflicts


def merge_fields(url: str, swarm: str, agent: str, key: str, fields: int) -> None:
    """Merge ``fields`` fields of this agent's own into one shared mapping."""
    gang = memgang.connect(url)
    me = gang.swarm(swarm).agent(agent)
    try:
        for i in range(fields):
            me.write(key, {f"{agent}-{i}": i}, on_conflict="merge")
    finally:
        gang.close()


def manual_writes(url: str, swarm: str, agent: str, key: str, times: int) -> int:
    """Write ``times`` times under on_conflict="manual"; returns how many were kept as
    conflicts instead of applied."""
    gang = memgang.connect(url)
    me = gang.swarm(swarm).agent(agent)
    lost = 0
    try:
        for i in range(times):
            try:
                me.write(key, {"by": agent, "i": i}, on_conflict="manual")
            except memgang.ManualConflict:
                lost += 1
                me.read(key)  # catch up, so the next write is based on the current version
    finally:
        gang.close()
    return lost
