"""The MapReduce demo: summarizer agents that share one memory, and what sharing saves.

One run has ``jobs`` jobs -- teams asking for (nearly) the same report at the same time --
and these agents, all :class:`memgang.AgentMixin` objects:

- a **reader** per job splits its input into chunks and stores them
  (``job-N/chunk-III``, group ``chunks``) after a manifest (``job-N/manifest``);
- ``agents`` **mappers** (separate processes by default) react to each stored chunk: one of
  them claims it (a compare-and-set write of ``job-N/claim-III``), reads it by reference,
  summarizes it and stores the summary ``derived_from`` the chunk (``job-N/summary-III``).
  With sharing on, the summary goes through ``compute_once``: a chunk another job already
  summarized is reused, and one another mapper is summarizing right now is awaited -- by a
  helper thread, so the mapper's one summarizer "seat" moves on to other work meanwhile;
- a **reducer** counts each job's summaries and, once all are there, reads them by
  reference and writes the report ``job-N/report`` ``derived_from`` them.

The driver narrates the run from the swarm's events as they arrive, runs it once with
sharing and once without (the very same agents, ``share=False``), and compares summarizer
calls, words sent to the summarizer, wall time, hits and waits. With sharing, the
summarizer is called exactly once per distinct chunk; without, once per chunk of every job.

``python -m memgang.demo.mapreduce --swarm S --name mapper-1 [--no-share] ...`` is one
mapper process (it reads the server's URL from ``MEMGANG_URL``).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import memgang
from memgang.demo.report import chunk_text, overlapping_inputs
from memgang.demo.summarizers import Summarizer, make_summarizer
from memgang.events import Event
from memgang.keys import parse_full
from memgang.server import die_with_parent

from ..tables import aligned

log = logging.getLogger("memgang.demo")

SUMMARY_WORDS = 40
CHUNK_WORDS = 250
DEMO_TTL_S = 3600.0          # everything the demo stores goes away after an hour
MAX_INPUT_BYTES = 2_000_000
MEMO_NAME = "memgang.demo.summarize"
ERROR_TOPIC = "demo-error"
JOIN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class InputError(ValueError):
    """The demo's input cannot be used; the message says why."""


def load_input(path: str | os.PathLike[str]) -> str:
    """The text of ``path``, or :class:`InputError` naming what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not a text file")
    try:
        size = p.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise InputError(f"{p} is {size:,} bytes; the demo takes text files of at most "
                             f"{MAX_INPUT_BYTES:,} bytes")
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from exc
    if len(data) > MAX_INPUT_BYTES:  # grew, or a special file
        raise InputError(f"{p} is larger than {MAX_INPUT_BYTES:,} bytes")
    if b"\0" in data:
        raise InputError(f"{p} looks binary (it contains NUL bytes): give a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p} is not UTF-8 text (bad byte at offset {exc.start}): give a "
                         f"text file") from exc
    if not text.split():
        raise InputError(f"{p} is empty: it has no words to summarize")
    return text


@dataclass(frozen=True)
class Settings:
    """One demo run."""

    text: str
    source: str = "the sample report"
    jobs: int = 3
    agents: int = 4
    latency_ms: float = 50.0
    summarizer: str = "local"
    same_input: bool = False
    in_process: bool = False
    chunk_words: int = CHUNK_WORDS
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.agents < 1:
            raise InputError("jobs and agents must be at least 1")

    def inputs(self) -> list[str]:
        """Each job's text: overlapping variants of the input (or the input itself)."""
        if self.same_input:
            return [self.text] * self.jobs
        return overlapping_inputs(self.text, self.jobs)


@dataclass(frozen=True)
class Plan:
    """What the readers will store: each job's chunks."""

    chunks: list[list[str]]

    @property
    def tasks(self) -> int:
        return sum(len(c) for c in self.chunks)

    @property
    def distinct(self) -> int:
        return len({chunk for job in self.chunks for chunk in job})

    @classmethod
    def of(cls, settings: Settings) -> Plan:
        return cls([chunk_text(text, settings.chunk_words) for text in settings.inputs()])


def job_name(i: int) -> str:
    return f"job-{i + 1}"


def _words(text: str) -> int:
    return len(text.split())


# --- the agents -------------------------------------------------------------------------------


class Reader(memgang.AgentMixin):
    """Splits one job's input into chunks and stores them (manifest first)."""

    def store(self, job: str, chunks: Sequence[str]) -> None:
        me = self.memory
        me.write(f"{job}/manifest", {"chunks": len(chunks),
                                     "words": sum(map(_words, chunks))},
                 group="manifests", context=job, ttl_s=DEMO_TTL_S)
        for i, chunk in enumerate(chunks):  # one by one, as a reader streaming its input
            me.write(f"{job}/chunk-{i:03d}", {"text": chunk, "index": i}, group="chunks",
                     context=job, ttl_s=DEMO_TTL_S)


class Mapper(memgang.AgentMixin):
    """Summarizes chunks: each chunk of each job by exactly one mapper.

    A mapper makes one summarizer call at a time, in its "seat" thread, and holds at most
    ``prefetch`` chunks: the one it summarizes and the next ones, claimed (a compare-and-set
    write of ``job-N/claim-III``) by its event handler while the seat is busy; chunks it
    cannot hold are left to the other mappers. With ``share``, each summary goes through
    compute_once: a stored one is reused, and one another mapper is computing right now is
    awaited by a helper thread, so the seat moves on to the next chunk meanwhile.
    """

    def __init__(self, summarizer: Summarizer, *, share: bool,
                 summary_words: int = SUMMARY_WORDS, prefetch: int = 3) -> None:
        self.summarizer = summarizer
        self.share = share
        self.summary_words = summary_words
        self._held = threading.BoundedSemaphore(prefetch)
        self._summarizing = threading.Lock()
        self._seat = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mapper-seat")
        self._helpers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mapper-wait")
        self._local = threading.local()

    @memgang.on("memory_updated", group="chunks")
    def on_chunk(self, event: Event) -> None:
        ref = event.ref
        if ref is None:
            return
        key = parse_full(ref.key)
        job, index = key.space, key.id.removeprefix("chunk-")
        me = self.memory
        self._held.acquire()  # wait for room: meanwhile other mappers take the chunks
        try:
            me.write(f"{job}/claim-{index}", me.name, expected_version=0, group="claims",
                     context=job, ttl_s=DEMO_TTL_S)
        except memgang.ConflictError:
            self._held.release()
            return  # another mapper has this chunk
        except BaseException:
            self._held.release()
            raise
        try:
            chunk = me.read(ref)  # by reference, while the seat is still busy
            if chunk is None:
                raise LookupError(f"chunk {ref} is gone")
        except Exception as exc:
            self._held.release()
            self._failed(me, ref, exc)
            return
        self._seat.submit(self._summarize_chunk, job, index, ref, chunk.value["text"])

    def _me(self) -> memgang.AgentMemory:
        """This thread's handle on the agent's memory (the counters are shared)."""
        me: memgang.AgentMemory | None = getattr(self._local, "memory", None)
        if me is None:
            me = self._local.memory = self.memory.swarm.agent(self.agent_name)
        return me

    def _summarize_chunk(self, job: str, index: str, ref: memgang.MemoryRef, text: str
                         ) -> None:
        me = self._me()
        try:
            if not self.share:
                self._store(me, job, index, ref, self._summarize(text), "computed")
                return
            ran: list[bool] = []
            try:
                summary = me.compute_once(MEMO_NAME, self._inputs(text),
                                          lambda: self._summarize(text, ran), wait=False,
                                          ttl_s=DEMO_TTL_S)
            except memgang.Computing:
                self._helpers.submit(self._await_summary, job, index, ref, text)
                return
            self._store(me, job, index, ref, summary, "computed" if ran else "reused")
        except Exception as exc:
            self._failed(me, ref, exc)
        finally:
            self._held.release()

    def _await_summary(self, job: str, index: str, ref: memgang.MemoryRef, text: str) -> None:
        me = self._me()
        try:
            ran: list[bool] = []
            summary = me.compute_once(MEMO_NAME, self._inputs(text),
                                      lambda: self._summarize(text, ran), ttl_s=DEMO_TTL_S)
            self._store(me, job, index, ref, summary, "computed" if ran else "awaited")
        except Exception as exc:
            self._failed(me, ref, exc)

    def _inputs(self, text: str) -> dict[str, Any]:
        return {"text": text, "max_words": self.summary_words,
                "summarizer": self.summarizer.name}

    def _summarize(self, text: str, ran: list[bool] | None = None) -> str:
        with self._summarizing:  # the seat; a rare takeover by a helper waits for it
            if ran is not None:
                ran.append(True)
            summary = self.summarizer.summarize(text, max_words=self.summary_words)
            self.memory.stats.incr("summarizer_calls")
            self.memory.stats.incr("summarizer_words", _words(text))
            return summary

    @staticmethod
    def _store(me: memgang.AgentMemory, job: str, index: str, ref: memgang.MemoryRef,
               summary: str, how: str) -> None:
        me.write(f"{job}/summary-{index}", {"text": summary, "index": int(index), "how": how},
                 group="summaries", context=job, derived_from=[ref], ttl_s=DEMO_TTL_S)

    def _failed(self, me: memgang.AgentMemory, ref: memgang.MemoryRef, exc: Exception) -> None:
        """Log and count it as a handler error, and tell the swarm (the driver stops)."""
        log.error("%s: summarizing %s failed: %s: %s", me.name, ref.key,
                  type(exc).__name__, exc)
        me.stats.incr("handler_errors")
        try:
            me.share_knowledge(ERROR_TOPIC, {"agent": me.name, "chunk": ref.key,
                                             "error": f"{type(exc).__name__}: {exc}"})
        except memgang.Error:
            log.exception("%s: cannot report an error", me.name)

    def close(self) -> None:
        """Finish the chunks in hand (call after run() returns)."""
        self._seat.shutdown(wait=True)
        self._helpers.shutdown(wait=True)


class Reducer(memgang.AgentMixin):
    """Writes each job's report once all its summaries are stored, reading them by
    reference, ``derived_from`` them."""

    def __init__(self) -> None:
        self.expected: dict[str, int] = {}
        self.refs: dict[str, dict[int, memgang.MemoryRef]] = {}
        self.done: set[str] = set()

    @memgang.on("memory_updated", match="*/manifest")
    def on_manifest(self, event: Event) -> None:
        manifest = self.memory.read(event.ref) if event.ref else None
        if manifest is not None and event.context:
            self.expected[event.context] = int(manifest.value["chunks"])
            self._maybe_reduce(event.context)

    @memgang.on("memory_updated", group="summaries")
    def on_summary(self, event: Event) -> None:
        if event.ref is None or not event.context:
            return
        index = int(parse_full(event.ref.key).id.removeprefix("summary-"))
        self.refs.setdefault(event.context, {})[index] = event.ref
        self._maybe_reduce(event.context)

    def _maybe_reduce(self, job: str) -> None:
        refs = self.refs.get(job, {})
        if job in self.done or job not in self.expected or len(refs) < self.expected[job]:
            return
        ordered = [refs[i] for i in sorted(refs)]
        texts = []
        for ref in ordered:
            summary = self.memory.read(ref)  # by reference
            if summary is None:
                raise LookupError(f"summary {ref} is gone")
            texts.append(summary.value["text"])
        report = "\n\n".join(texts)
        self.memory.write(f"{job}/report", {"text": report, "summaries": len(ordered),
                                            "words": _words(report)},
                          group="reports", context=job, derived_from=ordered,
                          ttl_s=DEMO_TTL_S)
        self.done.add(job)


# --- the driver -------------------------------------------------------------------------------

Echo = Callable[[str], None]


class Narrator:
    """Prints the run as its events arrive (a subscription callback) and tracks progress."""

    def __init__(self, echo: Echo, plan: Plan, mappers: int, verbose: bool) -> None:
        self.echo, self.plan, self.verbose = echo, plan, verbose
        self.mappers = mappers
        self.lock = threading.Lock()
        self.joined: set[str] = set()
        self.all_joined = threading.Event()
        self.finished = threading.Event()
        self.failed = threading.Event()
        self.errors: list[str] = []
        self.t0: float | None = None
        self.t_end: float | None = None
        self.chunks: dict[str, int] = {}
        self.summaries: dict[str, int] = {}
        self.reports: dict[str, dict[str, Any]] = {}

    def start_clock(self) -> None:
        self.t0 = time.monotonic()

    def _say(self, text: str) -> None:
        stamp = "" if self.t0 is None else f"+{time.monotonic() - self.t0:.3f}s  "
        self.echo(f"  {stamp}{text}")

    def __call__(self, event: Event) -> None:
        with self.lock:
            self._event(event)

    def _event(self, e: Event) -> None:
        kind, job = e.type, e.context or ""
        if self.verbose:
            self._say(f"{kind:<15} {e.key or e.data.get('topic') or '':<34} {e.agent or ''}")
        if kind == "agent_joined":
            role = (e.data.get("info") or {}).get("role", "")
            if role in ("mapper", "reducer") and e.agent:
                self.joined.add(e.agent)
                # an agent subscribes before it announces itself: once all have joined,
                # none can miss a chunk or a manifest
                if len(self.joined) == self.mappers + 1:
                    self.all_joined.set()
            if not self.verbose and role != "reader":
                self._say(f"{e.agent} joined ({role})")
        elif kind == "agent_left" and not self.verbose:
            role = (e.data.get("info") or {}).get("role", "")
            if role != "reader":
                self._say(f"{e.agent} left ({e.data.get('reason', '')})")
        elif kind == "knowledge_shared" and e.data.get("topic") == ERROR_TOPIC:
            detail = e.value or {}
            message = f"{detail.get('agent')}: {detail.get('chunk')}: {detail.get('error')}"
            self.errors.append(message)
            self._say(f"ERROR {message}")
            self.failed.set()
        elif kind == "memory_updated":
            self._memory(e, job)

    def _memory(self, e: Event, job: str) -> None:
        index = int(job.removeprefix("job-")) - 1 if job.startswith("job-") else -1
        total = len(self.plan.chunks[index]) if 0 <= index < len(self.plan.chunks) else 0
        if e.group == "chunks":
            self.chunks[job] = self.chunks.get(job, 0) + 1
            if self.chunks[job] == total and not self.verbose:
                words = sum(map(_words, self.plan.chunks[index]))
                self._say(f"{job}: {e.agent} stored {total} chunks ({words:,} words)")
        elif e.group == "summaries":
            done = self.summaries[job] = self.summaries.get(job, 0) + 1
            if not self.verbose and total and any(done == -(-total * q // 4) for q in (1, 2, 3)):
                self._say(f"{job}: {done}/{total} chunks summarized")
        elif e.group == "reports":
            derived = e.data.get("derived_from") or []
            self.reports[job] = {"key": e.key, "version": e.version,
                                 "derived_from": len(derived)}
            if not self.verbose:
                self._say(f"{job}: {e.agent} wrote the report from {len(derived)} summaries "
                          f"({e.key})")
            if len(self.reports) == len(self.plan.chunks):
                self.t_end = time.monotonic()
                self.finished.set()

    @property
    def wall_s(self) -> float:
        if self.t0 is None or self.t_end is None:
            return float("nan")
        return self.t_end - self.t0


@dataclass
class ModeResult:
    """The numbers of one mode, summed over the mappers."""

    mode: str
    share: bool
    swarm: str
    summarizer_calls: int = 0
    words_sent: int = 0
    wall_s: float = 0.0
    hits: int = 0
    waits: int = 0
    misses: int = 0
    takeovers: int = 0
    saved_s: float = 0.0
    handler_errors: int = 0
    reports: int = 0
    per_agent: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


class _MapperGroup:
    """The mapper agents of one mode: processes (the default) or threads."""

    def __init__(self, settings: Settings, url: str, gang: memgang.Gang, swarm: str,
                 share: bool) -> None:
        self.names = [f"mapper-{i + 1}" for i in range(settings.agents)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.threads: list[tuple[Mapper, threading.Thread]] = []
        if settings.in_process:
            for name in self.names:
                mapper = Mapper(_summarizer(settings), share=share)
                mapper.join_gang(gang.swarm(swarm), name, role="mapper")
                thread = threading.Thread(target=mapper.run, kwargs={"handle_signals": False},
                                          name=name, daemon=True)
                thread.start()
                self.threads.append((mapper, thread))
            return
        env = {**os.environ, "MEMGANG_URL": url}
        for name in self.names:
            cmd = [sys.executable, "-m", "memgang.demo.mapreduce", "--swarm", swarm,
                   "--name", name, "--summarizer", settings.summarizer,
                   "--latency-ms", str(settings.latency_ms)]
            if not share:
                cmd.append("--no-share")
            # they die with this process (and leave Ctrl-C to it: it stops them cleanly)
            self.procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL,
                                               preexec_fn=die_with_parent))

    def wait_joined(self, swarm: memgang.Swarm, timeout_s: float) -> None:
        """Wait until every mapper is present (processes take a moment to start)."""
        names = set(self.names)

        def joined() -> bool:
            if names <= {a.name for a in swarm.agents()}:
                return True
            time.sleep(0.02)
            return False

        _wait_until(joined, self, timeout_s, f"the mappers of {swarm.name} to join")

    def dead(self) -> list[str]:
        return [f"{name} exited with {proc.returncode}"
                for name, proc in zip(self.names, self.procs, strict=False)
                if proc.poll() is not None]

    def stop(self) -> None:
        for mapper, _ in self.threads:
            mapper.stop()
        for mapper, thread in self.threads:
            thread.join(STOP_TIMEOUT_S)
            mapper.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _summarizer(settings: Settings) -> Summarizer:
    if settings.summarizer == "local":
        return make_summarizer("local", latency_ms=settings.latency_ms)
    return make_summarizer(settings.summarizer)


class DemoFailed(RuntimeError):
    """The run did not finish: an agent failed, died, or the run timed out."""


def _wait_until(done: Callable[[], bool], group: _MapperGroup, timeout_s: float, what: str,
                narrator: Narrator | None = None) -> None:
    """Until ``done()`` (which waits a little itself when it says no); an agent that failed,
    a mapper process that died, or ``timeout_s`` passing ends the run with DemoFailed."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if narrator is not None and narrator.failed.is_set():
            raise DemoFailed("an agent failed: " + "; ".join(narrator.errors))
        dead = group.dead()
        if dead:
            raise DemoFailed("mapper process(es) died: " + "; ".join(dead))
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout_s:.0f}s waiting for {what}")


def run_mode(settings: Settings, plan: Plan, gang: memgang.Gang, url: str, swarm_name: str,
             share: bool, mappers: _MapperGroup, echo: Echo, verbose: bool) -> ModeResult:
    """One mode over one swarm whose mappers are already starting."""
    mode = "shared" if share else "no-share"
    swarm = gang.swarm(swarm_name)
    narrator = Narrator(echo, plan, settings.agents, verbose)
    result = ModeResult(mode, share, swarm_name)
    reducer = Reducer().join_gang(swarm, "reducer", role="reducer", since="start")
    # from the start of the swarm's log: mappers that joined before this subscribed count
    subscription = swarm.subscribe(narrator, since="start")
    reducer_thread = threading.Thread(target=reducer.run, kwargs={"handle_signals": False},
                                      name="reducer", daemon=True)
    try:
        reducer_thread.start()
        _wait_until(lambda: narrator.all_joined.wait(0.05), mappers, JOIN_TIMEOUT_S,
                    f"{settings.agents} mappers and the reducer to join", narrator)
        narrator.start_clock()
        readers = []
        for i, chunks in enumerate(plan.chunks):
            reader = Reader().join_gang(swarm, f"reader-{i + 1}", role="reader")
            readers.append(threading.Thread(target=_read_job, args=(reader, job_name(i), chunks),
                                            name=f"reader-{i + 1}", daemon=True))
        for thread in readers:
            thread.start()
        _wait_until(lambda: narrator.finished.wait(0.05), mappers, settings.timeout_s,
                    f"the reports of {len(plan.chunks)} jobs", narrator)
        result.wall_s = narrator.wall_s
        for thread in readers:
            thread.join()
    finally:
        reducer.stop()
        mappers.stop()
        reducer_thread.join(STOP_TIMEOUT_S)
        time.sleep(0.05)  # let the last agent_left lines arrive
        subscription.stop()
    result.errors = narrator.errors
    result.reports = len(narrator.reports)
    stats = swarm.stats()
    for name in mappers.names:
        counters = stats.get(name, {})
        result.per_agent[name] = {k: counters.get(k, 0) for k in
                                  ("summarizer_calls", "hits", "waits", "misses")}
        result.summarizer_calls += counters.get("summarizer_calls", 0)
        result.words_sent += counters.get("summarizer_words", 0)
        result.hits += counters.get("hits", 0)
        result.waits += counters.get("waits", 0)
        result.misses += counters.get("misses", 0)
        result.takeovers += counters.get("takeovers", 0)
        result.saved_s += counters.get("saved_ms", 0) / 1000
        result.handler_errors += counters.get("handler_errors", 0)
    return result


def _read_job(reader: Reader, job: str, chunks: Sequence[str]) -> None:
    reader.start()
    try:
        reader.store(job, chunks)
    finally:
        reader.leave_gang()


def run_demo(settings: Settings, *, modes: Sequence[bool] = (True, False),
             url: str | None = None, echo: Echo = print, verbose: bool = False
             ) -> dict[str, Any]:
    """Run the demo in each mode (``True``: sharing on), narrating through ``echo``;
    returns the report (JSON-ready). Raises :class:`DemoFailed` if a run does not finish."""
    if settings.summarizer != "local":
        _summarizer(settings)  # fail now, with the summarizer's own message, if unusable
    plan = Plan.of(settings)
    embedded = url is None
    gang = memgang.connect(url)  # no URL: an embedded server, stopped by gang.close()
    url = gang.url  # what the mapper processes connect to
    tag = secrets.token_hex(3)
    names = {share: f"demo-{tag}-{'shared' if share else 'solo'}" for share in modes}
    groups: dict[bool, _MapperGroup] = {}
    results = []
    try:
        for share in modes:  # all mappers start at once, and are up before any mode runs
            groups[share] = _MapperGroup(settings, url, gang, names[share], share)
        for share in modes:
            groups[share].wait_joined(gang.swarm(names[share]), JOIN_TIMEOUT_S)
        for share in modes:
            how = ("with sharing (compute-once)" if share
                   else "without sharing (each job recomputes)")
            kind = "threads" if settings.in_process else "processes"
            echo(f"\n{'shared' if share else 'no-share'}: {settings.jobs} job(s) {how}, "
                 f"{settings.agents} mapper agent(s) ({kind}), swarm {names[share]}")
            results.append(run_mode(settings, plan, gang, url, names[share], share,
                                    groups[share], echo, verbose))
    finally:
        for group in groups.values():
            group.stop()
        gang.close()
    return _report(settings, plan, embedded, results)


def _report(settings: Settings, plan: Plan, embedded: bool, results: list[ModeResult]
            ) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input": {
            "source": settings.source, "words": _words(settings.text), "jobs": settings.jobs,
            "same_input": settings.same_input, "agents": settings.agents,
            "mappers": "threads" if settings.in_process else "processes",
            "summarizer": settings.summarizer,
            "llm_latency_ms": settings.latency_ms if settings.summarizer == "local" else None,
            "chunk_words": settings.chunk_words, "chunk_tasks": plan.tasks,
            "distinct_chunks": plan.distinct, "embedded_server": embedded,
        },
        "modes": [r.to_json() for r in results],
    }
    by = {r.mode: r for r in results}
    if "shared" in by and "no-share" in by:
        a, b = by["shared"], by["no-share"]
        out["ratios"] = {
            "summarizer_calls": _ratio(a.summarizer_calls, b.summarizer_calls),
            "words_sent": _ratio(a.words_sent, b.words_sent),
            "wall_time": _ratio(a.wall_s, b.wall_s),
        }
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def render_table(report: dict[str, Any]) -> str:
    """The comparison table: one column per mode, and their ratio."""
    modes = report["modes"]
    ratios = report.get("ratios") or {}
    rows: list[tuple[str, list[str], str]] = [
        ("summarizer calls", [f"{m['summarizer_calls']:,}" for m in modes],
         _fmt_ratio(ratios.get("summarizer_calls"))),
        ("words sent to the summarizer", [f"{m['words_sent']:,}" for m in modes],
         _fmt_ratio(ratios.get("words_sent"))),
        ("wall time", [f"{m['wall_s']:.2f} s" for m in modes],
         _fmt_ratio(ratios.get("wall_time"))),
        ("hits (reused a stored summary)", [str(m["hits"]) for m in modes], ""),
        ("waits (awaited another's)", [str(m["waits"]) for m in modes], ""),
        ("summarizer time saved", [f"{m['saved_s']:.2f} s" for m in modes], ""),
    ]
    header = ["", *(m["mode"] for m in modes)] + (["shared / no-share"] if ratios else [])
    lines = [header] + [[label, *cells] + ([ratio] if ratios else []) for label, cells, ratio
                        in rows]
    inp = report["input"]
    head = (f"{inp['jobs']} job(s) over {inp['source']} ({inp['words']:,} words): "
            f"{inp['chunk_tasks']} chunks in all, {inp['distinct_chunks']} distinct; "
            f"{inp['agents']} mapper agents; {inp['summarizer']} summarizer"
            + (f" at {inp['llm_latency_ms']:g} ms per call" if inp["llm_latency_ms"] else ""))
    return "\n".join([head, "", *aligned(lines)])


def _fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


# --- one mapper process -----------------------------------------------------------------------


def mapper_main(argv: Sequence[str] | None = None) -> int:
    """A mapper agent in its own process, until SIGTERM/SIGINT (it then leaves cleanly)."""
    parser = argparse.ArgumentParser(prog="python -m memgang.demo.mapreduce",
                                     description="One mapper agent of the MapReduce demo.")
    parser.add_argument("--swarm", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--summarizer", default="local", choices=("local", "openai"))
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--no-share", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{args.name}: %(message)s")
    if not os.environ.get("MEMGANG_URL"):
        parser.error("MEMGANG_URL must name the server to join")
    summarizer = (make_summarizer("local", latency_ms=args.latency_ms)
                  if args.summarizer == "local" else make_summarizer(args.summarizer))
    gang = memgang.connect()
    mapper = Mapper(summarizer, share=not args.no_share)
    try:
        mapper.join_gang(gang.swarm(args.swarm), args.name, role="mapper")
        mapper.run()
    finally:
        mapper.close()
        gang.close()
    return 0


if __name__ == "__main__":
    sys.exit(mapper_main())
