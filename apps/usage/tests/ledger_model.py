"""A plain-Python model of the ledger's four budgets, for ``test_ledger_state_machine``: what
``place``, ``settle``, ``withdraw``, the sweeper and limit changes must do to them, written from
the ledger's promises (``apps.usage.ledger``, SPEC § Credits and limits), not from its code.

- A hold fits when every limited budget has ``limit - used - held >= max(amount, 0.000001)``
  in the hold's month. Otherwise it is refused naming the budget with the least left (clamped
  at 0; ties in ``Limit``'s order) and what that budget has left; or, with ``allow_partial``,
  held for the most completion tokens that budget still pays for (at least one, unless the
  request asked for none).
- A settlement charges the cost at the hold's prices, rounded once half-up to 0.000001, but
  never more than the hold, to the month the hold was placed in: the amount leaves ``held``,
  the charge joins ``used``. A withdrawal (the sweeper's expiry too) only gives the amount
  back. Either ends a hold once; a second finds it ended.
- A limit change takes back nothing already held: from the change until the next one a
  budget may be in use (used + held) up to the larger of the new limit and what it had in use
  at the change (``Counter.ceiling``); a new month starts at 0 under the limit of the day.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext

from django.conf import settings

from apps.usage.exceptions import Limit

ZERO = Decimal(0)
QUANTUM = Decimal("0.000001")
LIFETIME = ""  # the one counter of a budget that is not monthly


def price(prompt_tokens: int, completion_tokens: int, prompt_price, completion_price) -> Decimal:
    """Credits for the tokens at per-1M-token prices, rounded once, half-up."""
    with localcontext(prec=60):
        exact = (prompt_tokens * prompt_price + completion_tokens * completion_price) / 10**6
        return exact.quantize(QUANTUM, rounding=ROUND_HALF_UP)


def month_of(moment: dt.datetime) -> str:
    local = moment.astimezone(zoneinfo.ZoneInfo(settings.TIME_ZONE))
    return f"{local.year:04d}-{local.month:02d}"


def next_month(moment: dt.datetime) -> dt.datetime:
    """The first instant of the month after ``moment``'s, in the service's time zone."""
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    local = moment.astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return dt.datetime(year, month, 1, tzinfo=zone)


@dataclass
class Counter:
    """What one budget has used and holds (in one month, for a monthly budget)."""

    used: Decimal = ZERO
    held: Decimal = ZERO
    ceiling: Decimal | None = None  # the most it may have in use; None: no limit

    @property
    def in_use(self) -> Decimal:
        return self.used + self.held


@dataclass
class Budget:
    """A limit and its counters: one for a lifetime budget, one per month for a monthly one."""

    limit: Decimal | None
    counters: dict[str, Counter] = field(default_factory=dict)

    def counter(self, period: str = LIFETIME) -> Counter:
        if period not in self.counters:
            self.counters[period] = Counter(ceiling=self.limit)
        return self.counters[period]

    def change(self, limit: Decimal | None) -> None:
        self.limit = limit
        for counter in self.counters.values():
            counter.ceiling = None if limit is None else max(limit, counter.in_use)


@dataclass(frozen=True)
class Placed:
    max_completion_tokens: int
    amount: Decimal


@dataclass(frozen=True)
class Refused:
    limit: Limit
    remaining: Decimal


@dataclass
class HoldModel:
    key: int
    period: str
    amount: Decimal
    prompt_price: Decimal
    completion_price: Decimal
    expires_at: dt.datetime
    ended: str | None = None  # "settled" or "withdrawn"


class Books:
    """The four budgets of one grant's keys and members, its open holds and its ledger."""

    def __init__(self, *, grant: tuple[int, Decimal], keys: dict, members: dict) -> None:
        """``grant``: (its id, its credits); ``keys``: {key id: (owner id, total limit, monthly
        limit)}; ``members``: {user id: monthly limit}."""
        self.grant_id, self.grant = grant[0], Budget(grant[1])
        self.owner = {key: owner for key, (owner, _, _) in keys.items()}
        self.key_total = {key: Budget(total) for key, (_, total, _) in keys.items()}
        self.key_monthly = {key: Budget(monthly) for key, (_, _, monthly) in keys.items()}
        self.member_monthly = {user: Budget(limit) for user, limit in members.items()}
        self.holds: dict[int, HoldModel] = {}
        self.ledger: dict[int, Decimal] = {}

    def budgets(self, key: int, period: str) -> list[tuple[Limit, Budget, Counter]]:
        """A request's four budgets, in ``Limit``'s order."""
        total, monthly = self.key_total[key], self.key_monthly[key]
        member = self.member_monthly[self.owner[key]]
        return [
            (Limit.GRANT, self.grant, self.grant.counter()),
            (Limit.KEY_TOTAL, total, total.counter()),
            (Limit.KEY_MONTHLY, monthly, monthly.counter(period)),
            (Limit.MEMBER_MONTHLY, member, member.counter(period)),
        ]

    def foresee(self, plan, period: str) -> Placed | Refused:
        """What placing ``plan`` (a ``ledger.Plan``) in ``period`` must do (changes nothing)."""
        full = _cost(plan, plan.max_completion_tokens)
        lefts = [
            (name, budget.limit - counter.in_use)
            for name, budget, counter in self.budgets(plan.api_key_id, period)
            if budget.limit is not None
        ]
        if all(left >= max(full, QUANTUM) for _, left in lefts):
            return Placed(plan.max_completion_tokens, full)
        name, remaining = lefts[0][0], max(lefts[0][1], ZERO)
        for other, left in lefts[1:]:
            if max(left, ZERO) < remaining:
                name, remaining = other, max(left, ZERO)
        tokens = _affordable(plan, remaining) if plan.allow_partial else None
        if tokens is None:
            return Refused(name, remaining)
        return Placed(tokens, _cost(plan, tokens))

    def place(self, hold_id: int, plan, placed: Placed, period: str, expires_at) -> None:
        for _, _, counter in self.budgets(plan.api_key_id, period):
            counter.held += placed.amount
        prices = (plan.model.prompt_price, plan.model.completion_price)
        self.holds[hold_id] = HoldModel(
            plan.api_key_id, period, placed.amount, *prices, expires_at=expires_at
        )

    def settle(self, hold_id: int, prompt_tokens: int, completion_tokens: int):
        """(charge, capped) of the settlement; None when the hold had ended."""
        hold = self.holds[hold_id]
        if hold.ended:
            return None
        cost = price(prompt_tokens, completion_tokens, hold.prompt_price, hold.completion_price)
        charge = min(cost, hold.amount)
        self._end(hold, "settled", charge)
        self.ledger[hold_id] = charge
        return charge, cost > hold.amount

    def withdraw(self, hold_id: int) -> bool:
        hold = self.holds[hold_id]
        if hold.ended:
            return False
        self._end(hold, "withdrawn", ZERO)
        return True

    def expire(self, now: dt.datetime) -> int:
        """The sweeper at ``now``: every open hold expired by then withdrawn; how many."""
        expired = [pk for pk, h in self.holds.items() if not h.ended and h.expires_at <= now]
        for pk in expired:
            self.withdraw(pk)
        return len(expired)

    def _end(self, hold: HoldModel, how: str, charge: Decimal) -> None:
        for _, _, counter in self.budgets(hold.key, hold.period):
            counter.held -= hold.amount
            counter.used += charge
        hold.ended = how

    # --- what the database must hold ---------------------------------------------------------

    def state(self) -> dict:
        """Every counter as (used, held) by owner (and period; months untouched left out), the
        open holds' amounts and the ledger's charges by hold."""

        def lifetime(budgets: dict) -> dict:
            return {owner: (b.counter().used, b.counter().held) for owner, b in budgets.items()}

        def months(budgets: dict) -> dict:
            return {
                (owner, period): (c.used, c.held)
                for owner, budget in budgets.items()
                for period, c in budget.counters.items()
                if c.used or c.held
            }

        return {
            "grant": lifetime({self.grant_id: self.grant}),
            "key_total": lifetime(self.key_total),
            "key_monthly": months(self.key_monthly),
            "member_monthly": months(self.member_monthly),
            "holds": {pk: hold.amount for pk, hold in self.holds.items() if not hold.ended},
            "ledger": dict(self.ledger),
        }

    def overdrawn(self) -> list[str]:
        """Counters below zero or in use past what their limit changes allow."""
        budgets = [("grant", None, self.grant)]
        budgets += [("key_total", key, b) for key, b in self.key_total.items()]
        budgets += [("key_monthly", key, b) for key, b in self.key_monthly.items()]
        budgets += [("member_monthly", user, b) for user, b in self.member_monthly.items()]
        return [
            f"{name} {owner} {period or 'lifetime'}: {c.used} used + {c.held} held > {c.ceiling}"
            for name, owner, budget in budgets
            for period, c in budget.counters.items()
            if c.used < 0 or c.held < 0 or (c.ceiling is not None and c.in_use > c.ceiling)
        ]


def _cost(plan, completion_tokens: int) -> Decimal:
    prices = (plan.model.prompt_price, plan.model.completion_price)
    return price(plan.prompt_tokens, completion_tokens, *prices)


def _affordable(plan, budget: Decimal) -> int | None:
    """The most completion tokens whose request costs at most ``budget``: at least one (or
    none when none were asked for) and the prompt; None when not even that fits."""
    if budget <= 0 or _cost(plan, 0) > budget:
        return None
    low, high = 0, plan.max_completion_tokens
    while low < high:  # the cost grows with the tokens
        middle = (low + high + 1) // 2
        low, high = (middle, high) if _cost(plan, middle) <= budget else (low, middle - 1)
    if low == 0 and plan.max_completion_tokens > 0:
        return None
    return low
