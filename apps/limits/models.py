"""The history of members' monthly limits: one row per member per change, never edited."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.grants.models import CREDIT_DIGITS, Grant


class LimitScope(models.TextChoices):
    INDIVIDUAL = "individual", "For this member"
    COLLECTIVE = "collective", "For all members"


class MemberLimitChange(models.Model):
    """``before``/``after`` None means no limit. A collective change writes one row per member,
    all with the same ``created``."""

    grant = models.ForeignKey(Grant, models.CASCADE, related_name="member_limit_changes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="+")
    before = models.DecimalField(**CREDIT_DIGITS, null=True, blank=True)
    after = models.DecimalField(**CREDIT_DIGITS, null=True, blank=True)
    scope = models.CharField(max_length=16, choices=LimitScope.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [
            models.Index(fields=["grant", "-created"], name="limits_change_grant_created"),
            models.Index(fields=["grant", "user", "-created"], name="limits_change_member"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.grant_id}: {self.before} → {self.after} ({self.scope})"
