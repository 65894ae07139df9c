"""Processes for the event fault tests (run as scripts, so each is a real, separate process).

    python tests/_event_workers.py write URL SWARM AGENT COUNT BATCH
        write COUNT objects as AGENT, BATCH per pipelined round trip; exits 0 when done
    python tests/_event_workers.py subscribe URL SWARM COUNT TIMEOUT_S
        print "ready" once subscribed, then collect COUNT events (or give up after
        TIMEOUT_S); print one JSON line {"ids": [...], "disconnects": n, "resyncs": n,
        "gaps": n}
"""

from __future__ import annotations

import json
import sys
import time

import memgang


def write(url: str, swarm: str, agent: str, count: int, batch: int) -> int:
    gang = memgang.connect(url)
    me = gang.swarm(swarm).agent(agent)
    try:
        done = 0
        while done < count:
            n = min(batch, count - done)
            items = [(f"obj-{done + i}", {"i": done + i, "by": agent, "pad": "x" * 64})
                     for i in range(n)]
            me.write_many(items)
            done += n
    finally:
        gang.close()
    return 0


def subscribe(url: str, swarm: str, count: int, timeout_s: float) -> int:
    gang = memgang.connect(url)
    ids: list[str] = []
    gaps = 0
    try:
        with gang.swarm(swarm).events(on_gap="event") as stream:
            print("ready", flush=True)
            deadline = time.monotonic() + timeout_s
            while len(ids) < count and time.monotonic() < deadline:
                event = stream.get(timeout_s=0.5)
                if event is None:
                    continue
                if event.type == "event_gap":
                    gaps += 1
                else:
                    ids.append(event.id)
            hub = gang.events_hub
            assert hub is not None
            print(json.dumps({"ids": ids, "disconnects": hub.stats.disconnects,
                              "resyncs": stream.stats.resyncs, "gaps": gaps}), flush=True)
    finally:
        gang.close()
    return 0


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "write":
        sys.exit(write(args[0], args[1], args[2], int(args[3]), int(args[4])))
    if cmd == "subscribe":
        sys.exit(subscribe(args[0], args[1], int(args[2]), float(args[3])))
    sys.exit(f"unknown command {cmd!r}")
