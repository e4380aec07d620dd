from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("anvil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The beat schedule: one entry per periodic job, each with a plain-English comment.
# (Filled by the consumption issue: statements, hold sweeper, roll-ups, expiry, reconciliation.)
app.conf.beat_schedule = {}
