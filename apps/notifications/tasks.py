from __future__ import annotations

from celery import shared_task

from apps.notifications.expiry import key_expiry_remind
from apps.notifications.thresholds import grant_pools_notify, member_limits_notify


@shared_task
def remind_expiring_keys() -> int:
    """E-mail owners of keys expiring within 7 days (once per key)."""
    return key_expiry_remind()


@shared_task
def notify_member_limits() -> int:
    """E-mail members at 80 % / 100 % of their monthly limit (once per threshold and month)."""
    return member_limits_notify()


@shared_task
def notify_grant_pools() -> int:
    """E-mail managers of grants at 80 % / 100 % of their pool (once per threshold)."""
    return grant_pools_notify()
