"""Per-model concurrency: at most ``max_concurrency`` requests of a model in flight, up to
``queue_size`` more waiting, anyone beyond that refused at once (SPEC § Per-model concurrency).
Django-free; ``apps.gateway.slots`` chooses the implementation from the settings.

    slot = Slot(backend, model="m", grant="g", max_concurrency=4, queue_size=16)
    try:
        async with slot:
            ...  # forward to the backend, stream
    except QueueFull as exc:
        ...  # 503 with Retry-After: exc.retry_after

Two implementations behind one interface (``SlotBackend``):

* :mod:`lib.slots_redis`: the limit holds across **all** processes sharing a Redis. Acquiring a
  free slot is one round trip (one Lua script), releasing is one more. The state machine, the
  Lua scripts and why they are race-free are described in that module.
* :mod:`lib.slots_local`: the same semantics with in-process state, so the limit holds **per
  process**. Thread-safe, so it also works when requests run on several event loops.

Semantics shared by both:

* Waiters are served fairly across grants: round-robin between the grants that have
  waiters, first-in first-out within a grant (so one grant flooding the queue cannot starve
  another; with a single grant this is plain FIFO). A freed slot is handed to the next waiter
  directly, so a newcomer never overtakes the queue.
* The queue bound is checked atomically with the slot count: beyond ``queue_size`` waiters
  :class:`QueueFull` is raised at once, never after waiting.
* A waiter whose task is cancelled (client disconnect) leaves the queue at once; a held slot
  is released on every exit path of the ``async with`` (return, exception, cancellation).
  If a cancellation races with the hand-off, the slot the waiter was just given is released
  (and handed on), never lost.
* ``max_concurrency`` and ``queue_size`` come with every acquire, so an operator's catalog
  edit takes effect on the next request (slots already held above a lowered limit finish
  normally; a raised limit promptly admits waiters).
* With Redis, a crashed process's slots and queue entries are leases that expire (after 30 s
  by default) unless a heartbeat renews them.

``retry_after`` (whole seconds, >= 1) estimates when a place may free up: the recent mean
time a slot of that model was held in this process, times the queue length ahead, divided by
the number of slots, clamped to 1..60 s (1 s before anything has been measured).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Protocol

from lib.aio import keep

DEFAULT_LEASE_SECONDS = 30.0
_MAX_RETRY_AFTER = 60
_hold_seconds: dict[str, float] = {}


class QueueFull(Exception):
    """The model's slots are all busy and its queue is full: answer 503 with Retry-After."""

    status = 503
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class SlotsUnavailable(QueueFull):
    """The slot store (Redis) could not be reached, or a queue entry's lease was lost.
    A subclass of QueueFull so the gateway answers 503 with Retry-After, not 500."""

    code = "slots_unavailable"


class SlotBackend(Protocol):
    async def acquire(
        self, *, model: str, grant: str, max_concurrency: int, queue_size: int
    ) -> Any: ...
    async def release(self, ticket: Any) -> None: ...
    async def stats(self, model: str) -> dict[str, int]: ...
    async def reset(self, model: str) -> None: ...
    async def close(self) -> None: ...


class Slot:
    """A slot of ``model`` for the fairness group ``grant``: taken on ``async with`` entry (or
    by ``acquire``), released on exit (single use)."""

    __slots__ = ("_backend", "_grant", "_max", "_model", "_queue", "_started", "_ticket")

    def __init__(
        self, backend: SlotBackend, model: str, grant: str, max_concurrency: int, queue_size: int
    ) -> None:
        self._backend, self._model, self._grant = backend, model, grant
        self._max, self._queue = max_concurrency, queue_size
        self._ticket: Any = None
        self._started = 0.0

    async def acquire(self) -> None:
        """Take the slot now (waiting in the queue if need be); ``async with`` the slot then
        only releases it. Cancelled, it leaves the queue and holds nothing."""
        if self._ticket is not None:
            return
        self._ticket = await self._backend.acquire(
            model=self._model,
            grant=self._grant,
            max_concurrency=self._max,
            queue_size=self._queue,
        )
        self._started = time.monotonic()

    async def __aenter__(self) -> Slot:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    @property
    def model(self) -> str:
        return self._model

    def release(self) -> asyncio.Future:
        """Give the slot back (to the next waiter, if any), in a task of its own: returns it,
        to await or not. Never cancelled by the caller's cancellation; a second call, or one
        for a slot never taken, releases nothing."""
        ticket, self._ticket = self._ticket, None
        if ticket is None:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        _record_hold(self._model, time.monotonic() - self._started)
        return keep(asyncio.ensure_future(self._backend.release(ticket)))


def retry_after(*, model: str, queued: int, max_concurrency: int) -> int:
    """Seconds until a place in ``model``'s queue is likely to free up (see module doc)."""
    held = _hold_seconds.get(model, 1.0)
    estimate = math.ceil(held * (queued + 1) / max(max_concurrency, 1))
    return min(max(estimate, 1), _MAX_RETRY_AFTER)


def _record_hold(model: str, seconds: float) -> None:
    previous = _hold_seconds.get(model)
    _hold_seconds[model] = seconds if previous is None else 0.8 * previous + 0.2 * seconds


def forget_hold_time(model: str) -> None:
    """Forget how long slots of ``model`` were held (``retry_after`` starts over)."""
    _hold_seconds.pop(model, None)
