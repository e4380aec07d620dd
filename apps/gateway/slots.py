"""The gateway's per-model slots (SPEC § Per-model concurrency), done by :mod:`lib.slots`; this
module chooses the implementation from the settings, per call:

* ``REDIS_URL`` set → :mod:`lib.slots_redis`: the limit holds across **all** gateway processes
  sharing that Redis. Keys live under ``<CACHES.default.KEY_PREFIX>:slots:``; a crashed
  process's slots and queue entries expire after ``GATEWAY_SLOT_LEASE_SECONDS``.
* no Redis → :mod:`lib.slots_local`: the limit holds **per process**.

Usage (the admission)::

    slot = model_slot(model=name, max_concurrency=4, queue_size=16, grant_id=grant.id)
    await slot.acquire()  # QueueFull (503 with Retry-After) when the queue is full
    ...
    slot.release()
"""

from __future__ import annotations

from django.conf import settings

from lib.slots import (
    DEFAULT_LEASE_SECONDS,
    QueueFull,
    Slot,
    SlotBackend,
    SlotsUnavailable,
    forget_hold_time,
)

__all__ = ["QueueFull", "SlotsUnavailable", "model_slot", "slot_stats", "slots_close"]


def model_slot(
    *, model: str, max_concurrency: int, queue_size: int, grant_id: object = None
) -> Slot:
    """A slot of ``model``, taken on ``async with`` entry or ``acquire()`` (waiting in the
    model's queue when all are busy; :class:`QueueFull` at once when the queue is full) and
    released on exit or ``release()``."""
    if max_concurrency < 1 or queue_size < 0:
        raise ValueError("max_concurrency must be >= 1 and queue_size >= 0")
    grant = "-" if grant_id is None else str(grant_id)
    return Slot(slot_backend(), model, grant, int(max_concurrency), int(queue_size))


async def slot_stats(model: str) -> dict[str, int]:
    """``{"in_flight": n, "queued": m}`` for ``model`` (all processes when Redis is used)."""
    return await slot_backend().stats(model)


async def slots_reset(model: str) -> None:
    """Forget every slot and queue entry of ``model`` (tests; an operator's last resort)."""
    forget_hold_time(model)
    await slot_backend().reset(model)


async def slots_close() -> None:
    """Close this event loop's Redis connections and background tasks (shutdown, tests)."""
    await slot_backend().close()


_backends: dict[tuple, SlotBackend] = {}


def slot_backend() -> SlotBackend:
    """The implementation the current settings select (one instance per configuration)."""
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        key: tuple = ("local",)
    else:
        prefix = settings.CACHES.get("default", {}).get("KEY_PREFIX") or "anvil"
        lease = float(getattr(settings, "GATEWAY_SLOT_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))
        key = ("redis", url, prefix, lease)
    backend = _backends.get(key)
    if backend is None:
        backend = _backends.setdefault(key, _make_backend(key))
    return backend


def _make_backend(key: tuple) -> SlotBackend:
    if key[0] == "local":
        from lib.slots_local import LocalSlots

        return LocalSlots()
    from lib.slots_redis import RedisSlots

    _, url, prefix, lease = key
    return RedisSlots(url=url, prefix=prefix, lease_seconds=lease)
