"""The benchmark's data, written and checked through Anvil's own services.

    python -m bench.world setup --backend-url http://127.0.0.1:PORT/v1
        → {"secret": "<API key>", "chat_model": ..., "stream_model": ...}
    python -m bench.world check
        → {"ledger_rows": n, "ledger_ok": n, "open_holds": n, "mismatches": [...]}

and for ``--workers N``'s checks across processes (``bench/scale_out.py``), ``TAG`` naming
one topology's data:

    python -m bench.world scale-out --tag TAG
        → {"races": {"secrets": {budget: secret}, "requests": n, "budget": "…"},
           "fair": [secret, secret], "limited": secret,
           "revoke": {"id": n, "secret": ...}}
    python -m bench.world races-check --tag TAG --answers FILE
        → {"races": {budget: {"problems": [...], "spent": "…"}}, "budget": "…",
           "mismatches": [...]}
    python -m bench.world revoke --id N

Run with the benchmark's environment (DATABASE_URL, REDIS_URL, SECRET_KEY, API_KEY_PEPPER);
``bench/gateway.py`` does that. Each prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from decimal import Decimal

CHAT_MODEL = "bench-chat"
STREAM_MODEL = "bench-stream"
# The development backend reads pacing from the model name: 1000 tokens/s, one token per ms.
STREAM_UPSTREAM = "bench-chat@tokens-per-second=1000"
# --workers N's checks across processes: a model for the budget races (priced so that a race's
# budget runs out, tests/budget_races.py), one of two slots on a slow backend, and one slot
# for the fair queue.
RACE_MODEL, LIMITED_MODEL, FAIR_MODEL = "bench-race", "bench-limited", "bench-fair"
LIMITED_CONCURRENCY = 2
CATALOG = """
backends:
  - name: bench-devbackend
    base_url: {url}
models:
  - name: {chat}
    backend: bench-devbackend
    kind: chat
    prompt_price: 0.5
    completion_price: 1.5
    context_window: 8192
    max_concurrency: 128
    queue_size: 256
  - name: {stream}
    backend: bench-devbackend
    upstream_model: "{stream_upstream}"
    kind: chat
    prompt_price: 0.5
    completion_price: 1.5
    context_window: 8192
    max_concurrency: 128
    queue_size: 256
  - name: {race}
    backend: bench-devbackend
    upstream_model: "bench-chat@latency-ms=20"
    kind: chat
    prompt_price: {race_price}
    completion_price: {race_price}
    context_window: 8192
    max_concurrency: 256
    queue_size: 256
  - name: {limited}
    backend: bench-devbackend
    upstream_model: "bench-chat@latency-ms=100"
    kind: chat
    prompt_price: 0.5
    context_window: 8192
    max_concurrency: {limited_concurrency}
    queue_size: 256
  - name: {fair}
    backend: bench-devbackend
    upstream_model: "bench-chat@latency-ms=50"
    kind: chat
    prompt_price: 0.5
    context_window: 8192
    max_concurrency: 1
    queue_size: 256
"""


def setup(*, backend_url: str) -> dict:
    from django.utils import timezone

    from apps.accounts.models import User
    from apps.catalog.models import CatalogModel
    from apps.catalog.services import catalog_load, catalog_parse
    from apps.grants.models import Grant
    from apps.keys.services import api_key_create
    from apps.teams.models import Membership, Role, Team
    from tests.budget_races import PRICE

    text = CATALOG.format(
        url=backend_url,
        chat=CHAT_MODEL,
        stream=STREAM_MODEL,
        stream_upstream=STREAM_UPSTREAM,
        race=RACE_MODEL,
        race_price=PRICE,
        limited=LIMITED_MODEL,
        limited_concurrency=LIMITED_CONCURRENCY,
        fair=FAIR_MODEL,
    )
    catalog_load(data=catalog_parse(text=text), deactivate_missing=False, dry_run=False)
    user = User.objects.create_user(username="bench-user", email="bench@example.org")
    team = Team.objects.create(name="bench-team")
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    today = timezone.localdate()
    grant = Grant.objects.create(
        team=team,
        identifier="bench-grant",
        credits_allocated=Decimal("1000000000"),
        valid_from=today - dt.timedelta(days=1),
        valid_until=today + dt.timedelta(days=30),
    )
    grant.allowed_models.add(*CatalogModel.objects.filter(name__in=[CHAT_MODEL, STREAM_MODEL]))
    _, secret = api_key_create(
        grant=grant,
        owner=user,
        name="bench",
        expires_at=timezone.now() + dt.timedelta(days=1),
    )
    return {"secret": secret, "chat_model": CHAT_MODEL, "stream_model": STREAM_MODEL}


def _grant(identifier: str, *models: str):
    """A grant of the bench team with a large allocation, allowed ``models``."""
    from django.utils import timezone

    from apps.catalog.models import CatalogModel
    from apps.grants.models import Grant
    from apps.teams.models import Team

    today = timezone.localdate()
    grant = Grant.objects.create(
        team=Team.objects.get(name="bench-team"),
        identifier=identifier,
        credits_allocated=Decimal("1000000"),
        valid_from=today - dt.timedelta(days=1),
        valid_until=today + dt.timedelta(days=30),
    )
    grant.allowed_models.add(*CatalogModel.objects.filter(name__in=models))
    return grant


def _key(grant, name: str):
    from apps.accounts.models import User
    from apps.keys.services import api_key_create

    return api_key_create(grant=grant, owner=User.objects.get(username="bench-user"), name=name)


def scale_out(*, tag: str) -> dict:
    """One topology's data: a grant and key per budget race, two grants (one floods) on the
    one-slot model, a key on the two-slot model and a key to revoke."""
    from apps.accounts.models import User
    from apps.catalog.models import CatalogModel
    from apps.teams.models import Team
    from tests.budget_races import BUDGET, BUDGETS, REQUESTS, race_create

    user = User.objects.get(username="bench-user")
    secrets = {
        which: race_create(
            team=Team.objects.get(name="bench-team"),
            owner=user,
            manager=user,
            model=CatalogModel.objects.get(name=RACE_MODEL),
            which=which,
            tag=f"{tag}-",
        ).secret
        for which in BUDGETS
    }
    fair = [_key(_grant(f"bench-{tag}-fair-{side}", FAIR_MODEL), side)[1] for side in "ab"]
    limited = _key(_grant(f"bench-{tag}-limited", LIMITED_MODEL), "limited")[1]
    key, secret = _key(_grant(f"bench-{tag}-revoke", CHAT_MODEL), "revoke")
    return {
        "races": {"secrets": secrets, "requests": REQUESTS, "budget": str(BUDGET)},
        "fair": fair,
        "limited": limited,
        "revoke": {"id": key.pk, "secret": secret},
    }


def races_check(*, tag: str, answers: dict) -> dict:
    """Once every hold of the races' keys ended (settlements written, ready holds withdrawn
    after GATEWAY_READY_HOLD_SECONDS idle; at most 15 s): each race's problems
    (tests/budget_races.py) and what it spent, and every counter against the ledger."""
    import time

    from apps.grants.models import Grant
    from apps.usage.models import Hold
    from tests.budget_races import BUDGET, Answer, Race, race_problems, race_spent

    races = []
    for which in answers:
        grant = Grant.objects.get(identifier=f"scale-out-{tag}-{which.replace('_', '-')}")
        races.append(Race(which, grant, grant.api_keys.get(), ""))
    deadline = time.monotonic() + 15
    while Hold.objects.filter(api_key__in=[r.key for r in races]).exists():
        if time.monotonic() > deadline:
            break  # race_problems names what is still held
        time.sleep(0.1)
    result = {}
    for race in races:
        seen = [
            Answer(**{**a, "charged": a["charged"] and Decimal(a["charged"])})
            for a in answers[race.which]
        ]
        result[race.which] = {
            "problems": race_problems(race, seen),
            "spent": str(race_spent(race)[0]),
        }
    return {"races": result, "budget": str(BUDGET), "mismatches": check()["mismatches"]}


def revoke(*, key_id: int) -> dict:
    from apps.keys.models import ApiKey
    from apps.keys.services import api_key_revoke

    key = api_key_revoke(key=ApiKey.objects.get(pk=key_id), reason="bench")
    return {"revoked_at": key.revoked_at.isoformat()}


def check() -> dict:
    from apps.usage.models import Hold, LedgerEntry, Outcome
    from apps.usage.reconcile import counters_reconcile

    mismatches = counters_reconcile()
    return {
        "ledger_rows": LedgerEntry.objects.count(),
        "ledger_ok": LedgerEntry.objects.filter(outcome=Outcome.OK).count(),
        "open_holds": Hold.objects.count(),
        "mismatches": [
            f"{m.counter} {m.owner} {m.field}: {m.recorded} != {m.expected}" for m in mismatches
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.world")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup").add_argument("--backend-url", required=True)
    commands.add_parser("check")
    commands.add_parser("scale-out").add_argument("--tag", required=True)
    races = commands.add_parser("races-check")
    races.add_argument("--tag", required=True)
    races.add_argument("--answers", required=True, help="a JSON file: {budget: [answer, …]}")
    commands.add_parser("revoke").add_argument("--id", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    if args.command == "setup":
        result = setup(backend_url=args.backend_url)
    elif args.command == "scale-out":
        result = scale_out(tag=args.tag)
    elif args.command == "races-check":
        with open(args.answers) as file:
            result = races_check(tag=args.tag, answers=json.load(file))
    elif args.command == "revoke":
        result = revoke(key_id=args.id)
    else:
        result = check()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
