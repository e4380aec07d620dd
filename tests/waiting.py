"""Waiting in tests for something another process or task does: on the thing itself, never on a
clock. ``eventually(check)`` retries ``check`` until it passes or the time is up, then fails
with the check's own last assertion. ``aeventually(check)`` is the same from a coroutine: the
event loop runs between tries, so a check may look at what the loop's own tasks do (and may be
a coroutine function)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.01


def _passed(value) -> bool:
    """A check passes when it returns something truthy, or nothing (a check that asserts)."""
    return bool(value) or value is None


def _done(outcome, *, deadline: float, timeout: float, what) -> bool:
    """The rule both waiters share, for one try's ``outcome`` (the check's value, or the
    AssertionError it raised): True once it passed; after the deadline, that AssertionError
    or one saying what never became true; otherwise False (sleep, then try again)."""
    if isinstance(outcome, AssertionError):
        if time.monotonic() > deadline:
            raise outcome
    elif _passed(outcome):
        return True
    if time.monotonic() > deadline:
        raise AssertionError(f"not true after {timeout} s: {what}")
    return False


def eventually(check: Callable[[], T], *, timeout: float = 5.0, what: str = "") -> T:
    """``check()``'s value once it is truthy and raises no AssertionError; after ``timeout``
    seconds, the last AssertionError (or one saying what never became true)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            outcome = check()
        except AssertionError as error:
            outcome = error
        if _done(outcome, deadline=deadline, timeout=timeout, what=what or check):
            return outcome
        time.sleep(POLL_SECONDS)


async def aeventually(
    check: Callable[[], T | Awaitable[T]], *, timeout: float = 5.0, what: str = ""
) -> T:
    """``eventually`` from a coroutine: the event loop runs between tries (a sync
    ``eventually`` would block it, and with it what the check waits for). ``check`` may
    return an awaitable (a coroutine function), which is awaited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except AssertionError as error:
            outcome = error
        if _done(outcome, deadline=deadline, timeout=timeout, what=what or check):
            return outcome
        await asyncio.sleep(POLL_SECONDS)
