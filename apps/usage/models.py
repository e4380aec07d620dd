"""Credit accounting: period-keyed counters, live holds and the append-only ledger.

Four budgets limit a request (SPEC § Credits and limits): the grant pool
(``Grant.credits_allocated``), the key's total limit (``ApiKey.total_limit``), the key's monthly
limit (``ApiKey.monthly_limit`` against ``KeyMonthCounter``) and the member's monthly limit in the
grant (``apps.limits.models.MemberLimit`` against ``MemberMonthCounter``). Every budget has a
``used`` and a ``held`` counter; they change only through ``apps.usage.ledger`` by
conditional UPDATEs, and ``counters_reconcile`` can recompute all of them from ``LedgerEntry``
and ``Hold`` rows.

A period is a calendar month in ``settings.TIME_ZONE`` written "YYYY-MM"; a new month simply has
no counter row yet, so nothing needs resetting.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from apps.catalog.models import PRICE_DIGITS, CatalogModel
from apps.grants.models import CREDIT_DIGITS, Grant
from apps.keys.models import ApiKey

validate_period = RegexValidator(r"^\d{4}-(0[1-9]|1[0-2])$", "A period is written YYYY-MM.")


def period_field() -> models.CharField:
    return models.CharField(max_length=7, validators=[validate_period])


def counter_constraint(model: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=models.Q(used__gte=0, held__gte=0), name=f"usage_{model}_counters_not_negative"
    )


class KeyMonthCounter(models.Model):
    """What a key used and holds in one month; its limit is ``ApiKey.monthly_limit``."""

    api_key = models.ForeignKey(ApiKey, models.CASCADE, related_name="month_counters")
    period = period_field()
    used = models.DecimalField(**CREDIT_DIGITS, default=0)
    held = models.DecimalField(**CREDIT_DIGITS, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "period"], name="usage_keymonthcounter_unique_period_per_key"
            ),
            counter_constraint("keymonthcounter"),
        ]

    def __str__(self) -> str:
        return f"{self.api_key_id} {self.period}: {self.used} used, {self.held} held"


class MemberMonthCounter(models.Model):
    """What a member used and holds in one grant in one month; its limit is
    ``apps.limits.models.MemberLimit``."""

    grant = models.ForeignKey(Grant, models.CASCADE, related_name="member_month_counters")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="+")
    period = period_field()
    used = models.DecimalField(**CREDIT_DIGITS, default=0)
    held = models.DecimalField(**CREDIT_DIGITS, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "user", "period"],
                name="usage_membermonthcounter_unique_period_per_member",
            ),
            counter_constraint("membermonthcounter"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.grant_id} {self.period}: {self.used} used"


class Outcome(models.TextChoices):
    """How a settled request ended. ``EXPIRED`` is only in rows written before the sweeper's
    expiry became a withdrawal (``services.holds_sweep``): an expired hold now leaves no row."""

    OK = "ok", "Completed"
    CLIENT_DISCONNECTED = "client_disconnected", "Client disconnected"
    BACKEND_ERROR = "backend_error", "Backend error"
    BACKEND_TIMEOUT = "backend_timeout", "Backend timeout"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Hold expired unsettled"


class Hold(models.Model):
    """Credits reserved for one request in flight, against all four budgets at once.

    Prices are copied here so the settlement charges what was reserved even if the catalog
    changes meanwhile. A hold that outlives ``expires_at`` belonged to a crashed process and is
    withdrawn by ``services.holds_sweep``.

    The table holds only the requests in flight, a few rows, and every request inserts and
    deletes one: its foreign keys are checked by Django (PROTECT) but have no database
    constraint and no index. The constraints' checks at each hold's commit and the four
    index entries cost about 0.2 ms of the hold's round trip (measured on the gateway's
    reserve function); the rows they would check are the ones the hold has just updated
    (the key, its grant, the member's counter) and the catalog's model, which is protected.
    """

    api_key = models.ForeignKey(
        ApiKey, models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="+", db_constraint=False,
        db_index=False,
    )  # fmt: skip
    grant = models.ForeignKey(
        Grant, models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    model = models.ForeignKey(
        CatalogModel, models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    period = period_field()
    amount = models.DecimalField(**CREDIT_DIGITS)
    prompt_tokens = models.PositiveIntegerField()
    max_completion_tokens = models.PositiveIntegerField()
    prompt_price = models.DecimalField(**PRICE_DIGITS)
    completion_price = models.DecimalField(**PRICE_DIGITS)
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    # The four budgets right after this hold was placed (a selectors.BudgetStatus), when the
    # placement read them (PostgreSQL's async path): the credit headers come from them. Not a
    # column.
    budgets = None
    # The most this hold may be charged when it is less than its amount: a request served
    # from a larger ready hold (apps.usage.ready) pays at most what its own would have held.
    # Not a column.
    cap = None

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gte=0), name="usage_hold_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.pk}: {self.amount} credits"


class LedgerEntry(models.Model):
    """One settled request. Append-only: counters can always be recomputed from these rows.

    ``created`` is when the request was settled; ``period`` is the month its hold was placed
    in, which is the month whose counters it was charged to. ``capped`` marks a request whose
    real cost exceeded its hold and which was charged the hold (see ``ledger.charge``).

    ``rolled_up`` is the one column that ever changes, once, from false to true, when
    ``apps.usage.rollup`` adds the row to its ``UsageBucket``. It is bookkeeping of the rollup,
    not of the accounting: every other column stays as written, because counters, their
    reconciliation and the monthly statements are recomputed from them, and an edited ledger
    would make those proofs worthless. A partial index holds only the rows not yet rolled up,
    so finding that small tail costs nothing however long the ledger grows.
    """

    created = models.DateTimeField(default=timezone.now)
    api_key = models.ForeignKey(ApiKey, models.PROTECT, related_name="+", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="+")
    grant = models.ForeignKey(Grant, models.PROTECT, related_name="+", db_index=False)
    model = models.ForeignKey(CatalogModel, models.PROTECT, related_name="+")
    period = period_field()
    prompt_tokens = models.PositiveIntegerField()
    completion_tokens = models.PositiveIntegerField()
    credits = models.DecimalField(**CREDIT_DIGITS)
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    latency_ms = models.PositiveIntegerField()
    estimated = models.BooleanField(default=False, help_text="Token counts were estimated.")
    capped = models.BooleanField(default=False, help_text="Real cost exceeded the hold.")
    rolled_up = models.BooleanField(
        default=False, db_default=False, editable=False, help_text="Counted in a UsageBucket."
    )
    hold_id = models.BigIntegerField(
        null=True, editable=False, help_text="The hold this row settled."
    )
    # The X-Request-ID the request was answered with (the client's own, or one Anvil made up),
    # so a person can find a request they quote; empty for requests without one (jobs).
    request_id = models.CharField(max_length=128, blank=True, default="", db_default="")

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["grant", "created"], name="usage_ledger_grant_created"),
            models.Index(fields=["api_key", "period"], name="usage_ledger_key_period"),
            models.Index(fields=["grant", "user", "period"], name="usage_ledger_member_period"),
            models.Index(
                fields=["grant"], condition=models.Q(rolled_up=False), name="usage_ledger_unrolled"
            ),
            models.Index(
                fields=["api_key", "request_id"],
                condition=~models.Q(request_id=""),
                name="usage_ledger_key_request",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(credits__gte=0), name="usage_ledgerentry_credits_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M} {self.credits} credits ({self.outcome})"


class UsageBucket(models.Model):
    """What one member spent through one key on one model in one hour, rolled up from the
    ledger by ``apps.usage.rollup`` so that reports never scan the ledger.

    ``hour`` is the start of the hour in UTC (the ledger rows' ``created``, truncated). Day and
    month series are computed from it in ``settings.TIME_ZONE``; that is exact because the
    zone's offsets are whole hours, so every UTC hour lies inside one local day. ``period`` is
    the ledger rows' accounting month (the month the counters were charged), which differs
    from the month of ``hour`` only for a request held before midnight and settled after it.
    The grant is the key's, stored again so a grant's reports read one index.
    """

    hour = models.DateTimeField()
    # Indexes: the unique constraint serves a key's reports, the ones in Meta a grant's and a
    # member's.
    api_key = models.ForeignKey(ApiKey, models.PROTECT, related_name="+", db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="+", db_index=False
    )
    grant = models.ForeignKey(Grant, models.PROTECT, related_name="+", db_index=False)
    model = models.ForeignKey(CatalogModel, models.PROTECT, related_name="+", db_index=False)
    period = period_field()
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    credits = models.DecimalField(**CREDIT_DIGITS, default=0)
    estimated_requests = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "hour", "model", "user", "period"],
                name="usage_usagebucket_unique_hour_key_model_member_period",
            ),
            models.CheckConstraint(
                condition=models.Q(credits__gte=0), name="usage_usagebucket_credits_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=["grant", "hour"], name="usage_bucket_grant_hour"),
            models.Index(fields=["grant", "period"], name="usage_bucket_grant_period"),
            models.Index(fields=["user", "period"], name="usage_bucket_user_period"),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} key {self.api_key_id}: {self.credits} credits"
