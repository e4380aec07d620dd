"""The ledger's async way on PostgreSQL (``apps.usage.pg``): one prepared call of a function of
migration usage 0005 per operation, a hold's commit not waiting for the disk unless durable
holds are asked for, the budgets a hold reads, and a connection pool that never hands out a
connection in the middle of a statement (a call cancelled, a connection lost)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import psycopg
import pytest
import uvloop
from django.db import connection, transaction
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from apps.core.logs import RequestFields, begin_request, end_request
from apps.keys.models import ApiKey
from apps.limits.services import member_limit_set
from apps.usage import ledger, pg
from apps.usage.models import Hold, LedgerEntry
from apps.usage.selectors import budget_status
from apps.usage.tests.conftest import make_key, plan_for
from tests.waiting import eventually

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the async way is PostgreSQL's"),
]

RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def status_of(hold: Hold):
    ids = {"api_key_id": hold.api_key_id, "grant_id": hold.grant_id, "user_id": hold.user_id}
    return budget_status(**ids, period=hold.period)


def test_it_places_settles_and_withdraws_with_one_prepared_call_each(world, monkeypatch):
    plan, usage = plan_for(make_key(world), world), ledger.Usage(10, 10)
    calls = []
    execute = AsyncConnection.execute

    async def recorded(conn, query, params=None, **options):
        calls.append((query, options.get("prepare")))
        return await execute(conn, query, params, **options)

    async def calls_of(operation):
        calls.clear()
        return await operation, list(calls)

    async def requests():
        await ledger.asettle(await ledger.aplace(plan), usage)  # opens the pool
        monkeypatch.setattr(AsyncConnection, "execute", recorded)
        hold, placing = await calls_of(ledger.aplace(plan))
        _, settling = await calls_of(ledger.asettle(hold, usage))
        other, _ = await calls_of(ledger.aplace(plan))
        _, withdrawing = await calls_of(ledger.awithdraw(other))
        return placing, settling, withdrawing

    placing, settling, withdrawing = asyncio.run(requests())
    assert placing == [(pg.PLACE, True)]
    assert settling == [(pg.SETTLE, True)]
    assert withdrawing == [(pg.WITHDRAW, True)]
    assert LedgerEntry.objects.count() == 2


def test_a_hold_settled_twice_in_one_batch_is_settled_once(world):
    key = make_key(world)

    async def twice():
        hold = await ledger.aplace(plan_for(key, world))
        first, second = ledger.Usage(1000, 500), ledger.Usage(1000, 1000)
        return await asyncio.gather(ledger.asettle(hold, first), ledger.asettle(hold, second))

    entry, again = asyncio.run(twice())
    assert again is None  # as a second settle after the first
    assert (entry.pk, entry.completion_tokens) == (LedgerEntry.objects.get().pk, 500)
    assert LedgerEntry.objects.get().completion_tokens == 500
    assert ApiKey.objects.get(pk=key.pk).credits_used == Decimal("0.00125")


def test_a_batch_of_settlements_logs_one_warning_per_capped_row(world, caplog, monkeypatch):
    """Settlements that finish together share one transaction (``pg._settle_all``); each of
    its capped rows, and only those, is an alarm, and a hold settled twice in the batch (its
    second settlement finds it ended: no row) is not logged twice."""
    key = make_key(world)
    batches = []
    settle_all = pg._settle_all

    async def recorded(items):
        batches.append(len(items))
        return await settle_all(items)

    monkeypatch.setattr(pg, "_settle_all", recorded)

    async def together():
        holds = [await ledger.aplace(plan_for(key, world, max_completion_tokens=10))
                 for _ in range(4)]  # fmt: skip
        usages = [ledger.Usage(10, 5), ledger.Usage(5000, 5000), ledger.Usage(10, 5),
                  ledger.Usage(9000, 1)]  # fmt: skip
        serving = begin_request({"type": "http", "headers": [(b"x-request-id", b"request-a")]})
        settling = [ledger.asettle(holds[0], usages[0])]  # request A's, not capped: it writes
        end_request(serving)
        settling += [ledger.asettle(h, u) for h, u in zip(holds[1:], usages[1:], strict=True)]
        settling.append(ledger.asettle(holds[1], ledger.Usage(5000, 5000)))  # again
        return holds, await asyncio.gather(*settling)

    caplog.handler.addFilter(RequestFields())  # as the console's handler (settings.LOGGING)
    with caplog.at_level(logging.WARNING, logger="apps.usage.capped"):
        holds, entries = asyncio.run(together())
    assert batches[0] == 4  # (the same hold twice goes once)
    assert [e.capped for e in entries[:4]] == [False, True, False, True] and entries[4] is None
    warnings = [r for r in caplog.records if r.name == "apps.usage.capped"]
    assert sorted(r.hold_id for r in warnings) == [holds[1].pk, holds[3].pk]
    assert all(r.levelname == "WARNING" for r in warnings)
    # Written by request A's task, yet no line is put down to request A.
    assert [getattr(r, "request_id", None) for r in warnings] == [None, None]
    assert LedgerEntry.objects.filter(capped=True).count() == 2


def test_holds_placed_together_go_in_batches_and_stop_exactly_at_the_limit(world, monkeypatch):
    # A request costs 0.002 credits; the key's total limit pays for 7 of them, and a second
    # key of the same member and grant places beside it in the same batches.
    key, other = make_key(world, total_limit=Decimal("0.014")), make_key(world)
    calls = []
    execute = AsyncConnection.execute

    async def recorded(conn, query, params=None, **options):
        calls.append(query)
        return await execute(conn, query, params, **options)

    async def requests():
        await ledger.awithdraw(await ledger.aplace(plan_for(other, world)))  # opens the pool
        monkeypatch.setattr(AsyncConnection, "execute", recorded)
        plans = [plan_for(key, world) for _ in range(12)] + [plan_for(other, world)] * 4
        return await asyncio.gather(*(ledger.aplace(plan) for plan in plans),
                                    return_exceptions=True)  # fmt: skip

    results = asyncio.run(requests())
    placed = [result for result in results if isinstance(result, Hold)]
    refused = [result for result in results if isinstance(result, Exception)]
    assert pg.PLACE_BATCH in calls  # several holds in one call
    assert sum(hold.api_key_id == key.pk for hold in placed) == 7
    assert sum(hold.api_key_id == other.pk for hold in placed) == 4
    assert len(refused) == 5 and all(exc.limit == "key_total" for exc in refused)
    assert ApiKey.objects.get(pk=key.pk).credits_held == Decimal("0.014")
    assert Hold.objects.count() == 11 and len({hold.pk for hold in placed}) == 11
    # each read the key's budget right after it: 1 to 7 requests' worth held
    seen = sorted(
        hold.budgets.budget("key_total").held for hold in placed if hold.api_key_id == key.pk
    )
    assert seen == [Decimal("0.002") * n for n in range(1, 8)]


@pytest.mark.parametrize("durable", [False, True])
def test_a_hold_commits_without_waiting_for_the_disk_unless_durable_holds(world, durable, settings):
    # GATEWAY_DURABLE_HOLDS off: the hold's own transaction commits asynchronously; whatever
    # runs after it on the connection (a settlement) is back to the server's setting.
    settings.GATEWAY_DURABLE_HOLDS = durable
    hold = plan_for(make_key(world), world, prompt_tokens=10, max_completion_tokens=10).hold()
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        server_setting = cursor.fetchone()[0]
        with transaction.atomic():
            cursor.execute(pg.PLACE, [*pg._place_row(hold), durable])
            assert cursor.fetchone()[0] > 0  # the hold's id
            cursor.execute("SHOW synchronous_commit")
            during = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        after = cursor.fetchone()[0]
    assert server_setting == "on"
    assert during == ("on" if durable else "off")
    assert after == "on"
    assert Hold.objects.get().amount == hold.amount


def test_a_hold_reads_the_budgets_its_settlement_will_leave(world):
    """The credit headers come from the hold (``ledger.budgets_after``), before the settlement
    is written: the budgets the hold reads are the database's right after it, and moved by
    the charge they are what the database says once it is settled."""
    member_limit_set(
        grant=world.grant, user=world.alice, monthly_limit=Decimal("0.05"), changed_by=None
    )
    key = make_key(world, total_limit=Decimal("0.04"), monthly_limit=Decimal("0.03"))

    async def place(**request) -> Hold:
        return await ledger.aplace(plan_for(key, world, **request))

    async def settle(hold, usage):
        return await ledger.asettle(hold, usage)

    other = asyncio.run(place(max_completion_tokens=100))  # still open
    for limit_changes, usage in [
        ({}, ledger.Usage(1000, 500)),
        ({}, ledger.Usage(1200, 3000)),  # capped at the hold
        ({"monthly_limit": Decimal("0.0065")}, ledger.Usage(1000, 0)),  # key month binds
    ]:
        if limit_changes:
            ApiKey.objects.filter(pk=key.pk).update(**limit_changes)
        hold = asyncio.run(place())
        assert hold.budgets == status_of(hold)
        foretold = ledger.budgets_after(hold, usage)
        entry = asyncio.run(settle(hold, usage))
        assert entry.credits == ledger.charge(hold, usage)
        assert foretold == status_of(hold)
    assert (foretold.limited_by, foretold.remaining) == ("key_monthly", Decimal("0.0021"))
    asyncio.run(settle(other, ledger.Usage(1000, 100)))


def _terminate(pid: int) -> None:
    """End the server's session ``pid`` and wait until it has ended."""
    with psycopg.connect(pg._conninfo(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def _lock_grant(grant_id: int) -> psycopg.Connection:
    """A transaction of another client holding the grant's row (every hold updates it)."""
    locker = psycopg.connect(pg._conninfo())
    locker.execute("SELECT 1 FROM grants_grant WHERE id = %s FOR UPDATE", [grant_id])
    return locker


def _waiting_for_a_lock() -> bool:
    with psycopg.connect(pg._conninfo(), autocommit=True) as other:
        row = other.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
    return row[0] > 0


def _returns(monkeypatch) -> list:
    """(connection, its transaction status) of every connection as it is given back to its
    pool."""
    returned, putconn = [], AsyncConnectionPool.putconn

    async def recorded(pool, conn):
        returned.append((conn, conn.pgconn.transaction_status))
        return await putconn(pool, conn)

    monkeypatch.setattr(AsyncConnectionPool, "putconn", recorded)
    return returned


@pytest.mark.parametrize("loop", RUNNERS)
def test_a_hold_cancelled_while_it_waits_never_returns_its_connection_busy(
    world, loop, monkeypatch
):
    key = make_key(world)
    plan = plan_for(key, world, prompt_tokens=10, max_completion_tokens=10)
    returned = _returns(monkeypatch)

    async def request_served() -> None:
        await ledger.asettle(await ledger.aplace(plan), ledger.Usage(10, 5))

    async def scenario():
        await request_served()  # the pool open, its connection ready
        locker = await asyncio.to_thread(_lock_grant, key.grant_id)
        try:
            waiting = asyncio.ensure_future(ledger.aplace(plan))
            await asyncio.to_thread(eventually, _waiting_for_a_lock, what="the hold waits")
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            cancelled = returned[-1]
        finally:
            await asyncio.to_thread(locker.close)  # the lock's transaction rolled back
        await asyncio.gather(*(request_served() for _ in range(5)))
        return cancelled, [conn for conn, _ in returned[-10:]]

    (conn, status), then_used = RUNNERS[loop](scenario())
    # psycopg cancelled the statement on the server (rolled back) and gave the connection back
    # idle, to be used again (the old libpq calls closed it instead).
    assert status == psycopg.pq.TransactionStatus.IDLE
    assert conn in then_used
    assert not Hold.objects.exists()
    assert LedgerEntry.objects.count() == 6
    assert all(status == psycopg.pq.TransactionStatus.IDLE for _, status in returned)


@pytest.mark.parametrize("loop", RUNNERS)
def test_a_lost_connection_raises_and_the_pool_replaces_it(world, loop, monkeypatch, settings):
    settings.GATEWAY_DB_POOL_SIZE = 1  # the next hold runs on the connection lost
    key = make_key(world)
    plan = plan_for(key, world, prompt_tokens=10, max_completion_tokens=10)
    returned = _returns(monkeypatch)

    async def scenario():
        await ledger.aplace(plan)  # the pool open, one connection
        lost = returned[-1][0]
        await asyncio.to_thread(_terminate, lost.info.backend_pid)
        with pytest.raises(psycopg.OperationalError) as error:
            await ledger.aplace(plan)
        return error.value, lost, await ledger.aplace(plan), returned[-1][0]

    error, lost, hold, then_used = RUNNERS[loop](scenario())
    assert error.sqlstate in (None, "57P01")  # admin_shutdown, or no reply at all
    assert lost.closed
    assert then_used is not lost
    assert Hold.objects.filter(pk=hold.pk).exists()
