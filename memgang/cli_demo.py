"""``memgang demo``: the MapReduce demo (memgang/demo/mapreduce.py), narrated live.

By default it runs the same jobs twice on a private embedded redis-server -- with sharing
(compute-once) and without -- and prints a table comparing summarizer calls, words sent,
wall time, hits and waits; ``--json`` prints the numbers for machines instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli import EXIT_NOT_FOUND, EXIT_USAGE, echo_json, fail, main, url_option
from .demo.summarizers import MissingDependencyError, SummarizerError


@main.command()
@url_option
@click.option("--input", "input_path", type=click.Path(path_type=Path), default=None,
              help="A text file to summarize (default: a generated sample report).")
@click.option("--agents", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Mapper agents (each a process, unless --in-process).")
@click.option("--jobs", type=click.IntRange(1, 32), default=3, show_default=True,
              help="Jobs run at once over overlapping variants of the input.")
@click.option("--no-share", is_flag=True,
              help="Only run without sharing (default: run with and without, and compare).")
@click.option("--llm-latency-ms", type=click.FloatRange(0, 60_000), default=50.0,
              show_default=True,
              help="Make each local summarizer call cost this long, like an LLM call.")
@click.option("--summarizer", type=click.Choice(["local", "openai"]), default="local",
              show_default=True,
              help="local: extractive, offline; openai: any OpenAI-compatible endpoint "
                   "(MEMGANG_LLM_URL, MEMGANG_LLM_MODEL, OPENAI_API_KEY).")
@click.option("--same-input", is_flag=True,
              help="Every job gets the whole input (default: overlapping variants).")
@click.option("--in-process", is_flag=True, help="Run the mappers as threads of this process.")
@click.option("--chunk-words", type=click.IntRange(20, 5000), default=250, show_default=True,
              help="About this many words per chunk.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 3600), default=300,
              show_default=True, help="Give up on a mode after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON only.")
@click.option("-v", "--verbose", is_flag=True, help="Print every event.")
def demo(url: str | None, input_path: Path | None, agents: int, jobs: int, no_share: bool,
         llm_latency_ms: float, summarizer: str, same_input: bool, in_process: bool,
         chunk_words: int, timeout_s: float, as_json: bool, verbose: bool) -> None:
    """Summarizer agents share one memory: a MapReduce over a report, with and without
    compute-once, on an embedded redis-server (or --url)."""
    from .demo.mapreduce import DemoFailed, InputError, Settings, load_input, render_table
    from .demo.mapreduce import run_demo as run
    from .demo.report import sample_report
    from .demo.summarizers import make_summarizer

    try:
        if input_path is None:
            text, source = sample_report(), "the sample report"
        else:
            text, source = load_input(input_path), str(input_path)
        settings = Settings(text, source, jobs=jobs, agents=agents, latency_ms=llm_latency_ms,
                            summarizer=summarizer, same_input=same_input,
                            in_process=in_process, chunk_words=chunk_words,
                            timeout_s=timeout_s)
        if summarizer != "local":
            make_summarizer(summarizer)  # its configuration is complete, or say what is not
    except (InputError, SummarizerError, MissingDependencyError) as exc:
        fail(str(exc), EXIT_USAGE)
        return
    quiet = as_json and not verbose

    def echo(line: str) -> None:
        if not quiet:
            click.echo(line, err=as_json)

    if not quiet:
        where = "--url" if url else "an embedded redis-server"
        echo(f"memgang demo: {jobs} job(s) summarizing {source} with {agents} mapper agents "
             f"on {where}")
    try:
        report = run(settings, modes=(False,) if no_share else (True, False), url=url,
                     echo=echo, verbose=verbose)
    except (SummarizerError, MissingDependencyError) as exc:
        fail(str(exc), EXIT_USAGE)
        return
    except DemoFailed as exc:
        fail(str(exc), EXIT_NOT_FOUND)
        return
    except KeyboardInterrupt:
        fail("interrupted", 130)
        return
    if as_json:
        echo_json(report)
    else:
        click.echo("\n" + render_table(report))
    sys.stdout.flush()
