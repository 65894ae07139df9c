"""The MapReduce demo end to end (real mapper processes), its counts, and its bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from memgang.cli import main
from memgang.demo.mapreduce import MAX_INPUT_BYTES

# No section headings: every job gets the whole text, so the jobs' chunks are identical.
SMALL = "\n\n".join(
    f"Paragraph {i} says that the shared memory lets agent {i} reuse the work of the others "
    f"instead of summarizing chunk {i} again. It keeps {i * 3} facts and one moral."
    for i in range(12))


def run_demo(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "memgang", "demo", *args]
    if url:
        cmd += ["--url", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_demo_counts_one_summary_per_distinct_chunk_with_sharing(
        tmp_path: Path, url: str) -> None:
    text = tmp_path / "small.txt"
    text.write_text(SMALL)
    jobs = 3
    done = run_demo("--input", str(text), "--agents", "2", "--jobs", str(jobs),
                    "--llm-latency-ms", "0", "--chunk-words", "40", "--json", url=url)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = orjson.loads(done.stdout)
    inp = report["input"]
    distinct = inp["distinct_chunks"]
    assert distinct > 4 and inp["chunk_tasks"] == jobs * distinct
    shared, solo = report["modes"]
    assert (shared["mode"], solo["mode"]) == ("shared", "no-share")
    # with sharing: exactly one summarizer call per distinct chunk; without: every job's
    assert shared["summarizer_calls"] == distinct
    assert solo["summarizer_calls"] == jobs * distinct
    assert solo["words_sent"] == jobs * shared["words_sent"]
    # every chunk task of the shared run was computed, reused or awaited, exactly once
    assert shared["misses"] == distinct
    assert shared["hits"] + shared["waits"] == jobs * distinct - distinct
    assert solo["hits"] == solo["waits"] == 0
    for mode in (shared, solo):
        assert mode["reports"] == jobs and mode["handler_errors"] == 0 and not mode["errors"]
        assert sum(a["summarizer_calls"] for a in mode["per_agent"].values()) == \
            mode["summarizer_calls"]
    assert report["ratios"]["summarizer_calls"] == round(1 / jobs, 3)


def test_demo_no_share_only_narrates_and_prints_its_table(tmp_path: Path, url: str) -> None:
    text = tmp_path / "small.txt"
    text.write_text(SMALL)
    done = run_demo("--input", str(text), "--agents", "2", "--jobs", "2", "--no-share",
                    "--llm-latency-ms", "0", "--in-process", url=url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "mapper-1 joined (mapper)" in out and "mapper-2 left (stopped)" in out
    assert "job-2: reducer wrote the report from" in out
    assert "summarizer calls" in out and "shared / no-share" not in out  # one mode only


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "blank", "binary",
                                  "latin1", "huge"])
def test_bad_input_gets_a_clear_message_and_exit_2(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.txt"
    expected = {
        "missing": "no such file", "directory": "is a directory", "empty": "is empty",
        "blank": "is empty", "binary": "looks binary", "latin1": "not UTF-8",
        "huge": "at most",
    }[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "blank":
        path.write_text("  \n\n\t\n")
    elif kind == "binary":
        path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    elif kind == "latin1":
        path.write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    elif kind == "huge":
        with path.open("wb") as f:
            f.truncate(MAX_INPUT_BYTES + 1)
    result = CliRunner().invoke(main, ["demo", "--input", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in result.output and str(path) in result.output
