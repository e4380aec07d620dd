"""Small asyncio patterns the gateway's hot path uses in several places.

- ``keep(task)``: a strong reference to a task nobody awaits (asyncio keeps only weak ones, so
  an unreferenced task can be garbage-collected before it finishes).
- ``at_loop_shutdown(loop, close)``: run ``close()`` when the loop shuts down. ``asyncio.run``
  and uvicorn cancel every task at the end; a task that waits forever is cancelled then and
  closes what belongs to that loop (connections can not outlive it, nor cross loops).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_kept: set[asyncio.Future] = set()


def keep(task: asyncio.Future) -> asyncio.Future:
    """Hold a strong reference to ``task`` until it is done; returns it."""
    _kept.add(task)
    task.add_done_callback(_kept.discard)
    return task


def at_loop_shutdown(loop: asyncio.AbstractEventLoop, close: Callable[[], Awaitable]) -> None:
    """Await ``close()`` when ``loop`` shuts down."""

    async def wait_then_close() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await close()

    keep(loop.create_task(wait_then_close()))
