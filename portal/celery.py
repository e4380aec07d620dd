"""The Celery app and the beat schedule.

With ``REDIS_URL`` set, tasks go to Redis and run on ``celery -A portal worker``; ``celery -A
portal beat`` enqueues the periodic ones below. Without it every task runs in-process the
moment it is enqueued (``CELERY_TASK_ALWAYS_EAGER``), and ``celery -A portal beat`` runs the
periodic ones in its own process. Every periodic task is idempotent and claims its work with a
conditional statement, so a second beat (or a retry) does nothing twice.
"""

from __future__ import annotations

import logging.config
import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("anvil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def logging_as_configured(**kwargs) -> None:
    """Django's LOGGING instead of Celery's own setup (Celery skips its own when a receiver
    is connected)."""
    logging.config.dictConfig(settings.LOGGING)


if settings.LOG_FORMAT == "json":
    # The worker's and beat's lines as JSON, like the web server's; text keeps Celery's format.
    setup_logging.connect(logging_as_configured, weak=False)


def every(seconds: int, task: str) -> dict:
    """Run ``task`` every ``seconds``; a run still queued when the next is due is dropped."""
    return {"task": task, "schedule": float(seconds), "options": {"expires": seconds}}


def at(schedule: crontab, task: str, *, expires: int = 3600) -> dict:
    return {"task": task, "schedule": schedule, "options": {"expires": expires}}


# The beat schedule: one entry per periodic job. Times are in TIME_ZONE (CELERY_TIMEZONE).
app.conf.beat_schedule = {
    # Every minute: withdraw the credit holds of requests whose process crashed (past expiry).
    "sweep-expired-holds": every(60, "apps.usage.tasks.sweep_expired_holds"),
    # Every minute: add new ledger rows to the hourly usage buckets the reports read, and mark
    # their keys used (API keys' Last used and request count).
    "roll-up-ledger": every(60, "apps.usage.tasks.roll_up_ledger"),
    # Every 30 seconds: ask each backend for its model list (no tokens spent); models of a
    # backend that does not answer are unavailable until it does.
    "probe-backends": every(30, "apps.catalog.tasks.probe_backends"),
    # Hourly at :20: close last month into immutable statements per grant, member and key.
    # Idempotent; a grant with requests of that month still in flight waits for the next hour.
    "close-previous-month": at(crontab(minute=20), "apps.statements.tasks.close_previous_month"),
    # Hourly at :05: e-mail owners of API keys that expire within 7 days (once per key).
    "remind-expiring-keys": at(crontab(minute=5), "apps.notifications.tasks.remind_expiring_keys"),
    # Every 10 minutes: e-mail members at 80 % / 100 % of their monthly limit (once per month)
    # and grant managers at 80 % / 100 % of the grant's pool (once per allocation).
    "notify-member-limits": every(600, "apps.notifications.tasks.notify_member_limits"),
    "notify-grant-pools": every(600, "apps.notifications.tasks.notify_grant_pools"),
    # Every 30 seconds: a job whose worker was lost (no sign of life for JOBS_LOST_SECONDS)
    # has its hold withdrawn and is queued again once, then failed.
    "sweep-lost-jobs": every(30, "apps.jobs.tasks.sweep_lost_jobs"),
    # Hourly at :40: delete jobs and their output older than JOBS_RETENTION_DAYS.
    "delete-expired-jobs": at(crontab(minute=40), "apps.jobs.tasks.delete_expired_jobs"),
    # Nightly at 03:30: check every credit counter against the ledger; log and repair mismatches.
    "reconcile-counters": at(crontab(hour=3, minute=30), "apps.usage.tasks.reconcile_counters"),
}
