from __future__ import annotations

import logging

from celery import shared_task

from apps.statements.services import statements_close

logger = logging.getLogger(__name__)


@shared_task
def close_previous_month() -> int:
    """Close last month into statements for every grant not closed yet; returns how many
    grants it closed. Grants with requests of that month still in flight wait for the next run."""
    report = statements_close()
    if report.closed:
        logger.info("Closed %s for %d grant(s).", report.period, len(report.closed))
    if report.still_open:
        logger.info("%s stays open for %s: requests in flight.", report.period, report.still_open)
    return len(report.closed)
