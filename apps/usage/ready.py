"""Ready holds: a busy key's next hold, placed while its current request runs — the ledger's
one speculative path, behind ``ledger.aplace`` (GATEWAY_READY_HOLDS, on by default).

A hold is a round trip to PostgreSQL, the largest part of what the gateway adds to a request at
concurrency 1. When a key places holds less than GATEWAY_READY_HOLD_SECONDS apart with a plan
that carries its ``version`` (the key as the gateway read it: its entry in the shared key
cache), the next one is placed as its current request ends: after the answer went out, so
PostgreSQL works on it between the key's requests, not while one waits (on two cores, a hold
placed mid-request cost that request 1 ms of first-token time). The key's next request takes
it (waiting if it is still on its way) when its plan has the same version and the ready hold
covers it (same model and prices, no more tokens, this month); otherwise the ready hold is
withdrawn and the request places its own. Every change to what limits a key (its limits, owner,
grant, the member's limit) replaces its cache entry before and after it commits
(``forget_key``), so a request admitted after a lowered limit commits, in any process, never
takes a ready hold placed under the old one.

A ready hold is an ordinary hold, placed against the four budgets before the request that takes
it is forwarded, settled by that request (charged at most what its own hold would have held:
``Hold.cap``), or withdrawn with no ledger row: unused after GATEWAY_READY_HOLD_SECONDS, at once
when the budgets after it have room for fewer than ROOM more, at a graceful shutdown
(``withdraw_all``). Its placement saw the key's requests still running here as held; as each
ends, its budgets move as the ledger's do (``ending``; that settlement is written after the
placement), so requests sent one after another are told exactly what the ledger leaves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from apps.core.exceptions import ApplicationError
from apps.usage import pg
from apps.usage.credits import credits_for
from apps.usage.models import Hold
from apps.usage.periods import period_for
from lib.aio import keep

logger = logging.getLogger(__name__)

# A ready hold is kept only while the budgets after it could pay for this many more like it,
# so an idle one never stands in the way of a request near the end of a budget.
ROOM = 10


@dataclass(eq=False)
class _Ready:
    plan: object  # ledger.Plan it was placed for
    placing: asyncio.Task  # its placement: the Hold
    timer: asyncio.TimerHandle | None = field(default=None)


class _Registry:
    """One event loop's ready holds (at most one per key) and its holds still running."""

    def __init__(self) -> None:
        self.ready: dict[int, _Ready] = {}  # by API key id
        self.running: dict[int, set[int]] = {}  # API key id -> ids of holds placed, not ended
        self.seen_by: dict[int, list[_Ready]] = {}  # hold id -> ready holds placed while it ran
        self.plans: dict[int, object] = {}  # hold id -> its plan, when a ready hold follows it
        self.last_placed: dict[int, float] = {}  # API key id -> loop time of its last hold
        self.withdrawing: set[asyncio.Future] = set()

    # --- taking ---------------------------------------------------------------------------

    async def place(self, plan) -> Hold:
        """The request's hold: the key's ready hold when it serves, else one of its own. When
        the key is busy, the next ready hold is placed as this one ends (``ending``): after
        the request's answer, so PostgreSQL works on it between the key's requests."""
        hold = await self._take(plan) if plan.version is not None else None
        if hold is None:
            hold = await pg.place(plan)
        self.running.setdefault(plan.api_key_id, set()).add(hold.pk)
        if self._busy(plan.api_key_id) and plan.version is not None:
            self.plans[hold.pk] = plan
        return hold

    def _busy(self, key_id: int) -> bool:
        """Whether the key placed another hold in the last GATEWAY_READY_HOLD_SECONDS: a key
        that sends one request now and then gets no ready hold."""
        now = asyncio.get_running_loop().time()
        if len(self.last_placed) > 100_000:
            self.last_placed.clear()
        last, self.last_placed[key_id] = self.last_placed.get(key_id), now
        return last is not None and now - last < settings.GATEWAY_READY_HOLD_SECONDS

    async def _take(self, plan) -> Hold | None:
        ready = self.ready.pop(plan.api_key_id, None)
        if ready is None:
            return None
        if ready.timer is not None:
            ready.timer.cancel()
        if not _covers(ready.plan, plan):
            self._discard(ready)
            return None
        try:
            hold = await asyncio.shield(ready.placing)
        except asyncio.CancelledError:
            self._discard(ready)  # the request is gone: nobody takes it now
            raise
        except Exception:
            return None  # its placement failed (logged there): the request places its own
        if hold.period != period_for():
            self._discard(ready)
            return None
        cap = credits_for(
            prompt_tokens=plan.prompt_tokens, completion_tokens=plan.max_completion_tokens,
            prompt_price=plan.model.prompt_price, completion_price=plan.model.completion_price,
        )  # fmt: skip
        hold.cap = cap if cap < hold.amount else None
        return hold

    # --- preparing ------------------------------------------------------------------------

    def _prepare(self, plan, hold: Hold) -> None:
        """Place the key's next hold like ``plan``, unless its budgets are near their end."""
        budgets = hold.budgets
        if budgets is None or budgets.remaining < ROOM * hold.amount:
            return
        # Taken up to GATEWAY_READY_HOLD_SECONDS after it is placed, by a request that may
        # then run as long as any: it lives that much longer than the request's own would.
        ttl = plan.ttl_seconds + settings.GATEWAY_READY_HOLD_SECONDS
        ready_plan = dataclasses.replace(plan, allow_partial=False, ttl_seconds=ttl)
        ready = _Ready(ready_plan, keep(asyncio.ensure_future(pg.place(ready_plan))))
        self.ready[plan.api_key_id] = ready
        for hold_id in self.running.get(plan.api_key_id, ()):
            self.seen_by.setdefault(hold_id, []).append(ready)
        ready.placing.add_done_callback(lambda _: self._placed(plan.api_key_id, ready))

    def _placed(self, key_id: int, ready: _Ready) -> None:
        placing = ready.placing
        if placing.cancelled() or placing.exception() is not None:
            if self.ready.get(key_id) is ready:
                del self.ready[key_id]
            error = None if placing.cancelled() else placing.exception()
            if error is not None and not isinstance(error, ApplicationError):
                logger.warning("Placing a ready hold failed: %r", error)
            return
        if self.ready.get(key_id) is not ready:
            return  # taken (or discarded) while it was being placed
        hold = placing.result()
        if hold.budgets.remaining < ROOM * hold.amount:
            del self.ready[key_id]
            self._discard(ready)
            return
        loop = asyncio.get_running_loop()
        ready.timer = loop.call_later(
            settings.GATEWAY_READY_HOLD_SECONDS, self._expire, key_id, ready
        )

    def _expire(self, key_id: int, ready: _Ready) -> None:
        if self.ready.get(key_id) is ready:
            del self.ready[key_id]
            self._discard(ready)

    def _discard(self, ready: _Ready) -> None:
        """Withdraw a ready hold nobody will take, once it is placed."""
        if ready.timer is not None:
            ready.timer.cancel()
        withdrawing = keep(asyncio.ensure_future(_withdraw_placed(ready.placing)))
        self.withdrawing.add(withdrawing)
        withdrawing.add_done_callback(self.withdrawing.discard)

    # --- ending ---------------------------------------------------------------------------

    def ending(self, hold: Hold, charged: Callable[[], Decimal]) -> list[asyncio.Future]:
        """``hold`` is being settled for ``charged()`` (or withdrawn: 0): move the budgets of
        the ready holds placed while it ran as the ledger's move. Returns the placements still
        on their way, which the settlement must wait for (they count the hold as held). A busy
        key without a ready hold gets its next one placed now, before the hold is settled."""
        plan = self.plans.pop(hold.pk, None)
        if plan is not None and plan.api_key_id not in self.ready:
            self._prepare(plan, hold)
        running = self.running.get(hold.api_key_id)
        if running is not None:
            running.discard(hold.pk)
            if not running:
                del self.running[hold.api_key_id]
        seen_by = self.seen_by.pop(hold.pk, ())
        if not seen_by:
            return []
        charged, waits = charged(), []
        for ready in seen_by:
            if ready.placing.done():
                _move(ready.placing, hold.amount, charged)
            else:
                waits.append(ready.placing)
                ready.placing.add_done_callback(
                    lambda placing, amount=hold.amount: _move(placing, amount, charged)
                )
        return waits

    async def withdraw_all(self) -> None:
        """Withdraw every ready hold (a graceful shutdown) and wait for the withdrawals."""
        for ready in list(self.ready.values()):
            self._discard(ready)
        self.ready.clear()
        while self.withdrawing:
            await asyncio.gather(*self.withdrawing, return_exceptions=True)


def _covers(placed, plan) -> bool:
    """Whether a hold placed for ``placed`` can serve ``plan``."""
    return (
        placed.version == plan.version
        and placed.model.id == plan.model.id
        and placed.model.prompt_price == plan.model.prompt_price
        and placed.model.completion_price == plan.model.completion_price
        and placed.prompt_tokens >= plan.prompt_tokens
        and placed.max_completion_tokens >= plan.max_completion_tokens
    )


def _move(placing: asyncio.Future, amount: Decimal, charged: Decimal) -> None:
    if placing.cancelled() or placing.exception() is not None:
        return
    hold = placing.result()
    hold.budgets = hold.budgets.moved(held=-amount, used=charged)


async def _withdraw_placed(placing: asyncio.Future) -> None:
    try:
        hold = await placing
    except BaseException:  # not placed (or cancelled): nothing to withdraw
        return
    await pg.withdraw(hold)


_registries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def registry() -> _Registry:
    loop = asyncio.get_running_loop()
    found = _registries.get(loop)
    if found is None:
        found = _registries[loop] = _Registry()
    return found


def enabled() -> bool:
    """On unless turned off; and only while a ready hold lives shorter than a key cache
    tombstone, so it can not outlive the change that made its version stale."""
    ready_seconds = settings.GATEWAY_READY_HOLD_SECONDS
    return settings.GATEWAY_READY_HOLDS and ready_seconds < settings.API_KEY_CACHE_SECONDS
