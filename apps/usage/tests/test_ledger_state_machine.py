"""A stateful property test of the ledger (issue 12), in the spirit of TigerBeetle's simulation
testing. Hypothesis drives random sequences of place, settle, withdraw, crashes left to the
sweeper, limit changes (key total and monthly, member monthly, grant credits: raised, lowered
below what is used, lifted) and month changes through ``apps.usage.ledger`` on PostgreSQL,
each operation one of two ways: the ORM step by step, or ``aplace``/``asettle``/``awithdraw``
calling migration usage 0005's functions on an async pool (settlements also several in one
batch). After every step the database must equal a plain-Python model of the four budgets
(``ledger_model``): counters equal the ledger and the open holds, no budget below zero or in
use past what its limit changes allow, every hold ended exactly once (a second settle or
withdraw finds it ended), every refusal naming the budget the model names and every request
the model says fits placed. Now and then the nightly reconcile runs too.

One grant per example, shared by three keys of two members (Alice two, Bob one), on a clock of
its own (``timezone.now`` patched); the workload is ``ledger_workload``. Bounded by the
Hypothesis profile (``conftest.py``); ``HYPOTHESIS_PROFILE=nightly`` searches longer (README).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import CharField, DecimalField, Value
from django.utils import timezone
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.catalog.models import CatalogModel
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_change_limits
from apps.limits.services import member_limit_change
from apps.usage import ledger
from apps.usage.exceptions import Limit, QuotaExceeded
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter
from apps.usage.reconcile import counters_reconcile
from apps.usage.services import holds_sweep
from apps.usage.tests.ledger_model import (
    LIFETIME,
    Books,
    Placed,
    Refused,
    month_of,
    next_month,
)
from apps.usage.tests.ledger_workload import (
    ASKS,
    CHANGES,
    CREDITS,
    LIMITS,
    STARTS,
    USAGES,
    WAYS,
    Ask,
    Clock,
    resolve,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the async way is PostgreSQL's"),
]

_grants = itertools.count()
NO_PERIOD = Value("", output_field=CharField())
NOTHING = Value(0, output_field=DecimalField())
LIFETIME_COUNTER = (NO_PERIOD, "credits_used", "credits_held")
MONTH_COUNTER = ("period", "used", "held")


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")  # placed, not yet ended by the machine (the sweeper may have)
    ended = Bundle("ended")

    def __init__(self, world, models: list, clock: Clock, runner: asyncio.Runner) -> None:
        super().__init__()
        self.world, self.models, self.clock, self.runner = world, models, clock, runner
        self.grant: Grant | None = None
        self.books: Books | None = None

    # --- the world of one example ------------------------------------------------------------

    @initialize(
        grant_credits=CREDITS,
        key_limits=st.lists(st.tuples(LIMITS, LIMITS), min_size=3, max_size=3),
        member_limits=st.tuples(LIMITS, LIMITS),
        start=st.sampled_from(STARTS),
    )
    def open_grant(self, grant_credits, key_limits, member_limits, start) -> None:
        self.clock.moment = start
        number = next(_grants)
        self.grant = Grant.objects.create(
            team=self.world.team,
            identifier=f"machine-{number}",
            credits_allocated=grant_credits,
            valid_from=self.world.grant.valid_from,
            valid_until=self.world.grant.valid_until,
        )
        owners = [self.world.alice, self.world.alice, self.world.bob]
        self.keys = [
            ApiKey.objects.create(
                grant=self.grant,
                owner=owner,
                name=f"key-{n}",
                digest="x" * 64,
                lookup_prefix=f"m{number:010d}{n}",
                expires_at=start + dt.timedelta(days=90),
                total_limit=total,
                monthly_limit=monthly,
            )
            for n, (owner, (total, monthly)) in enumerate(zip(owners, key_limits, strict=True))
        ]
        members = dict(zip([self.world.alice, self.world.bob], member_limits, strict=True))
        for user, limit in members.items():
            if limit is not None:
                member_limit_change(
                    grant=self.grant, user=user, monthly_limit=limit, changed_by=None
                )
        self.books = Books(
            grant=(self.grant.pk, grant_credits),
            keys={k.pk: (k.owner_id, k.total_limit, k.monthly_limit) for k in self.keys},
            members={user.pk: limit for user, limit in members.items()},
        )

    def teardown(self) -> None:
        """No hold left open for the next example's sweeper (whether this one failed or not:
        nothing here may fail)."""
        if self.grant is not None:
            for hold in Hold.objects.filter(grant_id=self.grant.pk):
                ledger.withdraw(hold)

    # --- place, settle, withdraw -------------------------------------------------------------

    @rule(target=holds, ask=ASKS)
    def place_sync(self, ask):
        return self.place(ask, ledger.place)

    @rule(target=holds, ask=ASKS)
    def place_async(self, ask):
        return self.place(ask, lambda plan: self.run(ledger.aplace(plan)))

    @rule(target=ended, ask=ASKS, usage=USAGES, way=WAYS)
    def request(self, ask, usage, way):
        """A whole request: placed, answered and settled, one way."""
        if way == "async":
            hold = self.place(ask, lambda plan: self.run(ledger.aplace(plan)))
        else:
            hold = self.place(ask, ledger.place)
        if not isinstance(hold, Hold):
            return hold  # refused: nothing to settle
        settle = self.settle_async if way == "async" else self.settle_sync
        return settle(hold, usage)

    def place(self, ask: Ask, place):
        key, now = self.keys[ask.key], self.clock.moment
        plan = ledger.Plan(
            api_key_id=key.pk,
            grant_id=self.grant.pk,
            user_id=key.owner_id,
            model=self.models[ask.model],
            prompt_tokens=ask.prompt_tokens,
            max_completion_tokens=ask.max_completion_tokens,
            allow_partial=ask.allow_partial,
            ttl_seconds=ask.ttl,
        )
        period = month_of(now)
        expected = self.books.foresee(plan, period)
        try:
            hold = place(plan)
        except QuotaExceeded as refused:
            assert Refused(refused.limit, refused.remaining) == expected
            event(f"place: refused by {refused.limit}")
            return multiple()
        assert expected == Placed(hold.max_completion_tokens, hold.amount)
        assert (hold.period, hold.expires_at) == (period, now + dt.timedelta(seconds=ask.ttl))
        self.books.place(hold.pk, plan, expected, period, hold.expires_at)
        assert self.budgets_read(hold) == self.budgets_model(key.pk, period)
        partial = hold.max_completion_tokens < ask.max_completion_tokens
        event("place: partial" if partial else "place")
        return hold

    @rule(target=ended, hold=consumes(holds), usage=USAGES)
    def settle_sync(self, hold, usage):
        return self.settle([(hold, usage)], lambda items: [ledger.settle(*items[0])])

    @rule(target=ended, hold=consumes(holds), usage=USAGES)
    def settle_async(self, hold, usage):
        return self.settle([(hold, usage)], lambda items: self.run(_settled(items)))

    @rule(target=ended, hold=consumes(holds), usage=USAGES, way=WAYS, seconds=st.integers(0, 600))
    def settle_after_midnight(self, hold, usage, way, seconds):
        """A request running over the month's end, settled in the next month (before the
        sweeper comes by): charged to the month its hold was placed in."""
        self.clock.moment = next_month(self.clock.moment) + dt.timedelta(seconds=seconds)
        settle = self.settle_async if way == "async" else self.settle_sync
        return settle(hold, usage)

    @precondition(lambda self: len(self.bundle("holds")) >= 2)
    @rule(
        target=ended,
        first=consumes(holds),
        second=consumes(holds),
        usages=st.tuples(USAGES, USAGES, USAGES),
        twice=st.booleans(),
    )
    def settle_together(self, first, second, usages, twice):
        """Settlements that finish together go in one batch, one transaction; a hold twice in
        one batch is settled by the first."""
        batch = [first, second, first] if twice else [first, second]
        return self.settle(
            list(zip(batch, usages, strict=False)), lambda items: self.run(_settled(items))
        )

    def settle(self, items: list, settle):
        items = [(hold, shape.of(hold)) for hold, shape in items]
        expected = [
            self.books.settle(hold.pk, usage.prompt_tokens, usage.completion_tokens)
            for hold, usage in items
        ]
        entries = settle(items)
        assert [_charged(e, hold) for e, (hold, _) in zip(entries, items, strict=True)] == expected
        for (hold, _), charged in zip(items, expected, strict=True):
            event(_settlement(charged, hold, self.clock.moment))
        return multiple(*dict.fromkeys(hold for hold, _ in items))

    @rule(target=ended, hold=consumes(holds), way=WAYS)
    def withdraw(self, hold, way):
        expected = self.books.withdraw(hold.pk)
        withdrawn = self.run(ledger.awithdraw(hold)) if way == "async" else ledger.withdraw(hold)
        assert withdrawn is expected
        event("withdraw" if expected else "withdraw: ended already")
        return hold

    @rule(
        hold=ended,
        usage=USAGES,
        way=st.sampled_from(["settle", "asettle", "withdraw", "awithdraw"]),
    )
    def end_again(self, hold, usage, way):
        """A hold ends once: a second settle finds it ended (None), a second withdraw too."""
        usage = usage.of(hold)
        ends = {
            "settle": lambda: ledger.settle(hold, usage),
            "asettle": lambda: self.run(_settled([(hold, usage)]))[0],
            "withdraw": lambda: ledger.withdraw(hold),
            "awithdraw": lambda: self.run(ledger.awithdraw(hold)),
        }
        assert self.books.holds[hold.pk].ended
        assert ends[way]() is (None if "settle" in way else False)

    # --- time: crashes, the sweeper, months --------------------------------------------------

    @rule(target=ended, hold=consumes(holds), late=st.just(0) | st.integers(1, 600))
    def crash_then_sweep(self, hold, late):
        """The process holding ``hold`` died between place and settle: once its TTL has passed
        the sweeper withdraws it (and every other hold expired by then)."""
        self.clock.moment = max(self.clock.moment, hold.expires_at + dt.timedelta(seconds=late))
        self.sweep()
        return hold

    @rule(seconds=st.integers(0, 3_600), to_month_end=st.booleans())
    def time_passes(self, seconds, to_month_end):
        """Time passes, or runs on to ``seconds`` before the month ends (the next steps cross
        it: the monthly budgets start again, holds placed before it settle into it), and the
        sweeper runs, withdrawing the holds expired by then."""
        month, moment = month_of(self.clock.moment), self.clock.moment
        if to_month_end:
            moment = max(moment, next_month(moment) - dt.timedelta(seconds=seconds))
        else:
            moment += dt.timedelta(seconds=seconds)
        self.clock.moment = moment
        if month_of(moment) != month:
            event("time: a new month")
        self.sweep()

    def sweep(self) -> None:
        swept = self.books.expire(self.clock.moment)
        assert holds_sweep() == swept
        event("sweep: withdrew some" if swept else "sweep: nothing expired")

    # --- limit changes -----------------------------------------------------------------------

    @rule(budget=st.sampled_from(Limit), who=st.integers(0, 2), change=CHANGES)
    def change_limit(self, budget, who, change):
        """A manager raises, lowers or lifts a limit, as the services do: a key's (``who``: its
        index), a member's (``who``: Alice, Alice, Bob) or the grant's credits (saved as the
        admin saves them, from an old read; never lifted)."""
        key, month = self.keys[who], month_of(self.clock.moment)
        model, period = {
            Limit.GRANT: (self.books.grant, LIFETIME),
            Limit.KEY_TOTAL: (self.books.key_total[key.pk], LIFETIME),
            Limit.KEY_MONTHLY: (self.books.key_monthly[key.pk], month),
            Limit.MEMBER_MONTHLY: (self.books.member_monthly[key.owner_id], month),
        }[budget]
        counter = model.counter(period)
        limit = resolve(change, counter, liftable=budget != Limit.GRANT)
        if budget == Limit.GRANT:
            self.grant.credits_allocated = limit
            self.grant.save()
        elif budget == Limit.MEMBER_MONTHLY:
            member_limit_change(
                grant=self.grant, user=key.owner, monthly_limit=limit, changed_by=None
            )
        else:
            field = "total_limit" if budget == Limit.KEY_TOTAL else "monthly_limit"
            setattr(key, field, limit)
            api_key_change_limits(
                key=key, monthly_limit=key.monthly_limit, total_limit=key.total_limit
            )
        model.change(limit)
        event(f"limit: {budget} {'lifted' if limit is None else 'set'}")
        if limit is not None and limit < counter.in_use:
            event(f"limit: {budget} below what is in use")

    # --- the books ---------------------------------------------------------------------------

    @rule()
    def reconcile_runs(self):
        """The nightly reconcile (``counters_reconcile``, the ledger's own check of its
        counters) finds nothing to mend."""
        assert counters_reconcile(grant_id=self.grant.pk) == []

    @invariant()
    def books_balance(self):
        """The database equals the model: every counter, open hold and ledger row (so counters
        equal the ledger plus the open holds, and each hold ended once); and no budget below
        zero or in use past what its limit changes allow."""
        if self.books is not None:
            assert books_stored(self.grant.pk) == self.books.state()
            assert self.books.overdrawn() == []

    def budgets_read(self, hold: Hold) -> list[tuple]:
        return [(b.name, b.limit, b.used, b.held) for b in hold.budgets.budgets]

    def budgets_model(self, key: int, period: str) -> list[tuple]:
        return [
            (name, budget.limit, counter.used, counter.held)
            for name, budget, counter in self.books.budgets(key, period)
        ]

    def run(self, coroutine):
        return self.runner.run(coroutine)


def books_stored(grant_id: int) -> dict:
    """The grant's counters, open holds and ledger, as ``Books.state`` has them, in one query
    (the check after every step is most of the test's time)."""
    grant = {"grant_id": grant_id}
    tables = {  # rows of (owner, period, two amounts)
        "grant": (Grant.objects.filter(pk=grant_id), "pk", *LIFETIME_COUNTER),
        "key_total": (ApiKey.objects.filter(**grant), "pk", *LIFETIME_COUNTER),
        "key_monthly": (
            KeyMonthCounter.objects.filter(api_key__grant_id=grant_id),
            "api_key_id",
            *MONTH_COUNTER,
        ),
        "member_monthly": (MemberMonthCounter.objects.filter(**grant), "user_id", *MONTH_COUNTER),
        "holds": (Hold.objects.filter(**grant), "pk", NO_PERIOD, "amount", NOTHING),
        "ledger": (LedgerEntry.objects.filter(**grant), "hold_id", NO_PERIOD, "credits", NOTHING),
    }
    queries = [rows.values_list(Value(what), *columns) for what, (rows, *columns) in tables.items()]
    stored = {what: {} for what in tables}
    for what, owner, period, first, second in queries[0].union(*queries[1:], all=True):
        if what in ("holds", "ledger"):
            assert owner not in stored[what], f"{what}: {owner} twice"
            stored[what][owner] = first
        elif period:  # a month counter
            if first or second:
                stored[what][owner, period] = (first, second)
        else:
            stored[what][owner] = (first, second)
    return stored


async def _settled(items: list) -> list:
    """``asettle`` each (hold, usage), all started before any is written: one batch."""
    return await asyncio.gather(*(ledger.asettle(hold, usage) for hold, usage in items))


def _settlement(expected, hold: Hold, now: dt.datetime) -> str:
    if expected is None:
        return "settle: ended already"
    month = "" if hold.period == month_of(now) else ", a hold of an earlier month"
    return f"settle: {'capped' if expected[1] else 'charged'}{month}"


def _charged(entry: LedgerEntry | None, hold: Hold) -> tuple | None:
    if entry is None:
        return None
    assert (entry.hold_id, entry.period) == (hold.pk, hold.period)
    return entry.credits, entry.capped


def _catalog_model(world, name: str, prompt_price: Decimal, completion_price: Decimal):
    return CatalogModel.objects.create(
        name=name, backend=world.backend, upstream_model=name, context_window=8192,
        prompt_price=prompt_price, completion_price=completion_price,
    )  # fmt: skip


def test_the_ledger_keeps_its_books(world, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock.now)
    models = [
        world.chat_model,  # 0.5 / 1.5 credits per 1M tokens
        _catalog_model(world, "odd", Decimal("0.333333"), Decimal("1.000001")),
        _catalog_model(world, "free", Decimal(0), Decimal(0)),
    ]
    with asyncio.Runner() as runner:  # one event loop, so one pool, for the whole run
        run_state_machine_as_test(lambda: LedgerMachine(world, models, clock, runner))
