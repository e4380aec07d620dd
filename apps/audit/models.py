"""The audit log: who changed what and when, with the value before and after.

Rows are only ever added (``apps.audit.services.audit_record``); nothing edits or deletes
them. ``before`` and ``after`` hold small JSON objects of the changed fields, credits written as
exact decimal strings.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.grants.models import Grant


class AuditAction(models.TextChoices):
    MEMBER_LIMIT_CHANGED = "member_limit_changed", "Member monthly limit changed"
    MEMBER_LIMITS_CHANGED_ALL = "member_limits_changed_all", "Monthly limit set for all members"
    KEY_LIMITS_CHANGED = "key_limits_changed", "API key limits changed"
    KEY_REVOKED = "key_revoked", "API key revoked"
    KEY_ARCHIVED = "key_archived", "API key archived"
    CREDITS_ALLOCATED = "credits_allocated", "Grant credits allocated"
    MEMBER_ADDED = "member_added", "Member added to the team"
    MEMBER_REMOVED = "member_removed", "Member removed from the team"
    MEMBER_ROLE_CHANGED = "member_role_changed", "Member role changed"


# The fields the entries record, as the pages name them; an empty limit is "no limit".
FIELD_LABELS = {
    "monthly_limit": "Monthly limit",
    "total_limit": "Total limit",
    "credits_allocated": "Credits allocated",
    "revoked": "Revoked",
    "archived": "Archived",
    "role": "Role",
    "reason": "Reason",
}
LIMITS = {"monthly_limit", "total_limit"}


def label_of(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " "))


def value_text(name: str, value) -> str:
    """A recorded value in words: Yes/No, "no limit" for an empty limit, "none" otherwise."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if value is None:
        return "no limit" if name in LIMITS else "none"
    return str(value)


def describe(values) -> str:
    """``{"monthly_limit": "10"}`` → "Monthly limit: 10"; people read this, programs the JSON."""
    if values is None:
        return ""
    if not isinstance(values, dict):
        return str(values)
    parts = [
        f"{label_of(name)}: {value_text(name, value)}"
        for name, value in sorted(values.items())  # jsonb keeps no order: sort by name
    ]
    return "; ".join(parts)


def describe_change(before, after) -> str:
    """What changed, field by field: "Revoked: No → Yes; Monthly limit: 5 → 10". Entries
    whose before and after name different things (the limits of all members at once) read
    "before …; after …"."""
    if isinstance(before, dict) and isinstance(after, dict) and before.keys() == after.keys():
        return "; ".join(
            f"{label_of(name)}: {value_text(name, before[name])} → {value_text(name, after[name])}"
            for name in sorted(after)
        )
    if before is None or before == {}:
        return describe(after)
    return f"before: {describe(before)}; after: {describe(after)}"


class AuditEntry(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    # Null: done by the system (a task, a management command), not by a person.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Kept as written at the time, so the log still says who even if the account is removed.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    # The grant whose admins may read the entry; an audit log must outlive nothing it names.
    grant = models.ForeignKey(
        Grant, models.PROTECT, null=True, blank=True, related_name="audit_entries"
    )
    target = models.CharField(max_length=300, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ["-created", "-pk"]
        indexes = [
            models.Index(fields=["grant", "-created"], name="audit_entry_grant_created"),
            models.Index(fields=["-created"], name="audit_entry_created"),
        ]

    @property
    def who(self) -> str:
        return self.actor_name or "system"

    @property
    def before_text(self) -> str:
        return describe(self.before)

    @property
    def after_text(self) -> str:
        return describe(self.after)

    @property
    def change_text(self) -> str:
        return describe_change(self.before, self.after)

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M} {self.who}: {self.get_action_display()}"
