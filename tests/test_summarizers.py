"""The demo's summarizers and sample report.

The OpenAI-compatible summarizer is tested against a real HTTP server that each test starts
on 127.0.0.1 and scripts reply by reply; waits between retries are recorded by an injected
``sleep`` rather than slept, so nothing here depends on timing except the one timeout test,
which bounds the client at a fraction of the server's delay.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from memgang.demo.report import chunk_text, overlapping_inputs, sample_report
from memgang.demo.summarizers import (
    INSTALL_LLM,
    LocalSummarizer,
    MissingDependencyError,
    OpenAICompatibleSummarizer,
    Summarizer,
    SummarizerError,
    make_summarizer,
    split_sentences,
)

ROOT = Path(__file__).resolve().parent.parent

ARTICLE = """# Warehouse robots

## Overview
Kestrel Logistics deployed warehouse robots in three depots last spring. The robots move
shelves to human pickers, who no longer walk the aisles. Dr. Amara Osei led the project for
the operations team.

## Results
Picking speed rose by 40 percent in the first depot. The robots also cut walking time for
pickers to almost nothing. Error rates fell, because the robots bring the right shelf every
time. Battery charging remains the main limit on robot uptime.

## Next steps
Kestrel Logistics plans robots for five more depots. Charging will move to swappable
batteries, so robots no longer wait at chargers.
"""


def words(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("Dr. Osei met Mr. Smith. Then they left.", ["Dr. Osei met Mr. Smith.", "Then they left."]),
        ("Use e.g. a cache. Or i.e. not. Done.", ["Use e.g. a cache.", "Or i.e. not.", "Done."]),
        ("J. R. R. Tolkien wrote it. Fine.", ["J. R. R. Tolkien wrote it.", "Fine."]),
        ("It grew 3.5 times. See No. 5 now.", ["It grew 3.5 times.", "See No. 5 now."]),
        ("The answer was no. Then we left.", ["The answer was no.", "Then we left."]),
        (
            '"Why?" she asked. "Because." Then quiet.',
            ['"Why?" she asked.', '"Because."', "Then quiet."],
        ),
        ("It is done (finally). Next one.", ["It is done (finally).", "Next one."]),
        ("Wrapped lines\nare joined. Into one.", ["Wrapped lines are joined.", "Into one."]),
        ("## Heading\nText follows. More.", ["## Heading", "Text follows.", "More."]),
        ("Background\nThe service failed.", ["Background", "The service failed."]),
        (
            "- First item. Second.\n- next item\n  wraps",
            ["- First item.", "Second.", "- next item wraps"],
        ),
        ("1. Restore service\n2. Add alerts", ["1. Restore service", "2. Add alerts"]),
        ("----\nAfter the rule.", ["----", "After the rule."]),
        ("", []),
        ("   \n\n  ", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_sentences_loses_no_words() -> None:
    for text in (ARTICLE, sample_report(words=2000, seed=3)):
        assert " ".join(split_sentences(text)).split() == text.split()


# --------------------------------------------------------------------------------------
# LocalSummarizer
# --------------------------------------------------------------------------------------


def test_local_is_a_summarizer() -> None:
    summarizer = LocalSummarizer()
    assert isinstance(summarizer, Summarizer)
    assert summarizer.name == "local"


def test_local_is_deterministic() -> None:
    first = LocalSummarizer().summarize(ARTICLE, max_words=40)
    assert first
    assert LocalSummarizer().summarize(ARTICLE, max_words=40) == first
    summarizer = LocalSummarizer()
    assert [summarizer.summarize(ARTICLE, max_words=40) for _ in range(3)] == [first] * 3


def test_local_is_deterministic_across_processes() -> None:
    """No dependence on hash randomization: another interpreter agrees."""
    code = (
        "import sys; from memgang.demo.summarizers import LocalSummarizer; "
        "sys.stdout.write(LocalSummarizer().summarize(sys.stdin.read(), max_words=40))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=ARTICLE,
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert result.stdout == LocalSummarizer().summarize(ARTICLE, max_words=40)


@pytest.mark.parametrize("max_words", [1, 5, 12, 30, 60, 200])
def test_local_respects_max_words(max_words: int) -> None:
    summarizer = LocalSummarizer()
    for text in [ARTICLE, *chunk_text(sample_report(words=3000))[:8]]:
        summary = summarizer.summarize(text, max_words=max_words)
        assert 0 < words(summary) <= max_words


def test_local_quotes_real_sentences_in_order() -> None:
    summarizer = LocalSummarizer()
    for text in [ARTICLE, *chunk_text(sample_report(words=3000))]:
        sentences = split_sentences(text)
        summary = summarizer.summarize(text, max_words=50)
        picked = split_sentences(summary)
        assert picked, text
        positions = [sentences.index(sentence) for sentence in picked]
        assert positions == sorted(positions)
        assert "#" not in summary  # headings are never quoted


def test_local_prefers_central_sentences() -> None:
    summary = LocalSummarizer().summarize(ARTICLE, max_words=25)
    assert "robots" in summary


def test_local_empty_and_tiny_texts() -> None:
    summarizer = LocalSummarizer()
    assert summarizer.summarize("") == ""
    assert summarizer.summarize("  \n\n ") == ""
    assert summarizer.summarize("The depot reopened.") == "The depot reopened."
    assert summarizer.summarize("No punctuation here") == "No punctuation here"
    assert summarizer.summarize("## Only a heading") == "## Only a heading"


def test_local_cuts_a_sentence_longer_than_max_words() -> None:
    sentence = "The robots in the northern depot moved every shelf twice before noon."
    summary = LocalSummarizer().summarize(sentence, max_words=4)
    assert summary == "The robots in the…"


def test_local_counts_calls_and_words() -> None:
    summarizer = LocalSummarizer()
    summarizer.summarize(ARTICLE)
    summarizer.summarize("")
    summarizer.summarize("Two words.")
    assert summarizer.calls == 3
    assert summarizer.words_in == words(ARTICLE) + 2


def test_local_latency_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    LocalSummarizer(latency_ms=250).summarize(ARTICLE)
    LocalSummarizer().summarize(ARTICLE)
    assert slept == [0.25]


def test_local_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        LocalSummarizer(latency_ms=-1)
    with pytest.raises(ValueError, match="max_words"):
        LocalSummarizer().summarize(ARTICLE, max_words=0)


# --------------------------------------------------------------------------------------
# The sample report and chunking
# --------------------------------------------------------------------------------------


def test_sample_report_is_deterministic_and_seeded() -> None:
    report = sample_report()
    assert report == sample_report(words=6000, seed=7)
    assert report != sample_report(seed=8)
    assert report.startswith("# Incident Review: ")
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert 10 <= len(headings) <= 14
    assert len(set(headings)) == len(headings)
    assert 5000 <= words(report) <= 7000


@pytest.mark.parametrize("size", [500, 2000, 12000])
def test_sample_report_length_follows_words(size: int) -> None:
    report = sample_report(words=size, seed=1)
    assert words(report) >= 0.8 * size
    sentences = [s for s in split_sentences(report) if not s.startswith("#")]
    assert all(s.endswith(".") for s in sentences)
    assert len(set(sentences)) == len(sentences)  # no sentence twice


@pytest.mark.parametrize("target", [40, 120, 250, 1000])
def test_chunk_text_keeps_every_sentence_whole(target: int) -> None:
    report = sample_report(words=4000, seed=5)
    chunks = chunk_text(report, target_words=target)
    assert " ".join(chunks).split() == report.split()
    assert [s for chunk in chunks for s in split_sentences(chunk)] == split_sentences(report)
    for chunk in chunks:
        body = [s for s in split_sentences(chunk) if not s.startswith("#")]
        heading = words(chunk) - sum(map(words, body))
        # over target only by a heading, or by one sentence longer than the target
        assert words(chunk) - heading <= target or len(body) == 1


def test_chunk_text_boundaries() -> None:
    text = (
        "# Title\n\n## One\nShort paragraph.\n\n## Two\n"
        "Dr. Osei spoke first. Mr. Smith spoke second. The end came third.\n\n"
        "A sentence far longer than the target of this particular test run.\n"
    )
    assert chunk_text(text, target_words=5) == [
        "# Title",
        "## One\n\nShort paragraph.",
        "## Two\n\nDr. Osei spoke first.",
        "Mr. Smith spoke second.",
        "The end came third.",
        "A sentence far longer than the target of this particular test run.",
    ]
    assert chunk_text("") == []
    with pytest.raises(ValueError, match="target_words"):
        chunk_text(text, target_words=0)


def test_chunks_of_a_section_do_not_depend_on_what_precedes_it() -> None:
    report = sample_report(words=3000)
    start = report.index("\n## ", report.index("\n## ") + 1) + 1  # the second section
    end = report.index("\n## ", start)
    section = report[start:end]
    assert set(chunk_text(section)) <= set(chunk_text(report))
    assert set(chunk_text(section)) <= set(chunk_text("Some other preamble.\n\n" + section))


def test_overlapping_inputs_share_chunks() -> None:
    report = sample_report()
    chunks = chunk_text(report)
    per_section = [chunk_text(t) for t in report.split("\n\n## ")]
    n = len(per_section) - 1  # sections after the title and preamble
    assert len(set(chunks)) == len(chunks)
    for jobs in (1, 2, 5, n + 3):
        inputs = overlapping_inputs(report, jobs)
        assert len(inputs) == jobs
        assert len(set(inputs)) == min(jobs, n)
        all_chunks = [c for text in inputs for c in chunk_text(text)]
        assert set(all_chunks) <= set(chunks)
        omitted = sum(len(per_section[1 + i % n]) for i in range(jobs))
        assert len(all_chunks) == jobs * len(chunks) - omitted
        expected_distinct = len(chunks) if jobs >= 2 else len(chunks) - len(per_section[1])
        assert len(set(all_chunks)) == expected_distinct


def test_overlapping_inputs_edge_cases() -> None:
    text = "# Title\n\nIntro.\n\n## Only section\n\nBody."
    assert overlapping_inputs(text, 3) == [text + "\n"] * 3
    with pytest.raises(ValueError, match="jobs"):
        overlapping_inputs(text, 0)


# --------------------------------------------------------------------------------------
# OpenAICompatibleSummarizer against a real local HTTP server
# --------------------------------------------------------------------------------------


def completion(content: object) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"content": content}}]}).encode()


@dataclass
class Reply:
    status: int = 200
    body: bytes = field(default_factory=lambda: completion("A short summary."))
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class FakeLLM:
    """A chat-completions server on 127.0.0.1 that replies as scripted, then succeeds."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.received: list[Received] = []
        self.stop = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.received.append(
                    Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw)
                    )
                )
                reply = fake.script.pop(0) if fake.script else Reply()
                if fake.stop.wait(reply.delay_s):
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = False  # server_close() joins the handler threads

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    server = FakeLLM()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(llm: FakeLLM, sleeps: list[float], **kw: Any) -> OpenAICompatibleSummarizer:
    options: dict[str, Any] = {"model": "test-model", "backoff_s": 0.01, "timeout_s": 5.0}
    options.update(kw)
    return OpenAICompatibleSummarizer(llm.base_url, sleep=sleeps.append, **options)


def test_openai_success(llm: FakeLLM, sleeps: list[float]) -> None:
    with client(llm, sleeps, api_key="sk-test") as summarizer:
        assert isinstance(summarizer, Summarizer)
        assert summarizer.name == "openai:test-model"
        assert summarizer.summarize(ARTICLE, max_words=40) == "A short summary."
        assert summarizer.calls == 1
        assert summarizer.words_in == words(ARTICLE)
    [request] = llm.received
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["content-type"] == "application/json"
    assert request.body["model"] == "test-model"
    system, user = request.body["messages"]
    assert (system["role"], user["role"]) == ("system", "user")
    assert "at most 40 words" in user["content"]
    assert ARTICLE in user["content"]
    assert sleeps == []


def test_openai_without_key_sends_no_authorization(llm: FakeLLM, sleeps: list[float]) -> None:
    with client(llm, sleeps) as summarizer:
        summarizer.summarize("Some text to summarize.")
        assert summarizer.summarize("   ") == ""  # no request for a blank text
    [request] = llm.received
    assert "authorization" not in request.headers


def test_openai_clips_long_replies(llm: FakeLLM, sleeps: list[float]) -> None:
    reply = "First short sentence here. " + "Then a long second sentence " * 10 + "ends."
    llm.script = [Reply(body=completion(reply)), Reply(body=completion("word " * 50))]
    with client(llm, sleeps) as summarizer:
        assert summarizer.summarize(ARTICLE, max_words=10) == "First short sentence here."
        clipped = summarizer.summarize(ARTICLE, max_words=10)
        assert words(clipped) == 10
        assert clipped.endswith("…")


def test_openai_retries_a_500(llm: FakeLLM, sleeps: list[float]) -> None:
    llm.script = [Reply(500, b"boom"), Reply(502, b"bad gateway")]
    with client(llm, sleeps, backoff_s=0.01) as summarizer:
        assert summarizer.summarize(ARTICLE) == "A short summary."
    assert len(llm.received) == 3
    assert sleeps == [0.01, 0.02]


def test_openai_honours_retry_after(llm: FakeLLM, sleeps: list[float]) -> None:
    llm.script = [
        Reply(429, b"slow down", {"Retry-After": "7"}),
        Reply(429, b"slow down", {"Retry-After": "3600"}),
        Reply(429, b"slow down", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
    ]
    with client(llm, sleeps, backoff_s=0.01, max_delay_s=30.0) as summarizer:
        assert summarizer.summarize(ARTICLE) == "A short summary."
    assert len(llm.received) == 4
    assert sleeps == [7.0, 30.0, 0.04]  # as asked, capped, backoff for an HTTP date


def test_openai_gives_up_after_max_retries(llm: FakeLLM, sleeps: list[float]) -> None:
    llm.script = [Reply(503, b"unavailable")] * 5
    with client(llm, sleeps, max_retries=2) as summarizer, pytest.raises(SummarizerError) as err:
        summarizer.summarize(ARTICLE)
    assert len(llm.received) == 3
    assert err.value.status == 503
    assert "HTTP 503 after 3 attempt(s)" in str(err.value)
    assert "unavailable" in str(err.value)


def test_openai_does_not_retry_a_400(llm: FakeLLM, sleeps: list[float]) -> None:
    body = json.dumps({"error": {"message": "Unknown model: test-model"}}).encode()
    llm.script = [Reply(400, body)]
    with client(llm, sleeps) as summarizer, pytest.raises(SummarizerError) as err:
        summarizer.summarize(ARTICLE)
    assert len(llm.received) == 1
    assert sleeps == []
    error = err.value
    assert error.status == 400
    assert error.url == llm.base_url + "/chat/completions"
    message = str(error)
    assert error.url in message
    assert "HTTP 400" in message
    assert "Unknown model: test-model" in message


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"[]", "without choices[0]:"),
        (json.dumps({"error": {"message": "quota"}}).encode(), "without choices[0]:"),
        (json.dumps({"choices": []}).encode(), "without choices[0]:"),
        (json.dumps({"choices": [{"text": "hi"}]}).encode(), "without choices[0].message:"),
        (completion(None), "without choices[0].message.content as a string"),
        (completion(["a", "b"]), "without choices[0].message.content as a string"),
    ],
)
def test_openai_rejects_malformed_replies(
    llm: FakeLLM, sleeps: list[float], body: bytes, named: str
) -> None:
    llm.script = [Reply(200, body)]
    with client(llm, sleeps) as summarizer, pytest.raises(SummarizerError) as err:
        summarizer.summarize(ARTICLE)
    assert named in str(err.value)
    assert err.value.status == 200
    assert len(llm.received) == 1


def test_openai_retries_timeouts(llm: FakeLLM, sleeps: list[float]) -> None:
    llm.script = [Reply(delay_s=30.0), Reply(delay_s=30.0)]
    with client(llm, sleeps, timeout_s=0.2, max_retries=1) as summarizer:
        with pytest.raises(SummarizerError) as err:
            summarizer.summarize(ARTICLE)
        assert "failed after 2 attempt(s): ReadTimeout" in str(err.value)
        assert err.value.status is None
        assert sleeps == [0.01]
        assert summarizer.summarize(ARTICLE) == "A short summary."  # the server recovered
    assert len(llm.received) == 3


def test_openai_connection_refused(sleeps: list[float]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with (
        OpenAICompatibleSummarizer(
            url, "m", max_retries=2, backoff_s=0.01, sleep=sleeps.append
        ) as summarizer,
        pytest.raises(SummarizerError) as err,
    ):
        summarizer.summarize(ARTICLE)
    assert f"POST {url}/chat/completions failed after 3 attempt(s): ConnectError" in str(err.value)
    assert sleeps == [0.01, 0.02]


def test_openai_close_and_pickle(llm: FakeLLM) -> None:
    summarizer = OpenAICompatibleSummarizer(llm.base_url, "m")
    summarizer.summarize(ARTICLE)
    copy = pickle.loads(pickle.dumps(summarizer))
    summarizer.close()
    summarizer.close()  # idempotent
    with copy:
        assert copy.summarize(ARTICLE) == "A short summary."
        assert copy.calls == 2
    assert len(llm.received) == 2


def test_openai_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatibleSummarizer("localhost:8000/v1", "m")
    with pytest.raises(ValueError, match="model"):
        OpenAICompatibleSummarizer("http://localhost:8000/v1", "")
    with pytest.raises(ValueError, match="max_retries"):
        OpenAICompatibleSummarizer("http://localhost:8000/v1", "m", max_retries=-1)


def test_missing_httpx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # makes `import httpx` fail
    with pytest.raises(MissingDependencyError) as err:
        OpenAICompatibleSummarizer("http://localhost:8000/v1", "m")
    assert isinstance(err.value, ImportError)
    assert INSTALL_LLM == "pip install 'memgang[llm]'"
    assert str(err.value).endswith(INSTALL_LLM)


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMGANG_LLM_URL", raising=False)
    monkeypatch.delenv("MEMGANG_LLM_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SummarizerError, match="MEMGANG_LLM_URL"):
        OpenAICompatibleSummarizer.from_env()
    monkeypatch.setenv("MEMGANG_LLM_URL", "http://localhost:8000/v1/")
    with pytest.raises(SummarizerError, match="MEMGANG_LLM_MODEL"):
        make_summarizer("openai")
    monkeypatch.setenv("MEMGANG_LLM_MODEL", "llama-3")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    with OpenAICompatibleSummarizer.from_env(max_retries=1) as summarizer:
        assert summarizer.url == "http://localhost:8000/v1/chat/completions"
        assert summarizer.model == "llama-3"
        assert summarizer.api_key == "sk-env"
        assert summarizer.max_retries == 1


def test_make_summarizer() -> None:
    local = make_summarizer()
    assert isinstance(local, LocalSummarizer)
    assert isinstance(make_summarizer("local", latency_ms=5), LocalSummarizer)
    remote = make_summarizer("openai", base_url="http://localhost:1/v1", model="m")
    assert isinstance(remote, OpenAICompatibleSummarizer)
    remote.close()
    with pytest.raises(ValueError, match="'local' or 'openai'"):
        make_summarizer("gpt")
