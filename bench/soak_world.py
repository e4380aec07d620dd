"""The soak's data, written, changed and read through Anvil's own services (Django, in the
soak's process, with the soak's environment; ``bench/soak.py`` sets it up).

- ``setup``: a catalog of seven models on the development backend (fast, slow, stalling,
  dropping, failing, usage-less, embeddings), one team of eight members and a manager, two
  grants (``soak-main``, and ``soak-pool`` whose allocation is lowered), every member with a
  monthly limit in both, and API keys with and without key limits.
- ``limit_change``: one limit lowered (or, now and then, raised again), through the service
  the portal uses for it, and what the budget had used and held right after it.
- ``revoke``: a key revoked as the portal revokes it.
- ``facts``: after the run, the ledger, the open holds and the counters' reconciliation.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace

# Prices per 1M tokens: a request costs about 0.01-0.2 credits, a hold without max_tokens
# (the whole context window) about 12.
PROMPT_PRICE, COMPLETION_PRICE = 1000, 3000
# name: (upstream model on the development backend, kind, max_concurrency, queue_size)
MODELS = {
    "soak-chat": ("soak-chat", "chat", 64, 128),
    "soak-slow": ("soak-chat@latency-ms=300,tokens-per-second=80", "chat", 8, 8),
    "soak-stall": ("soak-chat@fault=stall-after:3", "chat", 16, 32),
    "soak-drop": ("soak-chat@fault=drop-after:5", "chat", 32, 64),
    "soak-fail": ("soak-chat@fault=error-500", "chat", 32, 64),
    "soak-nousage": ("soak-chat@fault=no-usage", "chat", 64, 128),
    "soak-embed": ("soak-embed", "embedding", 64, 128),
}
MEMBERS = 8
START_LIMIT = Decimal(100_000)  # every budget with a limit starts far from it
RAISES = 0.25  # the share of changes to a budget lowered before that raise it again
KINDS = ("key_total", "key_monthly", "member_monthly", "grant")


@dataclass(frozen=True)
class Key:
    index: int
    id: int
    secret: str
    grant_id: int
    owner_id: int


@dataclass(frozen=True)
class Budget:
    """One of the four budgets: ("key_total", key_id), ("key_monthly", key_id),
    ("member_monthly", grant_id, user_id) or ("grant", grant_id)."""

    kind: str
    owner: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.kind} {'/'.join(map(str, self.owner))}"


@dataclass(frozen=True)
class LimitChange:
    budget: Budget
    at: float  # seconds into the run
    limit: Decimal  # the new limit
    before: Decimal  # the limit it replaced
    held_in: list[Decimal]  # used + held, read right after the change (and once more later)
    in_use_before: Decimal = Decimal(0)  # used + held, read right before the change

    @property
    def raised(self) -> bool:
        return self.limit > self.before


def _catalog(url: str) -> str:
    lines = ["backends:", "  - name: soak-devbackend", f"    base_url: {url}", "models:"]
    for name, (upstream, kind, concurrency, queue) in MODELS.items():
        lines += [
            f"  - name: {name}",
            "    backend: soak-devbackend",
            f'    upstream_model: "{upstream}"',
            f"    kind: {kind}",
            f"    prompt_price: {PROMPT_PRICE}",
            f"    completion_price: {COMPLETION_PRICE}",
            "    context_window: 4096",
            f"    max_concurrency: {concurrency}",
            f"    queue_size: {queue}",
        ]
    return "\n".join(lines) + "\n"


def setup(*, backend_url: str, keys: int) -> list[Key]:
    """The world; key ``i`` belongs to member ``i % 8``, in ``soak-pool`` when ``i % 5 == 4``,
    with both key limits when ``i % 3 != 0``."""
    from django.utils import timezone

    from apps.accounts.models import User
    from apps.catalog.models import CatalogModel
    from apps.catalog.services import catalog_load, catalog_parse
    from apps.grants.models import Grant
    from apps.keys.services import api_key_create
    from apps.limits.services import member_limits_change_all
    from apps.teams.models import Role, Team
    from apps.teams.services import membership_create

    catalog_load(data=catalog_parse(text=_catalog(backend_url)), deactivate_missing=False)
    team = Team.objects.create(name="soak-team")
    manager = User.objects.create_user(username="soak-manager", is_staff=True)
    membership_create(team=team, user=manager, role=Role.MANAGER)
    members = [User.objects.create_user(username=f"soak-member-{i}") for i in range(MEMBERS)]
    for member in members:
        membership_create(team=team, user=member)
    today = timezone.localdate()
    grants = [
        Grant.objects.create(
            team=team, identifier=identifier, credits_allocated=Decimal(10**9),
            valid_from=today - dt.timedelta(days=1), valid_until=today + dt.timedelta(days=30),
        )
        for identifier in ("soak-main", "soak-pool")
    ]  # fmt: skip
    for grant in grants:
        grant.allowed_models.add(*CatalogModel.objects.filter(name__in=MODELS))
        member_limits_change_all(grant=grant, monthly_limit=START_LIMIT, changed_by=manager)
    made = []
    for i in range(keys):
        limit = START_LIMIT if i % 3 else None
        key, secret = api_key_create(
            grant=grants[1] if i % 5 == 4 else grants[0], owner=members[i % MEMBERS],
            name=f"soak-{i}", expires_at=timezone.now() + dt.timedelta(days=1),
            monthly_limit=limit, total_limit=limit,
        )  # fmt: skip
        made.append(Key(i, key.id, secret, key.grant_id, key.owner_id))
    return made


def targets(keys: list[Key]) -> list[Budget]:
    """The budgets the run lowers: key limits of keys that have them, members' monthly limits
    in soak-main, soak-pool's allocation."""
    limited = [k for k in keys if k.index % 3]
    main = keys[0].grant_id
    pool = next(k.grant_id for k in keys if k.grant_id != main)
    owners = sorted({k.owner_id for k in keys if k.grant_id == main})
    return [
        *(Budget("key_total", (k.id,)) for k in limited if k.index % 3 == 1),
        *(Budget("key_monthly", (k.id,)) for k in limited if k.index % 3 == 2),
        *(Budget("member_monthly", (main, owner)) for owner in owners),
        Budget("grant", (pool,)),
    ]


def state(budget: Budget) -> tuple[Decimal | None, Decimal, Decimal]:
    """(limit, used, held) of a budget, from its counters."""
    from apps.grants.models import Grant
    from apps.keys.models import ApiKey
    from apps.limits.models import MemberLimit
    from apps.usage.models import KeyMonthCounter, MemberMonthCounter
    from apps.usage.periods import period_for

    zero = (Decimal(0), Decimal(0))
    if budget.kind == "key_total":
        key = ApiKey.objects.get(pk=budget.owner[0])
        return key.total_limit, key.credits_used, key.credits_held
    if budget.kind == "key_monthly":
        key = ApiKey.objects.get(pk=budget.owner[0])
        row = KeyMonthCounter.objects.filter(api_key=key, period=period_for())
        return key.monthly_limit, *(row.values_list("used", "held").first() or zero)
    if budget.kind == "member_monthly":
        grant_id, user_id = budget.owner
        limit = MemberLimit.objects.get(grant_id=grant_id, user_id=user_id).monthly_limit
        row = MemberMonthCounter.objects.filter(
            grant_id=grant_id, user_id=user_id, period=period_for()
        )
        return limit, *(row.values_list("used", "held").first() or zero)
    grant = Grant.objects.get(pk=budget.owner[0])
    return grant.credits_allocated, grant.credits_used, grant.credits_held


def limit_change(budget: Budget, *, rng: random.Random, at: float) -> LimitChange:
    """Lower the budget's limit to about what it has used and holds (below what it has used,
    so requests admitted before spend past it; within what it holds; or up to a credit
    above, so a few more are admitted up to it), or now and then raise one lowered before
    by a few credits (so its keys work again), as its manager would: key limits with
    ``api_key_change_limits``, a member's with ``member_limit_change``, the grant's
    allocation as the admin saves it."""
    before, used, held = state(budget)
    in_use_before = used + held
    if before < START_LIMIT and rng.random() < RAISES:
        target = used + held + Decimal(rng.uniform(3.0, 10.0))
    else:  # below what is used, within what is held, or up to a credit above both
        low, high = rng.choice([(-0.5, 0.0), (0.0, float(held)), (float(held), float(held) + 1)])
        target = min(before, used + Decimal(rng.uniform(low, high)))
    limit = max(Decimal(0), target).quantize(Decimal("0.000001"))
    _apply(budget, limit)
    _, used, held = state(budget)
    return LimitChange(budget, at, limit, before, [used + held], in_use_before)


def _apply(budget: Budget, limit: Decimal) -> None:
    from apps.accounts.models import User
    from apps.grants.models import Grant
    from apps.keys.models import ApiKey
    from apps.keys.services import api_key_change_limits
    from apps.limits.services import member_limit_change

    manager = User.objects.get(username="soak-manager")
    if budget.kind in ("key_total", "key_monthly"):
        key = ApiKey.objects.get(pk=budget.owner[0])
        total = limit if budget.kind == "key_total" else key.total_limit
        monthly = limit if budget.kind == "key_monthly" else key.monthly_limit
        api_key_change_limits(key=key, monthly_limit=monthly, total_limit=total, actor=manager)
    elif budget.kind == "member_monthly":
        grant = Grant.objects.get(pk=budget.owner[0])
        user = User.objects.get(pk=budget.owner[1])
        member_limit_change(grant=grant, user=user, monthly_limit=limit, changed_by=manager)
    else:
        _grant_allocate(budget.owner[0], limit, manager)


def _grant_allocate(grant_id: int, credits: Decimal, manager) -> None:
    """What the admin's change form does when a manager saves a new allocation: the object
    read, changed and saved by ``GrantAdmin.save_model`` in one transaction."""
    from django.contrib import admin
    from django.db import transaction

    from apps.grants.models import Grant

    model_admin = admin.site._registry[Grant]
    with transaction.atomic():
        grant = Grant.objects.get(pk=grant_id)
        grant.credits_allocated = credits
        form = SimpleNamespace(changed_data=["credits_allocated"])
        model_admin.save_model(SimpleNamespace(user=manager), grant, form, change=True)


def revoke(key_id: int) -> None:
    from apps.accounts.models import User
    from apps.keys.models import ApiKey
    from apps.keys.services import api_key_revoke

    manager = User.objects.get(username="soak-manager")
    api_key_revoke(key=ApiKey.objects.get(pk=key_id), actor=manager, reason="soak")


def open_holds() -> int:
    from apps.usage.models import Hold

    return Hold.objects.count()


def open_holds_by_model() -> dict[str, int]:
    from django.db.models import Count

    from apps.usage.models import Hold

    rows = Hold.objects.values_list("model__name").annotate(n=Count("id")).order_by()
    return dict(rows)


def sweep() -> int:
    """The sweeper's service, as its beat task runs it: holds past their expiry released."""
    from apps.usage.services import holds_sweep

    return holds_sweep()


@dataclass
class Facts:
    rows: dict[tuple[int, str], list[tuple[Decimal, str]]]  # (key id, model) → (credits, outcome)
    open_holds: dict[str, int]  # model → holds still open
    mismatches: list[str]
    used: dict[Budget, Decimal]  # from the ledger, per lowered or limited budget
    limits: dict[Budget, Decimal]  # the limit each budget ends with


def facts(budgets: list[Budget]) -> Facts:
    from apps.usage.models import LedgerEntry
    from apps.usage.reconcile import counters_reconcile

    rows: dict[tuple[int, str], list[tuple[Decimal, str]]] = {}
    entries = LedgerEntry.objects.values_list("api_key_id", "model__name", "credits", "outcome")
    for key_id, model, credits, outcome in entries.iterator():
        rows.setdefault((key_id, model), []).append((credits, outcome))
    mismatches = [
        f"{m.counter} {m.owner} {m.field}: {m.recorded} != {m.expected}"
        for m in counters_reconcile()
    ]
    return Facts(
        rows=rows,
        open_holds=open_holds_by_model(),
        mismatches=mismatches,
        used={budget: _ledger_used(budget) for budget in budgets},
        limits={budget: state(budget)[0] for budget in budgets},
    )


def _ledger_used(budget: Budget) -> Decimal:
    """What the ledger charged to a budget (this month, for the monthly ones)."""
    from django.db.models import Sum

    from apps.usage.models import LedgerEntry
    from apps.usage.periods import period_for

    rows = LedgerEntry.objects.all()
    if budget.kind == "key_total":
        rows = rows.filter(api_key_id=budget.owner[0])
    elif budget.kind == "key_monthly":
        rows = rows.filter(api_key_id=budget.owner[0], period=period_for())
    elif budget.kind == "member_monthly":
        grant_id, user_id = budget.owner
        rows = rows.filter(grant_id=grant_id, user_id=user_id, period=period_for())
    else:
        rows = rows.filter(grant_id=budget.owner[0])
    return rows.aggregate(total=Sum("credits"))["total"] or Decimal(0)
