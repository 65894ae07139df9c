"""Small helpers shared by the tests (importable as a plain module from tests/)."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    """Wait for a condition the test needs before its next step (never an assertion)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
