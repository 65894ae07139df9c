"""``memgang demo``: a short walkthrough of two agents sharing memory on an embedded server."""

from __future__ import annotations

import threading
import time

import click
import redis

from ._sync.gang import connect
from .cli import main
from .codec import loads_json
from .server import EmbeddedServer


@main.command()
def demo() -> None:
    """Two agents share memory on a private, embedded redis-server; print every event."""
    with EmbeddedServer() as srv:
        gang = connect(srv.url)
        swarm = gang.swarm("demo")
        listener = redis.Redis.from_url(srv.url).pubsub()  # type: ignore[no-untyped-call]
        listener.subscribe(swarm.keys.channel)
        stop = threading.Event()

        def narrate() -> None:
            while not stop.is_set():
                msg = listener.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if msg:
                    e = loads_json(msg["data"])
                    click.echo(f"  event {e['type']:<18} {e['key'] or e.get('topic')}  "
                               f"by {e['agent']}  v{e['version']}")

        thread = threading.Thread(target=narrate, daemon=True)
        thread.start()
        reader, summarizer = swarm.agent("reader-1"), swarm.agent("summarizer-1")
        click.echo(f"embedded redis-server at {srv.url}\n")
        click.echo("reader-1 stores a chunk; summarizer-1 reads it by reference:")
        chunk = reader.write("chunk-1", {"text": "Redis keeps the gang's memory."},
                             group="chunks", context="report-42")
        obj = summarizer.read(chunk)
        assert obj is not None
        summary = summarizer.write("summary-1", {"text": obj.value["text"][:20] + "..."},
                                   group="summaries", context="report-42", derived_from=[chunk])
        click.echo("both agents merge fields into one shared plan without conflict:")
        reader.write("global/plan", {"read": "done"}, on_conflict="merge")
        summarizer.write("global/plan", {"summarize": "done"}, on_conflict="merge")
        summarizer.share_knowledge("insight", {"tip": "reuse summaries by reference"})
        time.sleep(0.3)
        plan = reader.read("global/plan")
        assert plan is not None
        click.echo(f"\nglobal/plan = {plan.value} (v{plan.version}, last by {plan.agent})")
        click.echo(f"{summary} is derived from {chunk}")
        click.echo(f"objects in context report-42: "
                   f"{[o.key for o in swarm.read_scope(context='report-42')]}")
        stop.set()
        thread.join()
        listener.close()
        gang.close()
