"""E-mail notifications, each sent at most once per threshold and period.

Before a notification is sent, its row is inserted; the unique constraint on (kind, target,
threshold, period) lets exactly one insert succeed, whichever worker tries first, and the mail
is sent in the same transaction, so a failed send leaves no row and is tried again later.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class NotificationKind(models.TextChoices):
    KEY_EXPIRING = "key_expiring", "API key expiring"
    MEMBER_LIMIT = "member_limit", "Member's monthly limit"
    GRANT_POOL = "grant_pool", "Grant's credit pool"


class NotificationSent(models.Model):
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    # What it is about: "api_key:<public id>", "member:<grant public id>:<user id>",
    # "grant:<public id>".
    target = models.CharField(max_length=100)
    # Percent of a limit reached, or days before a key's expiry.
    threshold = models.PositiveSmallIntegerField()
    # Once per what: the month "YYYY-MM" (member limits), the key's expiry date, or the grant's
    # allocation "allocated:1000" (a top-up re-arms the grant's notifications).
    period = models.CharField(max_length=40)
    recipients = models.PositiveSmallIntegerField(default=0, help_text="E-mail addresses sent to.")
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "target", "threshold", "period"],
                name="notifications_notificationsent_once_per_threshold_and_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.target} {self.threshold} {self.period}"
