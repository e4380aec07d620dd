from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from apps.core.models import CountersNotSaved
from apps.grants.models import CREDIT_DIGITS, Grant

# Visible prefixes tell people (and secret scanners) what kind of secret they hold.
API_KEY_PREFIX = "anv-"
MANAGEMENT_KEY_PREFIX = "anvm-"


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class ApiKey(CountersNotSaved):
    """A data-plane key: spends its grant's credits. Only prefix and digest are stored."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    grant = models.ForeignKey(Grant, models.PROTECT, related_name="api_keys")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100)
    comment = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField()
    monthly_limit = models.DecimalField(
        **CREDIT_DIGITS, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    total_limit = models.DecimalField(
        **CREDIT_DIGITS, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    # Lifetime counters; the monthly ones live in usage's period-keyed counter rows.
    credits_used = models.DecimalField(**CREDIT_DIGITS, default=0, editable=False)
    credits_held = models.DecimalField(**CREDIT_DIGITS, default=0, editable=False)
    # When the key was last used and by how many requests: the ledger's rollup writes them
    # (apps.usage.rollup), never the gateway's answer path.
    request_count = models.PositiveBigIntegerField(default=0, editable=False)
    COUNTER_FIELDS = ("credits_used", "credits_held", "request_count", "last_used")
    lookup_prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "name"],
                condition=models.Q(archived_at__isnull=True),
                name="keys_apikey_unique_name_per_grant_when_not_archived",
            ),
            models.CheckConstraint(
                condition=models.Q(credits_used__gte=0, credits_held__gte=0),
                name="keys_apikey_counters_not_negative",
            ),
            models.CheckConstraint(
                condition=(models.Q(monthly_limit__isnull=True) | models.Q(monthly_limit__gte=0))
                & (models.Q(total_limit__isnull=True) | models.Q(total_limit__gte=0)),
                name="keys_apikey_limits_not_negative",
            ),
        ]

    @property
    def display_prefix(self) -> str:
        """The start of the secret, enough for its owner to recognise it."""
        return f"{API_KEY_PREFIX}{self.lookup_prefix}"

    @property
    def status(self) -> str:
        if self.revoked_at or self.archived_at:
            return KeyStatus.REVOKED
        if self.expires_at <= timezone.now():
            return KeyStatus.EXPIRED
        return KeyStatus.ACTIVE

    def __str__(self) -> str:
        return f"{self.name} ({self.lookup_prefix}…)"


class ManagementKey(models.Model):
    """A control-plane key: may only create API keys, for grants of its owner's teams."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="management_keys"
    )
    name = models.CharField(max_length=100)
    expires_at = models.DateTimeField()
    lookup_prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)  # hidden from the list

    class Meta:
        ordering = ["-created"]

    @property
    def display_prefix(self) -> str:
        return f"{MANAGEMENT_KEY_PREFIX}{self.lookup_prefix}"

    @property
    def status(self) -> str:
        if self.revoked_at:
            return KeyStatus.REVOKED
        if self.expires_at <= timezone.now():
            return KeyStatus.EXPIRED
        return KeyStatus.ACTIVE

    def __str__(self) -> str:
        return f"{self.name} ({self.lookup_prefix}…)"
