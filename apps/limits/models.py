"""Members' monthly limits: the limit a member has in a grant now, and the history of its
changes (one row per member per change, never edited)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from apps.grants.models import CREDIT_DIGITS, Grant


class MemberLimit(models.Model):
    """A member's monthly credit limit in one grant; no row or a null limit means no limit.

    Its table keeps the name it had in ``apps.usage`` (the model moved, no row did): the credit
    holds read it by that name in ``anvil_place`` (migration usage 0005)."""

    grant = models.ForeignKey(Grant, models.CASCADE, related_name="member_limits")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="+")
    monthly_limit = models.DecimalField(
        **CREDIT_DIGITS, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "usage_memberlimit"
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "user"], name="usage_memberlimit_unique_member_per_grant"
            ),
            models.CheckConstraint(
                condition=models.Q(monthly_limit__isnull=True) | models.Q(monthly_limit__gte=0),
                name="usage_memberlimit_limit_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.grant_id}: {self.monthly_limit}"


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
