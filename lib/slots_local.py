"""In-process slots, used when ``REDIS_URL`` is not set: the limit holds per process.

Per model, guarded by one ``threading.Lock`` (held only for a few dictionary operations,
never across an ``await``), so requests running on several event loops or threads of one
process share the limit:

* ``in_flight`` — slots held; ``limit`` — the ``max_concurrency`` of the latest acquire;
* ``queues`` — grant → FIFO deque of waiters; ``rotation`` — the grants that have waiters, in
  round-robin order (a grant is appended when its queue becomes non-empty, moved to the back
  each time one of its waiters is served, removed when its queue empties).

A freed slot is handed over under the lock (``in_flight`` stays counted, the waiter is marked
``granted``) and the waiter's future is resolved on its own loop with
``call_soon_threadsafe``. A cancelled waiter takes the lock and either leaves its queue or,
if it was granted in the meantime, releases the slot it was given — the ``granted`` flag
decides, so the hand-off and the cancellation cannot both miss the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from dataclasses import dataclass, field

from lib.slots import QueueFull, retry_after


@dataclass(eq=False)
class _Waiter:
    grant: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    granted: bool = False


@dataclass(eq=False)
class _Model:
    limit: int = 1
    in_flight: int = 0
    queued: int = 0
    queues: dict[str, deque[_Waiter]] = field(default_factory=dict)
    rotation: deque[str] = field(default_factory=deque)


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class LocalSlots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}

    async def acquire(
        self, *, model: str, grant: str, max_concurrency: int, queue_size: int
    ) -> _Model:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._models.setdefault(model, _Model())
            state.limit = max_concurrency
            self._fill(state)
            if state.in_flight < state.limit:
                state.in_flight += 1
                return state
            if state.queued >= queue_size:
                raise QueueFull(
                    f"The model {model!r} is busy and its queue is full.",
                    retry_after=retry_after(
                        model=model, queued=state.queued, max_concurrency=max_concurrency
                    ),
                )
            waiter = _Waiter(grant=grant, loop=loop, future=loop.create_future())
            self._enqueue(state, waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._release(state)
                else:
                    self._dequeue(state, waiter)
            raise
        return state

    async def release(self, ticket: _Model) -> None:
        with self._lock:
            self._release(ticket)

    async def stats(self, model: str) -> dict[str, int]:
        with self._lock:
            state = self._models.get(model) or _Model()
            return {"in_flight": state.in_flight, "queued": state.queued}

    async def reset(self, model: str) -> None:
        with self._lock:
            state = self._models.pop(model, None)
        for queue in state.queues.values() if state else ():
            for waiter in queue:
                with contextlib.suppress(RuntimeError):  # a closed loop has no one waiting
                    waiter.loop.call_soon_threadsafe(waiter.future.cancel)

    async def close(self) -> None:
        """Nothing to close in-process."""

    # The helpers below run with the lock held.

    def _enqueue(self, state: _Model, waiter: _Waiter) -> None:
        queue = state.queues.get(waiter.grant)
        if queue is None:
            queue = state.queues[waiter.grant] = deque()
            state.rotation.append(waiter.grant)
        queue.append(waiter)
        state.queued += 1

    def _dequeue(self, state: _Model, waiter: _Waiter) -> None:
        queue = state.queues.get(waiter.grant)
        if queue is None or waiter not in queue:
            return
        queue.remove(waiter)
        state.queued -= 1
        if not queue:
            del state.queues[waiter.grant]
            state.rotation.remove(waiter.grant)

    def _release(self, state: _Model) -> None:
        state.in_flight = max(state.in_flight - 1, 0)
        self._fill(state)

    def _fill(self, state: _Model) -> None:
        """Hand free slots to waiters: next grant in the rotation, oldest waiter first."""
        while state.in_flight < state.limit and state.rotation:
            grant = state.rotation.popleft()
            queue = state.queues[grant]
            waiter = queue.popleft()
            if queue:
                state.rotation.append(grant)
            else:
                del state.queues[grant]
            state.queued -= 1
            state.in_flight += 1
            waiter.granted = True
            try:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
            except RuntimeError:  # the waiter's event loop is closed: nobody waits any more
                state.in_flight -= 1
