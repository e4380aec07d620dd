"""Requests from several gateway processes racing for one budget: the budgets, and what must
hold afterwards. Shared by ``apps/gateway/tests/test_scale_out.py`` (two servers in the suite)
and ``make bench --workers N`` (``bench/world.py``: uvicorn's workers, then independent
servers), which each send the requests their own way.

For each of the four budgets (the grant's allocation, the key's total limit, the key's monthly
limit, the member's monthly limit in the grant) a grant and key of their own, with that budget
set so that only some of the requests fit (about a third of 200 chat requests, "Hi" with
max_tokens 20, on a model priced ``PRICE``) and every other budget far above what a race spends.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from apps.catalog.models import CatalogModel
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from apps.limits.services import member_limit_set
from apps.usage.exceptions import Limit
from apps.usage.models import KeyMonthCounter, LedgerEntry, MemberMonthCounter, Outcome

REQUESTS = 200
BUDGETS = ["grant", "key_total", "key_monthly", "member_monthly"]
# 0.001 credits a token; a request ("Hi", max_tokens 20) is charged a few hundredths of a
# credit and holds a little more, so about a third of the requests fit (52-84 of 202 in
# make bench --workers 2).
PRICE = Decimal("1000")
BUDGET = Decimal("1.5")
OPEN = Decimal("1000")  # the budgets not under test: far above what a run spends
BODY = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}


@dataclass(frozen=True)
class Race:
    which: str
    grant: Grant
    key: ApiKey
    secret: str


@dataclass(frozen=True)
class Answer:
    server: int  # which process it was sent to (an index, or a process id)
    status: int
    charged: Decimal | None = None  # X-Anvil-Credits-Charged
    code: str | None = None
    message: str = ""


def race_create(*, team, owner, manager, model: CatalogModel, which: str, tag: str = "") -> Race:
    """A grant of ``team`` and a key of ``owner``'s in it, with ``which`` the one budget that
    binds (``manager`` sets the member's limit)."""
    today = timezone.localdate()
    grant = Grant.objects.create(
        team=team,
        identifier=f"scale-out-{tag}{which.replace('_', '-')}",
        credits_allocated=BUDGET if which == "grant" else OPEN,
        valid_from=today - dt.timedelta(days=30),
        valid_until=today + dt.timedelta(days=335),
    )
    grant.allowed_models.add(model)
    key, secret = api_key_create(
        grant=grant,
        owner=owner,
        name=f"scale-out {tag}{which}",
        total_limit=BUDGET if which == "key_total" else None,
        monthly_limit=BUDGET if which == "key_monthly" else None,
    )
    if which == "member_monthly":
        member_limit_set(grant=grant, user=owner, monthly_limit=BUDGET, changed_by=manager)
    return Race(which, grant, key, secret)


def race_spent(race: Race) -> tuple[Decimal, Decimal]:
    """The binding budget's used and held counters, as PostgreSQL has them now."""
    if race.which == "grant":
        grant = Grant.objects.get(pk=race.grant.pk)
        return grant.credits_used, grant.credits_held
    if race.which == "key_total":
        key = ApiKey.objects.get(pk=race.key.pk)
        return key.credits_used, key.credits_held
    if race.which == "key_monthly":
        counter = KeyMonthCounter.objects.get(api_key=race.key)
    else:
        counter = MemberMonthCounter.objects.get(grant=race.grant, user=race.key.owner)
    return counter.used, counter.held


def race_problems(race: Race, answers: list[Answer]) -> list[str]:
    """What went wrong in a finished race (every hold of its key ended): nothing, or the
    figures that show it."""
    statuses = dict(Counter((a.server, a.status, a.code) for a in answers))
    used, held = race_spent(race)
    problems = []
    if used > BUDGET:
        problems.append(f"overshoot: {used} spent of {BUDGET}")
    if held != 0:
        problems.append(f"{held} still held")
    # Each request was answered and charged, or refused for want of credits in the budget
    # under test.
    if {(a.status, a.code) for a in answers} != {(200, None), (429, "insufficient_quota")}:
        problems.append(f"answers other than 200 and 429 insufficient_quota: {statuses}")
    label = Limit(race.which).label
    if not all(a.message.startswith(label) for a in answers if a.status == 429):
        problems.append(f"a 429 not naming {label!r}")
    # Every process admitted requests and every one refused some: they raced for the budget.
    servers = {a.server for a in answers}
    for status in (200, 429):
        if {a.server for a in answers if a.status == status} != servers:
            problems.append(f"not every process answered {status}: {statuses}")
    # A good part of the budget was spent before the refusals.
    if used <= BUDGET / 2:
        problems.append(f"only {used} of {BUDGET} spent")
    # Each answered request is one ok ledger row of its key, charged what it was told; nothing
    # else is charged.
    entries = LedgerEntry.objects.filter(api_key=race.key)
    charged = sorted(a.charged for a in answers if a.status == 200)
    if not all(credits > 0 for credits in charged):
        problems.append("an answer charged nothing")
    if sorted(e.credits for e in entries) != charged:
        problems.append(f"{len(entries)} ledger rows for {len(charged)} answers, or other credits")
    if {e.outcome for e in entries} != {Outcome.OK}:
        problems.append(f"ledger outcomes {sorted({e.outcome for e in entries})}")
    if sum(charged) != used:
        problems.append(f"answers charged {sum(charged)}, the counter says {used}")
    return problems
