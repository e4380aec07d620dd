"""A lowered monthly limit binds from the first request admitted after the change commits, in
every process (issue 12).

Eight clients keep sending chat requests with one key to Anvil in two worker processes while
the test changes the key's monthly limit the way its owner does (``api_key_change_limits``,
the service behind the portal's form and the management API): lowered to a little above what
the key has spent and holds (the requests use up the room left, then are refused), raised
again, then cut below what it has spent while requests (a slow one among them) are in
flight. Then, from the database: every hold placed after a change fit under the new limit
and saw it, in both processes; what the key spent and held never passed the new limit beyond
what it already held when the change committed; each request was charged once, at most its
hold. From the clients: an answer after the lowering says what is left under the new limit;
every refusal is a 429 naming the key's monthly limit; nothing sent after the cut got
through.

The ledger keeps no trace of a hold once it ends (the row is deleted at settlement; the ledger
row records neither the hold's amount nor when it was placed) and no time of a limit change,
so the test logs, by triggers of its own, each hold as it is inserted and each change of the
key's monthly limit as it is written, with PostgreSQL's ``clock_timestamp()`` and the key's
month counter as that transaction sees it. Both transactions lock the key's row before
anything else of the key (``anvil_place`` updates it first; the change updates it), so they
are serialized on it: a hold inserted after the change's UPDATE was placed after the change
committed, and the counters the change's trigger reads are still the counters when it commits
(every placement, settlement and withdrawal of the key waits for that row).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import httpx2
import openai
import pytest
from django.db import connection
from django.utils import timezone

from apps.catalog.models import CatalogModel, Kind
from apps.keys.models import ApiKey
from apps.keys.services import api_key_change_limits, api_key_create
from apps.usage.exceptions import Limit
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry
from apps.usage.periods import period_for
from apps.usage.reconcile import counters_reconcile
from tests.servers import start_anvil_processes, stop_anvil_processes
from tests.waiting import eventually

CLIENTS = 8
# 0.001 credits a token: a request ("Hi", max_tokens 8) holds a few hundredths of a credit.
PRICE = Decimal("1000")
OPEN_LIMIT = Decimal("100")  # far above what the run spends
ROOM = 25  # requests' holds of room left by the first lowering

LOG_SQL = """
CREATE TABLE test_hold_log (
  hold_id bigint, api_key_id bigint, amount numeric, at timestamptz,
  month_limit numeric, month_used numeric, month_held numeric, client_port integer);
CREATE TABLE test_limit_log (
  api_key_id bigint, at timestamptz, monthly_limit numeric, used numeric, held numeric);

CREATE FUNCTION test_log_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- In the placing transaction, which has just updated both rows: its own view of them.
  INSERT INTO test_hold_log
  SELECT NEW.id, NEW.api_key_id, NEW.amount, clock_timestamp(), k.monthly_limit, c.used, c.held,
         inet_client_port()
    FROM keys_apikey k JOIN usage_keymonthcounter c ON c.api_key_id = k.id
   WHERE k.id = NEW.api_key_id AND c.period = NEW.period;
  RETURN NULL;
END $$;
CREATE TRIGGER test_log_hold AFTER INSERT ON usage_hold
  FOR EACH ROW EXECUTE FUNCTION test_log_hold();

CREATE FUNCTION test_log_limit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_limit_log
  SELECT NEW.id, clock_timestamp(), NEW.monthly_limit, coalesce(c.used, 0), coalesce(c.held, 0)
    FROM (SELECT 1) one
    LEFT JOIN usage_keymonthcounter c ON c.api_key_id = NEW.id AND c.period = TG_ARGV[0];
  RETURN NULL;
END $$;
CREATE TRIGGER test_log_limit AFTER UPDATE ON keys_apikey
  FOR EACH ROW WHEN (OLD.monthly_limit IS DISTINCT FROM NEW.monthly_limit)
  EXECUTE FUNCTION test_log_limit(':period');
"""
UNLOG_SQL = """
DROP TRIGGER IF EXISTS test_log_hold ON usage_hold;
DROP TRIGGER IF EXISTS test_log_limit ON keys_apikey;
DROP FUNCTION IF EXISTS test_log_hold(); DROP FUNCTION IF EXISTS test_log_limit();
DROP TABLE IF EXISTS test_hold_log; DROP TABLE IF EXISTS test_limit_log;
"""


@pytest.fixture
def ledger_log(transactional_db):
    """Log every hold placed and every change of a key's monthly limit (see the module)."""
    if connection.vendor != "postgresql":
        pytest.skip("two worker processes share the ledger through PostgreSQL")
    period = period_for(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(LOG_SQL.replace(":period", period))  # YYYY-MM
    yield
    with connection.cursor() as cursor:
        cursor.execute(UNLOG_SQL)


@dataclass(frozen=True)
class LoggedHold:
    id: int
    amount: Decimal
    at: object  # datetime: clock_timestamp() at its insert
    month_limit: Decimal | None  # the key's monthly limit its placement saw
    used: Decimal  # the key's month counter, this hold included in held
    held: Decimal
    port: int  # the local port of the worker's database connection that placed it


@dataclass(frozen=True)
class Change:
    at: object  # clock_timestamp() at the change's UPDATE of the key row
    limit: Decimal
    used: Decimal  # the key's month counter at the change's commit
    held: Decimal

    @property
    def committed(self) -> Decimal:
        """What the key had spent and held when the change committed."""
        return self.used + self.held


def _logs(key: ApiKey) -> tuple[list[LoggedHold], list[Change]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT hold_id, amount, at, month_limit, month_used, month_held, client_port"
            " FROM test_hold_log"
            " WHERE api_key_id = %s ORDER BY at",
            [key.pk],
        )
        holds = [LoggedHold(*row) for row in cursor.fetchall()]
        cursor.execute(
            "SELECT at, monthly_limit, used, held FROM test_limit_log"
            " WHERE api_key_id = %s ORDER BY at",
            [key.pk],
        )
        changes = [Change(*row) for row in cursor.fetchall()]
    return holds, changes


@dataclass(frozen=True)
class Answer:
    sent: float  # time.time() when the client sent the request (the clock PostgreSQL reads)
    answered: float  # time.time() when its answer came
    status: int
    remaining: Decimal | None = None  # X-Anvil-Credits-Remaining
    code: str | None = None
    message: str = ""


@dataclass
class Traffic:
    """CLIENTS clients sending chat requests one after another, on an event loop in a thread of
    their own, until ``stop``."""

    url: str
    secret: str
    model: str
    answers: list[Answer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the clients did not stop"
        if self.failure is not None:
            raise self.failure

    def count(self, status: int, *, since: float = 0.0) -> int:
        return sum(1 for a in list(self.answers) if a.status == status and a.sent > since)

    def _run(self) -> None:
        try:
            asyncio.run(self._clients())
        except BaseException as exc:  # re-raised in the test's thread by stop()
            self.failure = exc

    async def _clients(self) -> None:
        # A connection per request, so both worker processes take requests all along (one
        # of them could accept every kept-alive connection at the start).
        http = openai.DefaultAsyncHttpxClient(
            trust_env=False, limits=httpx2.Limits(max_keepalive_connections=0)
        )
        client = openai.AsyncOpenAI(
            base_url=self.url, api_key=self.secret, max_retries=0, http_client=http
        )
        try:
            await asyncio.gather(*(self._client(client) for _ in range(CLIENTS)))
        finally:
            await client.close()

    async def _client(self, client: openai.AsyncOpenAI) -> None:
        while not self.stopping.is_set():
            sent = time.time()
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=self.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8
                )
            except openai.APIStatusError as exc:
                body = exc.body if isinstance(exc.body, dict) else {}
                answer = Answer(
                    sent=sent, answered=time.time(), status=exc.status_code,
                    code=body.get("code"), message=body.get("message", ""),
                )  # fmt: skip
            else:
                remaining = Decimal(raw.headers["x-anvil-credits-remaining"])
                answer = Answer(
                    sent=sent, answered=time.time(), status=raw.status_code, remaining=remaining
                )
            self.answers.append(answer)


def _workers_by_port(parent: int) -> dict[int, int]:
    """The worker processes of the Anvil server ``parent``, by the local TCP ports of their
    sockets (Linux's /proc): which worker a database connection belongs to."""
    workers = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == parent:  # its ppid
                    workers.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    sockets = {}
    for pid in workers:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                sockets[int(target[8:-1])] = pid
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[9]) in sockets:
                    ports[int(fields[1].rsplit(":", 1)[1], 16)] = sockets[int(fields[9])]
    return ports


def _model(world, name: str, *, latency_ms: int) -> CatalogModel:
    """A chat model of the key's grant on the development backend, answering after
    ``latency_ms``."""
    model = CatalogModel.objects.create(
        name=name, backend=world.backend, kind=Kind.CHAT,
        upstream_model=f"org/chat-small@latency-ms={latency_ms}",
        prompt_price=PRICE, completion_price=PRICE, context_window=8192,
        max_concurrency=CLIENTS, queue_size=CLIENTS,
    )  # fmt: skip
    world.grant.allowed_models.add(model)
    return model


def _ask(url: str, secret: str, model: str) -> int:
    """One chat request's HTTP status."""
    with openai.OpenAI(base_url=url, api_key=secret, max_retries=0) as client:
        try:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8
            )
        except openai.APIStatusError as exc:
            return exc.status_code
    return 200


def _counter(key: ApiKey) -> KeyMonthCounter:
    return KeyMonthCounter.objects.get(api_key=key)


def _change(key: ApiKey, monthly_limit: Decimal) -> float:
    """Change the key's monthly limit as its owner does; time.time() once committed."""
    key = ApiKey.objects.get(pk=key.pk)
    api_key_change_limits(
        key=key, monthly_limit=monthly_limit, total_limit=key.total_limit, actor=key.owner
    )
    return time.time()


@pytest.mark.django_db(transaction=True)
def test_a_lowered_monthly_limit_binds_the_next_request_in_every_process(
    world, devbackend, ledger_log, tmp_path
):
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.save()
    model = _model(world, "lowered-chat", latency_ms=20)
    slow_model = _model(world, "lowered-chat-slow", latency_ms=1000)
    key, secret = api_key_create(
        grant=world.grant, owner=world.bob, name="lowered", monthly_limit=OPEN_LIMIT
    )
    server = start_anvil_processes(workers=2, log_path=tmp_path / "anvil.log")
    traffic = Traffic(f"{server.url}/api/v1", secret, model.name)
    asking = ThreadPoolExecutor(1)
    try:
        traffic.start()
        eventually(lambda: traffic.count(200) >= 50, timeout=20, what="50 requests answered")

        # 1. Lowered to a little above what the key has spent and holds: the requests fill
        # the room left, then are refused.
        counter = _counter(key)
        one_hold = max(hold.amount for hold in _logs(key)[0])
        above = counter.used + counter.held + one_hold * ROOM
        lowered = _change(key, above)
        eventually(
            lambda: traffic.count(429, since=lowered) >= 10
            # (or more answered than the room holds: the limit did not bind; see the asserts)
            or traffic.count(200, since=lowered) > 4 * ROOM,
            timeout=20, what="the room used up",
        )  # fmt: skip

        # 2. Raised again: requests flow freely, a few always in flight.
        raised = _change(key, OPEN_LIMIT)
        eventually(lambda: traffic.count(200, since=raised) >= 20, timeout=20)

        # 3. Cut below what the key has spent, in full flow and while a slow request admitted
        # before holds its credits: nothing more fits, and the requests in flight still
        # settle.
        slow = asking.submit(_ask, f"{server.url}/api/v1", secret, slow_model.name)
        eventually(lambda: Hold.objects.filter(api_key=key, model=slow_model).exists(), timeout=20)
        below = _counter(key).used - one_hold
        cut = _change(key, below)
        eventually(
            lambda: traffic.count(429, since=cut) >= 20 or traffic.count(200, since=cut) >= 20,
            timeout=20, what="20 requests answered after the cut",
        )  # fmt: skip
        assert slow.result(timeout=20) == 200  # admitted before the cut
    finally:
        if hasattr(traffic, "thread"):
            traffic.stop()
        asking.shutdown()
        try:
            eventually(lambda: not Hold.objects.exists(), timeout=20, what="every hold ended")
            workers = _workers_by_port(server.process.pid)  # while their connections are open
        finally:
            stop_anvil_processes(server)

    holds, changes = _logs(key)
    limits = [OPEN_LIMIT, above, OPEN_LIMIT, below]
    assert [change.limit for change in changes] == limits[1:]
    # Lowered above what the key had spent and held; cut below what it had spent (spent is
    # never less than it was read before the change).
    assert changes[0].committed < above and below < changes[2].used
    assert changes[2].held > 0  # the slow request's hold, at least

    # Every hold placed after a change fits under the new limit with what the key had spent
    # and held at that moment (its own amount included), and its placement saw that limit.
    under = [[] for _ in limits]  # the holds placed under each limit
    for hold in holds:
        segment = sum(1 for change in changes if change.at < hold.at)
        under[segment].append(hold)
        assert hold.month_limit == limits[segment], (hold, limits[segment])
        assert hold.used + hold.held <= limits[segment], (hold, limits[segment])
    # Both worker processes admitted requests up to the lowered limit; after the cut, none
    # could.
    assert len({workers.get(hold.port) for hold in under[1]} - {None}) == 2, workers
    assert under[3] == []

    # What the key spent and held after each change never passed the new limit, beyond what
    # was already held when it committed (a hold placed before may still settle, charged at
    # most its amount).
    for before, change, limit in zip(changes, changes[1:], limits[1:], strict=False):
        assert change.committed <= max(limit, before.committed), (before, change)
    final = _counter(key)
    assert final.held == 0
    assert final.used <= max(below, changes[2].committed)

    # Each answered request was charged once, to a hold of its own, at most the hold's
    # amount; the counters equal the ledger.
    entries = list(LedgerEntry.objects.filter(api_key=key))
    amounts = {hold.id: hold.amount for hold in holds}
    assert len({e.hold_id for e in entries}) == len(entries) == traffic.count(200) + 1  # slow
    assert all(e.credits <= amounts[e.hold_id] for e in entries)
    assert sum(e.credits for e in entries) == final.used
    assert counters_reconcile() == []

    answers = traffic.answers
    # A request sent after the lowering and answered before the raise was told what is left
    # under the lowered limit.
    lowered_at, raised_at = changes[0].at.timestamp(), changes[1].at.timestamp()
    told = [a for a in answers if a.status == 200 and lowered_at < a.sent < a.answered < raised_at]
    assert len(told) >= 5
    assert all(a.remaining <= above - changes[0].used for a in told), told

    # Every refusal was the key's monthly limit; nothing sent after the cut's UPDATE (so
    # placed after its commit) got through.
    refusals = [a for a in answers if a.status != 200]
    assert {(a.status, a.code) for a in refusals} == {(429, "insufficient_quota")}
    assert all(a.message.startswith(Limit.KEY_MONTHLY.label) for a in refusals), refusals[:3]
    assert traffic.count(200, since=changes[2].at.timestamp()) == 0
