"""Monthly statements: what a grant, each member and each key spent in a closed month.

A statement is written once, when its month is closed (``services.statements_close``), from
the ledger rows of that accounting period, and never changes afterwards. Immutability is
enforced three times: the service refuses to close a month twice, ``save()`` and ``delete()``
refuse existing rows, and the database refuses UPDATE (and on PostgreSQL DELETE) of both
tables with a trigger (migration 0002), so not even a raw query can rewrite one.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from apps.catalog.models import CatalogModel
from apps.grants.models import CREDIT_DIGITS, Grant
from apps.keys.models import ApiKey
from apps.usage.models import period_field


class StatementImmutable(Exception):
    """A closed statement can not be changed or deleted."""


class StatementKind(models.TextChoices):
    GRANT = "grant", "Grant"
    MEMBER = "member", "Member"
    KEY = "key", "API key"


class ImmutableModel(models.Model):
    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise StatementImmutable(f"{self._meta.verbose_name} {self.pk} is closed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise StatementImmutable(f"{self._meta.verbose_name} {self.pk} is closed.")


class Totals(models.Model):
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    credits = models.DecimalField(**CREDIT_DIGITS, default=0)
    capped = models.PositiveIntegerField(
        default=0, help_text="Requests whose real cost exceeded their hold (charged the hold)."
    )

    class Meta:
        abstract = True


class Statement(ImmutableModel, Totals):
    """One closed month of a grant (``user`` and ``api_key`` empty), of one member in the
    grant (``user``) or of one key (``api_key`` and its owner as ``user``)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=8, choices=StatementKind.choices)
    grant = models.ForeignKey(Grant, models.PROTECT, related_name="statements")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(ApiKey, models.PROTECT, null=True, blank=True, related_name="+")
    period = period_field()
    closed_at = models.DateTimeField()

    class Meta:
        ordering = ["-period", "kind", "pk"]
        indexes = [models.Index(fields=["grant", "period"], name="statements_grant_period")]
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "period"],
                condition=models.Q(kind="grant"),
                name="statements_statement_one_per_grant_and_period",
            ),
            models.UniqueConstraint(
                fields=["grant", "user", "period"],
                condition=models.Q(kind="member"),
                name="statements_statement_one_per_member_and_period",
            ),
            models.UniqueConstraint(
                fields=["api_key", "period"],
                condition=models.Q(kind="key"),
                name="statements_statement_one_per_key_and_period",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(kind="grant", user__isnull=True, api_key__isnull=True)
                    | models.Q(kind="member", user__isnull=False, api_key__isnull=True)
                    | models.Q(kind="key", user__isnull=False, api_key__isnull=False)
                ),
                name="statements_statement_owner_fits_kind",
            ),
            models.CheckConstraint(
                condition=models.Q(credits__gte=0), name="statements_statement_credits_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} statement {self.period} of {self.grant_id}"


class StatementLine(ImmutableModel, Totals):
    """A statement's totals for one model."""

    statement = models.ForeignKey(Statement, models.PROTECT, related_name="lines")
    model = models.ForeignKey(CatalogModel, models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=200, help_text="The model's name at closing.")

    class Meta:
        ordering = ["model_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "model"], name="statements_statementline_one_per_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name}: {self.credits}"
