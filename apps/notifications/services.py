"""Writes of the notifications: claim a (kind, target, threshold, period) and send its mail.

``notification_send`` inserts one ``NotificationSent`` row per threshold reached, each in a
savepoint; an insert that breaks the unique constraint means that threshold was notified
already (or is being notified by another worker right now, whose commit the insert waited
for). One mail goes out for the highest threshold newly claimed — a member who jumps from 50 %
to 100 % gets the 100 % mail only, and never the 80 % one afterwards. The mail is sent inside
the transaction: if sending fails, the claims roll back and the next run tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from apps.notifications.models import NotificationSent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subject:
    kind: str
    target: str
    period: str


def notification_claim(*, subject: Subject, threshold: int, recipients: int) -> bool:
    """Insert the row, or nothing when it exists: True when this call claimed it."""
    try:
        with transaction.atomic():
            NotificationSent.objects.create(
                kind=subject.kind, target=subject.target, period=subject.period,
                threshold=threshold, recipients=recipients,
            )  # fmt: skip
    except IntegrityError:
        return False
    return True


def notification_send(
    *,
    subject: Subject,
    thresholds: list[int],
    recipients: list[str],
    message: Callable[[int], tuple[str, str]],
) -> int | None:
    """Claim every threshold in ``thresholds`` not notified yet and send one mail, built by
    ``message(threshold) -> (subject line, body)``, for the highest; returns that threshold,
    or None when all of them were notified before."""
    recipients = sorted({address for address in recipients if address})
    with transaction.atomic():
        claimed = [
            threshold
            for threshold in sorted(thresholds)
            if notification_claim(subject=subject, threshold=threshold, recipients=len(recipients))
        ]
        if not claimed:
            return None
        if recipients:
            title, body = message(claimed[-1])
            send_mail(title, body, None, recipients)
        else:
            logger.info("No e-mail address for %s %s; not sent.", subject.kind, subject.target)
    return claimed[-1]
