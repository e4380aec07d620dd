from __future__ import annotations

import datetime as dt
import uuid

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from apps.catalog.models import CatalogModel
from apps.core.models import CountersNotSaved
from apps.teams.models import Team

CREDIT_DIGITS = {"max_digits": 20, "decimal_places": 6}


class Grant(CountersNotSaved):
    """A team's credit pool; every key of the grant spends from it."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, models.PROTECT, related_name="grants")
    identifier = models.SlugField(max_length=100, unique=True, help_text="e.g. plgexample-gpu")
    credits_allocated = models.DecimalField(**CREDIT_DIGITS, validators=[MinValueValidator(0)])
    # Counters kept next to what they limit; changed only by conditional UPDATEs (gateway).
    credits_used = models.DecimalField(**CREDIT_DIGITS, default=0, editable=False)
    credits_held = models.DecimalField(**CREDIT_DIGITS, default=0, editable=False)
    COUNTER_FIELDS = ("credits_used", "credits_held")  # the ledger's alone
    valid_from = models.DateField()
    valid_until = models.DateField()
    allowed_models = models.ManyToManyField(CatalogModel, blank=True, related_name="grants")
    # The grant admin's latest "monthly limit for all members" (apps.limits.services): also
    # given to people who join the team later. Null ``collective_limit_set_at``: never set;
    # null ``collective_monthly_limit`` once set: no limit.
    collective_monthly_limit = models.DecimalField(
        **CREDIT_DIGITS, null=True, blank=True, editable=False, validators=[MinValueValidator(0)]
    )
    collective_limit_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["identifier"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(valid_until__gte=models.F("valid_from")),
                name="grants_grant_valid_until_after_valid_from",
            ),
            models.CheckConstraint(
                condition=models.Q(credits_allocated__gte=0),
                name="grants_grant_credits_allocated_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(credits_used__gte=0, credits_held__gte=0),
                name="grants_grant_counters_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(collective_monthly_limit__isnull=True)
                | models.Q(collective_monthly_limit__gte=0),
                name="grants_grant_collective_limit_not_negative",
            ),
        ]

    @property
    def credits_left(self):
        return max(self.credits_allocated - self.credits_used - self.credits_held, 0)

    def is_valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day <= self.valid_until

    @property
    def has_ended(self) -> bool:
        """Past ``valid_until`` today, in the service's time zone: no new keys, no requests."""
        return self.valid_until < timezone.localdate()

    @property
    def validity_text(self) -> str:
        return f"valid from {self.valid_from:%Y-%m-%d} until {self.valid_until:%Y-%m-%d}"

    def __str__(self) -> str:
        return self.identifier
