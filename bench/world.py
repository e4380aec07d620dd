"""The benchmark's data, written and checked through Anvil's own services.

    python -m bench.world setup --backend-url http://127.0.0.1:PORT/v1
        → {"secret": "<API key>", "chat_model": ..., "stream_model": ...}
    python -m bench.world check
        → {"ledger_rows": n, "ledger_ok": n, "open_holds": n, "mismatches": [...]}

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
"""


def setup(*, backend_url: str) -> dict:
    from django.utils import timezone

    from apps.accounts.models import User
    from apps.catalog.models import CatalogModel
    from apps.catalog.services import catalog_load, catalog_parse
    from apps.grants.models import Grant
    from apps.keys.services import api_key_create
    from apps.teams.models import Membership, Role, Team

    text = CATALOG.format(
        url=backend_url, chat=CHAT_MODEL, stream=STREAM_MODEL, stream_upstream=STREAM_UPSTREAM
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
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    result = setup(backend_url=args.backend_url) if args.command == "setup" else check()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
