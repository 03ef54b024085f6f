"""Waiting on other processes in the reliability tests: poll a condition, fail with what was awaited."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float = 180.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
