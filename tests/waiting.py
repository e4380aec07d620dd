"""Waiting in tests for something another process or task does: on the thing itself, never on a
clock. ``eventually(check)`` retries ``check`` until it passes or the time is up, then fails
with the check's own last assertion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.01


def eventually(check: Callable[[], T], *, timeout: float = 5.0, what: str = "") -> T:
    """``check()``'s value once it is truthy and raises no AssertionError; after ``timeout``
    seconds, the last AssertionError (or one saying what never became true)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            if value or value is None:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true after {timeout} s: {what or check}")
        time.sleep(POLL_SECONDS)


async def aeventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 5.0, what: str = ""
) -> T:
    """``eventually`` for a coroutine function, sleeping on the event loop between tries."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            if value or value is None:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true after {timeout} s: {what or check}")
        await asyncio.sleep(POLL_SECONDS)
