"""Anvil's reports benchmark (issue 5): the grant page and the usage API at 10k, 100k and 1M
ledger rows.

    make bench-reports             # or: .venv/bin/python -m bench.reports [options]

It recreates its own PostgreSQL database (anvil_bench_reports), migrates it and builds a
realistic world: 4 grants of 5 to 20 keys (50 keys), 5 models, 90 days of traffic weighted to
working hours and weekdays in Europe/Warsaw, a few heavy keys and many light ones. For each size
it COPYs the missing ledger rows in, rolls them up (timed), leaves a tail of 200 rows not rolled
up yet (as between two beats of the rollup), runs VACUUM ANALYZE as autovacuum would, and then
prints the median of several runs of:

- the grant page (Django's test client, GET as the grant's manager; all its queries and template
  rendering, no HTTP server);
- the report selectors the page calls, one by one: this month's daily series, the monthly
  series since the grant began, this month by model, the members table;
- ``GET /api/v1/usage`` with a real API key of that grant.

Target: the grant page in at most 300 ms at 1M rows; the exit status is 1 when it is slower.
Only loopback databases are accepted. No Redis: the cache is in-process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

if __package__ in (None, ""):  # run as a file: python bench/reports.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

clock = time.perf_counter
TAIL = 200  # rows settled since the last rollup (it runs every minute)
MINUTE = dt.timedelta(minutes=1)
DAYS = 90
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# Relative traffic per local hour of the day: quiet nights, busy working hours.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 1, 2, 4, 8, 10, 10, 10, 8, 10, 10, 10, 8, 6, 4, 3, 3, 2, 2, 1]
MODELS = [  # name, prompt price, completion price (credits per 1M tokens)
    ("chat-small", "0.5", "1.5"),
    ("chat-large", "3", "9"),
    ("code-medium", "1", "3"),
    ("embed-small", "0.1", "0"),
    ("vision-medium", "2", "6"),
]
GRANT_KEYS = [20, 15, 10, 5]


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reports", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--database-url", default="postgresql://postgres@127.0.0.1:5432/anvil_bench_reports",
        help="recreated from scratch: a database of its own")  # fmt: skip
    add(
        "--sizes",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[10_000, 100_000, 1_000_000],
    )
    add("--runs", type=int, default=9, help="timed runs per figure (the median is shown)")
    add("--target-ms", type=float, default=300.0, help="the grant page at the largest size")
    add("--seed", type=int, default=5)
    return parser.parse_args(argv)


def database_reset(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"Refusing a database that is not on this machine: {parts.hostname}")
    name = parts.path.lstrip("/")
    server = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def django_setup(url: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=url,
        DEBUG="false",
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="WARNING",
    )
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789")
    os.environ.setdefault("API_KEY_PEPPER", "bench-pepper-not-for-production-0123456789")
    os.environ.pop("REDIS_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


class World:
    """Users, teams, grants, keys and models of the benchmark; ``grant`` is the one measured."""

    def __init__(self, rng: random.Random) -> None:
        from decimal import Decimal

        from django.utils import timezone

        from apps.accounts.models import User
        from apps.catalog.models import Backend, CatalogModel, Kind
        from apps.grants.models import Grant
        from apps.keys.models import ApiKey
        from apps.keys.services import api_key_create
        from apps.teams.models import Membership, Role, Team

        backend = Backend.objects.create(name="bench", base_url="http://127.0.0.1:9/v1")
        self.models = [
            CatalogModel.objects.create(
                name=name, backend=backend, upstream_model=f"org/{name}", context_window=8192,
                kind=Kind.EMBEDDING if name.startswith("embed") else Kind.CHAT,
                prompt_price=Decimal(prompt), completion_price=Decimal(completion),
            )
            for name, prompt, completion in MODELS
        ]  # fmt: skip
        today, self.keys, self.grants = timezone.localdate(), [], []
        for number, key_count in enumerate(GRANT_KEYS):
            team = Team.objects.create(name=f"team-{number}")
            grant = Grant.objects.create(
                team=team, identifier=f"bench-grant-{number}", credits_allocated=Decimal(10**9),
                valid_from=today - dt.timedelta(days=DAYS + 10),
                valid_until=today + dt.timedelta(days=265),
            )  # fmt: skip
            grant.allowed_models.set(self.models)
            self.grants.append(grant)
            manager = User.objects.create_user(username=f"manager-{number}", password=None)
            Membership.objects.create(team=team, user=manager, role=Role.MANAGER)
            members = [
                User.objects.create_user(username=f"member-{number}-{n}", password=None)
                for n in range(key_count // 2 + 1)
            ]
            Membership.objects.bulk_create(
                [Membership(team=team, user=member, role=Role.MEMBER) for member in members]
            )
            for n in range(key_count):
                owner = members[n % len(members)]
                if number == 0 and n == 0:
                    key, self.secret = api_key_create(grant=grant, owner=owner, name="bench-api")
                else:
                    key = ApiKey.objects.create(
                        grant=grant, owner=owner, name=f"key-{n}", lookup_prefix=f"b{number}k{n}",
                        digest="x" * 64, expires_at=timezone.now() + dt.timedelta(days=30),
                    )  # fmt: skip
                self.keys.append(key)
            if number == 0:
                self.manager = manager
        self.grant = self.grants[0]
        # A few heavy keys, many light ones; each key sticks to one to three models.
        rng.shuffle(self.keys)
        self.key_weights = [1 / (rank + 1) ** 0.9 for rank in range(len(self.keys))]
        self.key_models = {key.pk: rng.sample(self.models, rng.randint(1, 3)) for key in self.keys}


def working_moments(rng: random.Random, count: int, *, end) -> list[dt.datetime]:
    """``count`` moments in the ``DAYS`` days before ``end``, weighted to working hours and
    weekdays on the local clock."""
    import zoneinfo

    from django.conf import settings

    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    local_end = end.astimezone(zone)
    dates = [(local_end - dt.timedelta(days=d)).date() for d in range(DAYS)]
    weights = [0.3 if date.weekday() >= 5 else 1 for date in dates]
    moments = []
    for date, hour in zip(
        rng.choices(dates, weights=weights, k=count),
        rng.choices(range(24), weights=HOUR_WEIGHTS, k=count),
        strict=True,
    ):
        clock_time = dt.time(hour, rng.randrange(60), rng.randrange(60))
        moment = dt.datetime.combine(date, clock_time, zone).astimezone(dt.UTC)
        moments.append(moment if moment < end else moment - dt.timedelta(days=1))
    return moments


def recent_moments(rng: random.Random, count: int, *, end, seconds: int) -> list[dt.datetime]:
    return [end - dt.timedelta(seconds=rng.uniform(0, seconds)) for _ in range(count)]


def ledger_rows(world: World, rng: random.Random, moments: list[dt.datetime]):
    """A ledger row (as COPY columns) per moment: a key by weight, one of its models, tokens."""
    from apps.usage.credits import credits_for
    from apps.usage.periods import period_for

    keys = rng.choices(world.keys, weights=world.key_weights, k=len(moments))
    for created, key in zip(moments, keys, strict=True):
        model = rng.choice(world.key_models[key.pk])
        prompt = int(rng.expovariate(1 / 900)) + 1
        completion = 0 if model.name.startswith("embed") else int(rng.expovariate(1 / 300))
        credits = credits_for(prompt_tokens=prompt, completion_tokens=completion,
                              prompt_price=model.prompt_price,
                              completion_price=model.completion_price)  # fmt: skip
        yield (
            created, key.pk, key.owner_id, key.grant_id, model.pk, period_for(created), prompt,
            completion, credits, "ok", rng.randrange(50, 4000), rng.random() < 0.02, False, False,
        )  # fmt: skip


COLUMNS = (
    "created, api_key_id, user_id, grant_id, model_id, period, prompt_tokens, completion_tokens,"
    " credits, outcome, latency_ms, estimated, capped, rolled_up"
)


def ledger_copy(rows) -> int:
    from django.db import connection, transaction

    copied = 0
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY usage_ledgerentry ({COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                copied += 1
    return copied


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) usage_ledgerentry, usage_usagebucket")


def median_ms(function, runs: int) -> float:
    function()  # warm-up: caches, prepared plans
    times = []
    for _ in range(runs):
        started = clock()
        function()
        times.append((clock() - started) * 1000)
    return statistics.median(times)


def measurements(world: World, runs: int) -> dict[str, float]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from apps.usage import reports
    from apps.usage.periods import period_for

    grant, period = world.grant, period_for()
    first_day = dt.date(int(period[:4]), int(period[5:]), 1)
    today = dt.date.today()
    page, api = Client(), Client(HTTP_AUTHORIZATION=f"Bearer {world.secret}")
    page.force_login(world.manager)
    url = reverse("consumption:grant", args=[grant.public_id])

    def get(client, path):
        def run():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)

        return run

    selectors = {
        "series by day (this month)": lambda: reports.grant_usage_series(
            grant=grant, granularity="day", start=first_day, end=today
        ),
        "series by month (since start)": lambda: reports.grant_usage_series(
            grant=grant, granularity="month", start=grant.valid_from, end=today
        ),
        "by model (this month)": lambda: reports.grant_usage_by_model(grant=grant, period=period),
        "by member (month + ever)": lambda: reports.grant_usage_by_member(
            grant=grant, period=period
        ),
    }

    def all_selectors():
        for selector in selectors.values():
            selector()

    with CaptureQueriesContext(connection) as queries:
        get(page, url)()
    figures = {f"grant page (GET, {len(queries)} queries)": median_ms(get(page, url), runs)}
    figures |= {name: median_ms(selector, runs) for name, selector in selectors.items()}
    figures["the four selectors together"] = median_ms(all_selectors, runs)
    figures["GET /api/v1/usage"] = median_ms(get(api, "/api/v1/usage"), runs)
    return figures


def counts(world: World) -> dict[str, int]:
    from apps.usage.models import LedgerEntry, UsageBucket

    return {
        "ledger": LedgerEntry.objects.count(),
        "tail": LedgerEntry.objects.filter(rolled_up=False).count(),
        "buckets": UsageBucket.objects.count(),
        "grant ledger": LedgerEntry.objects.filter(grant=world.grant).count(),
        "grant buckets": UsageBucket.objects.filter(grant=world.grant).count(),
    }


def grow(world: World, rng: random.Random, size: int, end) -> tuple[float, int, float]:
    """Bring the ledger to ``size`` rows: COPY, roll up, then a fresh unrolled tail."""
    from apps.usage.models import LedgerEntry
    from apps.usage.rollup import ledger_rollup

    missing = size - LedgerEntry.objects.count() - TAIL
    started = clock()
    ledger_copy(ledger_rows(world, rng, working_moments(rng, missing, end=end - MINUTE)))
    copy_seconds = clock() - started
    started = clock()
    rolled = ledger_rollup()
    rollup_seconds = clock() - started
    vacuum_analyze()
    ledger_copy(ledger_rows(world, rng, recent_moments(rng, TAIL, end=end, seconds=60)))
    return copy_seconds, rolled, rollup_seconds


def table(size: int, sizes: dict, copy_seconds: float, rolled: int, rollup_seconds: float,
          figures: dict, runs: int) -> str:  # fmt: skip
    lines = [
        f"== {size:,} ledger rows ==",
        f"ledger {sizes['ledger']:,} rows ({sizes['tail']} not rolled up yet), buckets "
        f"{sizes['buckets']:,}; measured grant: {sizes['grant ledger']:,} rows in "
        f"{sizes['grant buckets']:,} buckets",
        f"COPY {copy_seconds:.1f} s; rollup {rolled:,} rows in {rollup_seconds:.1f} s "
        f"({rolled / max(rollup_seconds, 1e-9):,.0f} rows/s)",
        f"{'median of ' + str(runs) + ' runs':<34}{'ms':>9}",
    ]
    lines += [f"  {name:<32}{ms:>9.1f}" for name, ms in figures.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = arguments(argv)
    database_reset(options.database_url)
    django_setup(options.database_url)
    from django.utils import timezone

    rng = random.Random(options.seed)
    world = World(rng)
    end = timezone.now()
    page_ms = 0.0
    for size in sorted(options.sizes):
        copy_seconds, rolled, rollup_seconds = grow(world, rng, size, end)
        figures = measurements(world, options.runs)
        print(table(size, counts(world), copy_seconds, rolled, rollup_seconds, figures,
                    options.runs), flush=True)  # fmt: skip
        print()
        page_ms = next(iter(figures.values()))  # the grant page
    largest = max(options.sizes)
    verdict = "PASS" if page_ms <= options.target_ms else "FAIL"
    print(f"{verdict}: grant page {page_ms:.1f} ms at {largest:,} rows "
          f"(target ≤ {options.target_ms:.0f} ms)")  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
