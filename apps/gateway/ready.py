"""Ready holds: the next request's credit hold, placed while the current one is served.

A hold is a round trip to PostgreSQL (about 1 ms at concurrency 1 here, the largest part of
what the gateway adds to a request and to its first streamed token). A key that sends one
request usually sends another, so after admitting a request of a key for a model, the event
loop places one more hold of the same size for that key and model in the background: a
*ready hold*. The key's next request to that model that fits in it (same prices, same month,
no more prompt and completion tokens) takes it instead of placing its own, and a new one is
placed. A request that finds the ready hold still being placed waits for that placement
rather than starting its own.

Nothing of the accounting changes: a ready hold is an ordinary hold, placed atomically
against all four budgets before the request that takes it is forwarded, settled by that
request (at most the amount the request's own hold would have had, ``Admission.max_charge``;
the rest released) or withdrawn without a trace (no ledger row, no charge) when nobody takes
it:

- GATEWAY_READY_HOLD_SECONDS after the request it was placed during ended, when no request of
  its key and model took it by then;
- at once, when the budgets left after it have room for fewer than ROOM more such holds, so
  an idle ready hold never stands in the way of a request near the end of a budget (there,
  requests place their own holds, as without ready holds);
- when the process shuts down gracefully (the ASGI lifespan's shutdown, portal/asgi.py); a
  crashed process's ready holds are released by the sweeper like any hold of a crashed
  process, with an ``expired`` ledger row at no charge.

A request is told what the fresh read of its key says (apps/gateway/admission.py), whether
its hold was ready or not. What a ready hold does change: a limit lowered (or a key's grant
changed) while a ready hold waits can let one more request of that key through per process
and model, paid from credits held before the change; no budget goes below zero. The key's
own limits and its grant's allocation are compared at take time, and a ready hold placed
under other values is not used.

GATEWAY_READY_HOLDS=false turns them off. One registry per event loop (uvicorn runs one loop
per process); PostgreSQL only (on SQLite holds run in threads and nothing is ready).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field

from django.conf import settings

from apps.core.exceptions import ApplicationError
from apps.usage.hot import ahold_place, ahold_withdraw, on_event_loop
from apps.usage.periods import period_for
from lib.aio import keep

logger = logging.getLogger(__name__)

# A ready hold stays only while the budgets left after it could pay for this many more.
ROOM = 10

_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadyHolds] = (
    weakref.WeakKeyDictionary()
)


def limits_of(key) -> tuple:
    """What a ready hold must have been placed under to serve a request of ``key`` now."""
    grant = key.grant
    return (key.total_limit, key.monthly_limit, grant.credits_allocated, key.grant_id)


@dataclass(eq=False)
class _Entry:
    args: dict  # the hold's arguments, as ``ahold_place`` took them
    limits: tuple
    placing: asyncio.Future  # the placement; its result is the hold
    timer: asyncio.TimerHandle | None = field(default=None)
    armed: bool = False  # the request it was placed during has ended: the idle wait runs


def _fits(entry: _Entry, args: dict) -> bool:
    """Whether a hold placed with ``entry.args`` covers a request whose hold is ``args``."""
    placed, model = entry.args, args["catalog_model"]
    return (
        placed["catalog_model"].id == model.id
        and placed["catalog_model"].prompt_price == model.prompt_price
        and placed["catalog_model"].completion_price == model.completion_price
        and placed["prompt_tokens"] >= args["prompt_tokens"]
        and placed["max_completion_tokens"] >= args["max_completion_tokens"]
    )


class ReadyHolds:
    """The ready holds of one event loop: at most one per (key, model)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.entries: dict[tuple[int, int], _Entry] = {}
        self.withdrawing: set[asyncio.Task] = set()  # withdrawals under way (release waits)
        self.closed = False

    def take(self, args: dict, key) -> asyncio.Future | None:
        """The placement of a ready hold that covers a hold of ``args`` for ``key`` (done, or
        still on its way), now the caller's to settle or withdraw; None when there is none.
        A ready hold that does not fit is withdrawn (the request places its own)."""
        slot = (args["api_key_id"], args["catalog_model"].id)
        entry = self.entries.pop(slot, None)
        if entry is None:
            return None
        if entry.timer is not None:
            entry.timer.cancel()
        placing = entry.placing
        done_ok = placing.done() and not placing.cancelled() and placing.exception() is None
        stale = done_ok and placing.result().period != period_for()
        if stale or entry.limits != limits_of(key) or not _fits(entry, args):
            self._withdraw_later(placing)
            return None
        return placing

    def replenish(self, args: dict, key) -> None:
        """Place a ready hold like ``args`` for ``key``'s next request, unless one is there or
        on its way."""
        if self.closed:
            return
        slot = (args["api_key_id"], args["catalog_model"].id)
        if slot in self.entries:
            return
        # Taken up to GATEWAY_READY_HOLD_SECONDS after it is placed, by a request that may
        # then run as long as any: it lives that much longer than the request's own would.
        ttl = args["ttl_seconds"] + settings.GATEWAY_READY_HOLD_SECONDS
        args = {**args, "allow_partial": False, "ttl_seconds": ttl}
        placing = keep(self.loop.create_task(self._place(args)))
        entry = _Entry(args=args, limits=limits_of(key), placing=placing)
        self.entries[slot] = entry
        placing.add_done_callback(lambda _: self._placed(slot, entry))

    async def _place(self, args: dict):
        return await ahold_place(**args, ahead=True)

    def _placed(self, slot: tuple[int, int], entry: _Entry) -> None:
        """A placement ended: if nobody took it meanwhile it waits (or is withdrawn)."""
        if self.entries.get(slot) is not entry:
            return  # taken by a request: that request owns the hold now
        placing = entry.placing
        if placing.cancelled() or placing.exception() is not None:
            del self.entries[slot]
            error = None if placing.cancelled() else placing.exception()
            if error is not None and not isinstance(error, ApplicationError):
                logger.warning("Placing a ready hold failed: %r", error)
            return
        hold = placing.result()
        status = hold.status
        if self.closed or status is None or status.remaining < ROOM * hold.amount:
            del self.entries[slot]
            self._withdraw_later(placing)
            return
        self._wait(slot, entry)

    def _wait(self, slot: tuple[int, int], entry: _Entry) -> None:
        """Withdraw the ready hold if no request takes it: GATEWAY_READY_HOLD_SECONDS after the
        request it was placed during ended, or at the latest after the longest a request may
        take (that request's end is never heard of when it failed before its relay)."""
        if entry.timer is not None:
            entry.timer.cancel()
        wait = settings.GATEWAY_READY_HOLD_SECONDS
        if not entry.armed:
            wait += settings.GATEWAY_REQUEST_MAX_SECONDS
        entry.timer = self.loop.call_later(wait, self._expire, slot, entry)

    def arm(self, key_id: int, model_id: int) -> None:
        """A request of this key and model ended: its ready hold's idle wait starts."""
        slot = (key_id, model_id)
        entry = self.entries.get(slot)
        if entry is None or entry.armed:
            return
        entry.armed = True
        if entry.timer is not None:  # placed already (else ``_placed`` starts the wait)
            self._wait(slot, entry)

    def _expire(self, slot: tuple[int, int], entry: _Entry) -> None:
        if self.entries.get(slot) is entry:
            del self.entries[slot]
            self._withdraw_later(entry.placing)

    def _withdraw_later(self, placing: asyncio.Future) -> None:
        task = keep(self.loop.create_task(_withdraw(placing)))
        self.withdrawing.add(task)
        task.add_done_callback(self.withdrawing.discard)

    async def release(self) -> None:
        """Withdraw every ready hold (shutdown), and wait for the withdrawals already under
        way (the loop cancels what is left when it ends); none is placed from now on."""
        self.closed = True
        entries, self.entries = list(self.entries.values()), {}
        for entry in entries:
            if entry.timer is not None:
                entry.timer.cancel()
        withdrawing = [asyncio.shield(task) for task in self.withdrawing]
        await asyncio.gather(*(_withdraw(entry.placing) for entry in entries), *withdrawing)


async def _withdraw(placing: asyncio.Future) -> None:
    """Withdraw a ready hold nobody took (once its placement ended)."""
    (hold,) = await asyncio.gather(placing, return_exceptions=True)
    if isinstance(hold, BaseException):
        return
    try:
        await ahold_withdraw(hold_id=hold.id)
    except Exception:
        logger.exception("Withdrawing ready hold %s failed; it expires instead", hold.id)


def ready_holds() -> ReadyHolds | None:
    """This event loop's registry, or None when ready holds are off (or holds do not run on
    the event loop: SQLite)."""
    if not settings.GATEWAY_READY_HOLDS or not on_event_loop():
        return None
    loop = asyncio.get_running_loop()
    registry = _registries.get(loop)
    if registry is None:
        registry = _registries[loop] = ReadyHolds(loop)
    return registry


async def release_ready_holds() -> None:
    """Withdraw this loop's ready holds and place no more (the lifespan's shutdown)."""
    registry = _registries.get(asyncio.get_running_loop())
    if registry is not None:
        await registry.release()


def release_ready_holds_everywhere(timeout: float = 5.0) -> None:
    """Withdraw the ready holds of every running loop of this process, from another thread
    (tests, which run the server in a thread and then read the accounts); ready holds are
    placed again by later requests."""
    for loop, registry in list(_registries.items()):
        if loop.is_closed() or not loop.is_running():
            continue

        async def release(registry: ReadyHolds = registry) -> None:
            await registry.release()
            registry.closed = False

        asyncio.run_coroutine_threadsafe(release(), loop).result(timeout)
