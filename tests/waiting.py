"""Waiting in tests for something another process or task does: on the thing itself, never on a
clock. ``eventually(check)`` retries ``check`` until it passes or the time is up, then fails
with the check's own last assertion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.01


def _passed(value) -> bool:
    """A check passes when it returns something truthy, or nothing (a check that asserts)."""
    return bool(value) or value is None


def eventually(check: Callable[[], T], *, timeout: float = 5.0, what: str = "") -> T:
    """``check()``'s value once it is truthy and raises no AssertionError; after ``timeout``
    seconds, the last AssertionError (or one saying what never became true)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if _passed(value):
                return value
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what or check}")
        time.sleep(POLL_SECONDS)
