"""Summarizers for the MapReduce demo.

Two implementations of one small, synchronous protocol (the demo runs each mapper in its
own process, so there is nothing to gain from ``async`` here):

- :class:`LocalSummarizer` is extractive and deterministic: no network, no model, the same
  input always gives the same summary. ``latency_ms`` makes each call cost what an LLM
  call costs, so the demo's savings from compute-once are visible without an API key.
- :class:`OpenAICompatibleSummarizer` asks any server that speaks the OpenAI
  chat-completions API (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, ...). It needs httpx:
  ``pip install 'memgang[llm]'``.

Both keep ``calls`` (how many times ``summarize`` ran) and ``words_in`` (how many words
they were given), and both return at most ``max_words`` words, counted as whitespace-
separated tokens.

:func:`split_sentences` is the sentence splitter both use; ``memgang.demo.report`` chunks
with it too, so a chunk boundary never falls inside a sentence the summarizer sees whole.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import Error

if TYPE_CHECKING:
    import httpx

__all__ = [
    "INSTALL_LLM",
    "LocalSummarizer",
    "MissingDependencyError",
    "OpenAICompatibleSummarizer",
    "Summarizer",
    "SummarizerError",
    "make_summarizer",
    "split_sentences",
]

#: The command that installs what :class:`OpenAICompatibleSummarizer` needs.
INSTALL_LLM = "pip install 'memgang[llm]'"


@runtime_checkable
class Summarizer(Protocol):
    """Anything that turns a text into a summary of at most ``max_words`` words."""

    name: str

    def summarize(self, text: str, *, max_words: int = 60) -> str:
        """Return a summary of ``text`` with at most ``max_words`` words."""
        ...


class SummarizerError(Error):
    """A summarizer could not produce a summary.

    ``url``, ``status`` and ``body`` (an excerpt of the reply) are set when they are known;
    the message always names them too.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body


class MissingDependencyError(Error, ImportError):
    """An optional dependency is missing; the message says exactly what to run."""


# --------------------------------------------------------------------------------------
# Segmentation: headings, list items and sentences
# --------------------------------------------------------------------------------------


def _word_set(words: str) -> frozenset[str]:
    """The whitespace-separated words of ``words``: word lists read best as one string."""
    return frozenset(words.split())


# Always abbreviations: a period after them does not end a sentence.
_ABBREVIATIONS = _word_set(
    "mr mrs ms mx dr prof rev hon sr jr st mt gen col lt sgt capt cmdr gov sen rep pres "
    "vs inc ltd co corp llc plc dept univ est al cf"
)
# Abbreviations only when a number follows: "No. 5", "Jan. 12", "approx. 40".
_NUMBER_ABBREVIATIONS = _word_set(
    "no nos vol fig figs p pp sec art ch approx jan feb mar apr jun jul aug sep sept oct nov dec"
)
_DOTTED_ABBREVIATION = re.compile(r"(?:[a-z]\.)+[a-z]")  # e.g, i.e, u.s, a.m
_CLOSERS = "\"'\u201d\u2019)]"  # straight and curly quotes, brackets
_OPENERS = "\"'\u201c\u2018(["
_SENTENCE_END = re.compile(f"[.!?\u2026]+[{re.escape(_CLOSERS)}]*(?=\\s)")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_MARKDOWN_HEADING = re.compile(r"#{1,6}(?:\s|$)")
_LIST_MARKER = re.compile(r"(?:[-*+•]|\d{1,3}[.)])\s+")
_TERMINAL = ".!?:;,…" + _CLOSERS


@dataclass(frozen=True)
class _Unit:
    """One piece of a text: a sentence, or a heading (or rule) that is not a sentence."""

    text: str  # as written, whitespace collapsed, list marker included
    body: str  # what a summary quotes: ``text`` without its list marker
    heading: bool


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _is_abbreviation(before: str, next_char: str) -> bool:
    """Whether the word ending at a period (``before`` ends with it) is an abbreviation."""
    token = before.rsplit(" ", 1)[-1].lstrip(_OPENERS).lower()
    if not token:
        return False
    if token in _ABBREVIATIONS or _DOTTED_ABBREVIATION.fullmatch(token):
        return True
    if len(token) == 1 and token.isalpha():  # an initial: "J. R. Tolkien"
        return True
    return token in _NUMBER_ABBREVIATIONS and next_char.isdigit()


def _split_prose(text: str) -> list[str]:
    """Split one whitespace-collapsed run of prose into sentences, losing no characters."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        after = match.end() + 1  # text[match.end()] is the single space after the mark
        if after >= len(text):
            continue
        next_char = text[after]
        if next_char in _OPENERS and after + 1 < len(text):
            next_char = text[after + 1]
        if not (next_char.isupper() or next_char.isdigit()):
            continue
        if match.group().rstrip(_CLOSERS) == "." and _is_abbreviation(
            text[start : match.start()], next_char
        ):
            continue
        sentences.append(text[start : match.end()])
        start = after
    if start < len(text):
        sentences.append(text[start:])
    return sentences


def _is_plain_heading(line: str, next_line: str | None) -> bool:
    """A short, unpunctuated, capitalised line alone or above a capitalised line."""
    if len(line.split()) > 10 or line[-1] in _TERMINAL or _LIST_MARKER.match(line):
        return False
    if any(mark in line for mark in ".!?…"):  # "One. Two" is prose without a final stop
        return False
    if not (line[0].isupper() or line[0].isdigit()):
        return False
    return next_line is None or next_line[0].isupper()


def _segment(text: str) -> list[_Unit]:
    """Cut ``text`` into headings and sentences, in order.

    Blocks are separated by blank lines. In a block, a Markdown heading (``## ...``), a
    line without letters or digits (``----``) and a short unpunctuated first line followed
    by a capitalised line (a plain-text heading) stand alone; a list item (``-``, ``*``,
    ``1.``) runs until the next item or heading; other lines are prose, joined across line
    breaks. Every whitespace-separated word of ``text`` ends up in exactly one unit.
    """
    units: list[_Unit] = []
    for block in _BLANK_LINE.split(text):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        runs: list[list[str]] = []  # list items and prose, each a list of lines
        for i, line in enumerate(lines):
            next_line = lines[i + 1] if i + 1 < len(lines) else None
            if (
                _MARKDOWN_HEADING.match(line)
                or not any(ch.isalnum() for ch in line)
                or (i == 0 and _is_plain_heading(line, next_line))
            ):
                units.extend(_runs_to_units(runs))
                runs = []
                units.append(_Unit(_collapse(line), _collapse(line), True))
            elif _LIST_MARKER.match(line) or not runs:
                runs.append([line])
            else:
                runs[-1].append(line)
        units.extend(_runs_to_units(runs))
    return units


def _runs_to_units(runs: list[list[str]]) -> list[_Unit]:
    units: list[_Unit] = []
    for run in runs:
        joined = _collapse(" ".join(run))
        marker_match = _LIST_MARKER.match(joined)
        if marker_match is None:
            units.extend(_Unit(s, s, False) for s in _split_prose(joined))
            continue
        marker = marker_match.group().strip()
        # not empty: whitespace is collapsed, so the marker's trailing space precedes a word
        sentences = _split_prose(joined[marker_match.end() :])
        units.append(_Unit(f"{marker} {sentences[0]}", sentences[0], False))
        units.extend(_Unit(s, s, False) for s in sentences[1:])
    return units


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, headings and list items, in order.

    Handles common abbreviations (``Dr.``, ``e.g.``, ``Inc.``, ``No. 5``), initials,
    decimals, quotes closing a sentence, hard-wrapped lines and Markdown or plain-text
    headings. Whitespace inside an item is collapsed to single spaces; no word is lost:
    ``" ".join(split_sentences(t)).split() == t.split()``.
    """
    return [unit.text for unit in _segment(text)]


# --------------------------------------------------------------------------------------
# The local, extractive summarizer
# --------------------------------------------------------------------------------------

_STOPWORDS = _word_set(
    """
    a about above after again against all almost also although am among an and another any
    are around as at be became because been before being below between both but by can
    cannot could did do does doing done down during each either else enough even ever every
    few for from further get gets got had has have having he her here hers herself him
    himself his how however i if in into is it its itself just least less let like made
    make many may me might more most much must my myself neither no nor not now of off often
    on once one only onto or other others our ours ourselves out over own per perhaps quite
    rather really same several shall she should since so some such than that the their
    theirs them themselves then there therefore these they this those though through thus
    to too toward towards under until up upon us very via was we well were what whatever
    when where whether which while who whom whose why will with within without would yet
    you your yours yourself yourselves
    """
)
_WORD = re.compile("[^\\W_]+(?:['\u2019][^\\W_]+)*")
# How much more the first sentence weighs than a late one: score * (1 + b / (1 + index)).
_POSITION_BONUS = 0.5


def _stem(word: str) -> str:
    """A deliberately tiny plural folding: ``incidents`` and ``incident`` count together."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and len(word) > 3 and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _content_terms(text: str) -> list[str]:
    terms: list[str] = []
    for raw in _WORD.findall(text.lower()):
        word = raw.replace("\u2019", "'").removesuffix("'s")
        if len(word) < 3 or word.isdigit() or word in _STOPWORDS:
            continue
        terms.append(_stem(word))
    return terms


def _words(text: str) -> int:
    return len(text.split())


def _cut(text: str, max_words: int) -> str:
    """The first ``max_words`` words of ``text``, marked as cut with an ellipsis."""
    return " ".join(text.split()[:max_words]).rstrip(",;:") + "…"


def _extract(text: str, max_words: int) -> str:
    """Pick the best-scoring sentences of ``text``, in their original order."""
    units = _segment(text)
    if not units:
        return ""
    unit_terms = [_content_terms(unit.body) for unit in units]
    counts = Counter(term for terms in unit_terms for term in terms)
    top = max(counts.values(), default=1)

    sentences = [i for i, unit in enumerate(units) if not unit.heading]
    # Prefer sentences that say something; fall back to whatever there is.
    candidates = [i for i in sentences if unit_terms[i]] or sentences or list(range(len(units)))
    scores: dict[int, float] = {}
    for rank, i in enumerate(candidates):
        terms = unit_terms[i]
        relevance = sum(counts[t] / top for t in terms) / math.sqrt(len(terms)) if terms else 0.0
        scores[i] = relevance * (1.0 + _POSITION_BONUS / (1 + rank))
    ranked = sorted(candidates, key=lambda i: (-scores[i], i))

    budget = max_words
    chosen: list[int] = []
    for i in ranked:
        size = _words(units[i].body)
        if size <= budget:
            chosen.append(i)
            budget -= size
    if not chosen:  # even the best sentence is longer than max_words
        return _cut(units[ranked[0]].body, max_words)
    return " ".join(units[i].body for i in sorted(chosen))


def _check_max_words(max_words: int) -> None:
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")


class LocalSummarizer:
    """Extractive, deterministic summarizer: no network, no model, no randomness.

    Sentences are scored by the normalized frequency of their content words in the whole
    text (stopwords dropped, plurals folded), divided by the square root of their length,
    with a bonus for early sentences; the best ones that fit in ``max_words`` are returned
    in their original order. If not even the best sentence fits, its first ``max_words``
    words are returned, ending in ``…``.

    ``latency_ms`` sleeps that long in every call, to make a call cost what an LLM call
    costs. ``calls`` and ``words_in`` count the calls and the words given to them.
    """

    name: str

    def __init__(self, latency_ms: float = 0.0) -> None:
        if not (math.isfinite(latency_ms) and latency_ms >= 0):
            raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms}")
        self.name = "local"
        self.latency_ms = latency_ms
        self.calls = 0
        self.words_in = 0

    def summarize(self, text: str, *, max_words: int = 60) -> str:
        """Return the best sentences of ``text``, at most ``max_words`` words in all."""
        _check_max_words(max_words)
        self.calls += 1
        self.words_in += _words(text)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        return _extract(text, max_words)


# --------------------------------------------------------------------------------------
# The OpenAI-compatible summarizer
# --------------------------------------------------------------------------------------

_SYSTEM_PROMPT = (
    "You summarize documents precisely and faithfully. Reply with the summary only: "
    "plain prose, no preamble, no headings, no lists, nothing that is not in the text."
)
_EXCERPT_CHARS = 200
_MAX_BACKOFF_EXPONENT = 30


def _require_httpx() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"the OpenAI-compatible summarizer needs httpx, which is not installed; "
            f"run: {INSTALL_LLM}",
            name="httpx",
        ) from exc


def _excerpt(body: str) -> str:
    flat = _collapse(body)
    if len(flat) <= _EXCERPT_CHARS:
        return flat or "(empty body)"
    return flat[:_EXCERPT_CHARS] + "…"


def _clip(text: str, max_words: int) -> str:
    """``text`` if it has at most ``max_words`` words, else the leading sentences that fit."""
    text = text.strip()
    if _words(text) <= max_words:
        return text
    kept: list[str] = []
    budget = max_words
    for sentence in split_sentences(text):
        size = _words(sentence)
        if size > budget:
            break
        kept.append(sentence)
        budget -= size
    return " ".join(kept) if kept else _cut(text, max_words)


def _retry_after_s(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds, if it is present and a number of seconds."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class OpenAICompatibleSummarizer:
    """Summarize with a server speaking the OpenAI chat-completions API.

    ``base_url`` is the API root, e.g. ``http://localhost:8000/v1``; requests go to
    ``{base_url}/chat/completions`` with a bearer token when ``api_key`` is given.
    ``timeout_s`` bounds each phase of a request (connect, write, every read, waiting for
    a pooled connection).

    Connection errors, timeouts, HTTP 429 and 5xx are retried up to ``max_retries`` times,
    waiting ``backoff_s * 2**attempt`` seconds, or what a ``Retry-After`` header (in
    seconds) asks for; either wait is capped at ``max_delay_s``. Other errors (4xx, a reply
    that is not a chat completion) are raised at once as :class:`SummarizerError`. ``sleep``
    is the function that waits, replaceable in tests.

    A reply longer than ``max_words`` is clipped to its leading sentences that fit. An
    empty or blank text is summarized as ``""`` without a request.

    The HTTP client is opened on first use; :meth:`close` (or leaving a ``with`` block)
    closes it, and a later call opens a new one. Instances pickle without their client,
    so they can be handed to worker processes. ``calls`` and ``words_in`` count the calls
    and the words given to them.
    """

    name: str

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        *,
        max_delay_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _require_httpx()
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must not be empty")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if not (backoff_s >= 0 and max_delay_s >= 0):
            raise ValueError(
                f"backoff_s and max_delay_s must be >= 0, got {backoff_s} and {max_delay_s}"
            )
        self.name = f"openai:{model}"
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep
        self.calls = 0
        self.words_in = 0
        self._client: httpx.Client | None = None

    @classmethod
    def from_env(
        cls,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> OpenAICompatibleSummarizer:
        """Configure from ``MEMGANG_LLM_URL``, ``MEMGANG_LLM_MODEL`` and ``OPENAI_API_KEY``.

        The first two are required; the key is optional (local servers rarely need one).
        """
        required: dict[str, str] = {}
        for variable, example in (
            ("MEMGANG_LLM_URL", "http://localhost:8000/v1"),
            ("MEMGANG_LLM_MODEL", "gpt-4o-mini"),
        ):
            value = os.environ.get(variable, "").strip()
            if not value:
                raise SummarizerError(
                    f"{variable} is not set: the OpenAI-compatible summarizer needs it "
                    f"(e.g. {variable}={example})"
                )
            required[variable] = value
        return cls(
            required["MEMGANG_LLM_URL"],
            required["MEMGANG_LLM_MODEL"],
            api_key=os.environ.get("OPENAI_API_KEY") or None,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
        )

    def summarize(self, text: str, *, max_words: int = 60) -> str:
        """Ask the server for a summary of ``text`` in at most ``max_words`` words."""
        _check_max_words(max_words)
        self.calls += 1
        self.words_in += _words(text)
        if not text.strip():
            return ""
        payload = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": _SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": f"Summarize this text in at most {max_words} words.\n\n{text}",
                },
            ],
        }
        return _clip(self._complete(payload), max_words)

    def close(self) -> None:
        """Close the HTTP client, if one is open."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> OpenAICompatibleSummarizer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    def _http(self) -> httpx.Client:
        import httpx

        if self._client is None:
            headers = {"Accept": "application/json"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s), headers=headers)
        return self._client

    def _backoff_s(self, attempt: int) -> float:
        return self.backoff_s * 2.0 ** min(attempt, _MAX_BACKOFF_EXPONENT)

    def _complete(self, payload: dict[str, Any]) -> str:
        """POST ``payload``, retrying what is worth retrying; return the reply's content."""
        import httpx

        attempt = 0
        while True:
            try:
                response = self._http().post(self.url, json=payload)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if attempt >= self.max_retries:
                    raise SummarizerError(
                        f"POST {self.url} failed after {attempt + 1} attempt(s): "
                        f"{type(exc).__name__}: {exc or 'no detail'}",
                        url=self.url,
                    ) from exc
                delay = self._backoff_s(attempt)
            except httpx.HTTPError as exc:
                raise SummarizerError(
                    f"POST {self.url} failed: {type(exc).__name__}: {exc}", url=self.url
                ) from exc
            else:
                status = response.status_code
                if response.is_success:
                    return self._content(response)
                if not (status == 429 or status >= 500) or attempt >= self.max_retries:
                    body = _excerpt(response.text)
                    raise SummarizerError(
                        f"POST {self.url} returned HTTP {status} "
                        f"after {attempt + 1} attempt(s): {body}",
                        url=self.url,
                        status=status,
                        body=body,
                    )
                retry_after = _retry_after_s(response)
                delay = self._backoff_s(attempt) if retry_after is None else retry_after
            self.sleep(min(delay, self.max_delay_s))
            attempt += 1

    def _content(self, response: httpx.Response) -> str:
        """``choices[0].message.content`` of a successful reply, or a clear error."""
        status = response.status_code
        body = _excerpt(response.text)
        try:
            data = response.json()
        except ValueError as exc:
            raise SummarizerError(
                f"POST {self.url} returned HTTP {status} with a body that is not JSON: {body}",
                url=self.url,
                status=status,
                body=body,
            ) from exc
        missing = "choices[0]"
        choices = data.get("choices") if isinstance(data, dict) else None
        if isinstance(choices, list) and choices:
            message = choices[0].get("message") if isinstance(choices[0], dict) else None
            missing = "choices[0].message"
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    return content
                missing = "choices[0].message.content as a string"
        raise SummarizerError(
            f"POST {self.url} returned HTTP {status} without {missing}: {body}",
            url=self.url,
            status=status,
            body=body,
        )


def make_summarizer(kind: str = "local", **kw: Any) -> Summarizer:
    """Build a summarizer: ``"local"`` or ``"openai"``.

    Keyword arguments go to the constructor. For ``"openai"`` without ``base_url`` or
    ``model``, the configuration comes from the environment
    (:meth:`OpenAICompatibleSummarizer.from_env`).
    """
    if kind == "local":
        return LocalSummarizer(**kw)
    if kind == "openai":
        if "base_url" in kw or "model" in kw:
            return OpenAICompatibleSummarizer(**kw)
        return OpenAICompatibleSummarizer.from_env(**kw)
    raise ValueError(f"unknown summarizer kind {kind!r}: choose 'local' or 'openai'")
