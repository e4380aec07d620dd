"""Writes of jobs: submit, cancel, delete; a worker's claim, its flushes and its finish; the
sweep of jobs whose worker was lost and of expired jobs. Every change of a job a worker may be
running is a conditional UPDATE on the attempt it claimed, so a lost worker's late write, a
cancel and a retry can not overwrite each other."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.gateway.admission import check_model
from apps.gateway.catalog import CatalogSnapshot
from apps.gateway.errors import GatewayError
from apps.jobs.models import ACTIVE, Job, Status
from apps.jobs.submissions import InvalidSubmission, Submission
from apps.keys.models import ApiKey
from apps.usage import ledger
from apps.usage.models import Hold, LedgerEntry

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # a job whose worker was lost is retried from the start once
LOST_REASON = "the worker running this job was lost (retried once already)."


def jobs_submit(*, key: ApiKey, catalog: CatalogSnapshot, submission: Submission) -> list[Job]:
    """One queued job per input, enqueued once committed; InvalidSubmission when the key may
    not use the model for chat (unknown, inactive, not allowed, an embedding model)."""
    try:
        check_model(key=key, catalog=catalog, name=submission.model_name, endpoint="chat")
    except GatewayError as exc:
        raise InvalidSubmission(f"{submission.model_field}: {exc.message}") from None
    common = {
        "owner_id": key.owner_id, "grant_id": key.grant_id, "api_key_id": key.id,
        "model_name": submission.model_name, "app": submission.app,
        "parameters": submission.parameters,
    }  # fmt: skip
    jobs = [Job(prompt=prompt, **common) for prompt in submission.inputs]
    with transaction.atomic():
        Job.objects.bulk_create(jobs)
        for job in jobs:
            transaction.on_commit(lambda job_id=job.id: _enqueue(job_id))
    return jobs


def _enqueue(job_id: int) -> None:
    from apps.jobs.queue import job_enqueue

    job_enqueue(job_id)


def _owned(owner_id: int, public_id: uuid.UUID):
    return Job.objects.filter(owner_id=owner_id, public_id=public_id)


def job_cancel(*, owner_id: int, public_id: uuid.UUID) -> Job | None:
    """Cancel a queued or running job of ``owner_id``: one no worker has is cancelled now; a
    worker's is stopped by it within a flush (its backend request closed, what was generated
    charged). The job as it is after; None when there is no such job of that owner."""
    now = timezone.now()
    jobs = _owned(owner_id, public_id)
    jobs.filter(status=Status.QUEUED, heartbeat_at__isnull=True).update(
        status=Status.CANCELLED, cancel_requested=True, finished_at=now
    )
    jobs.filter(status__in=ACTIVE).update(cancel_requested=True)
    return jobs.first()


def job_delete(*, owner_id: int, public_id: uuid.UUID) -> bool:
    """Delete a job of ``owner_id`` and its output; a worker running it stops at its next
    flush and settles what was generated."""
    return _owned(owner_id, public_id).delete()[0] > 0


# --- a worker's side -------------------------------------------------------------------------


def job_claim(*, job_id: int) -> Job | None:
    """The job for this worker to run, as its next attempt; None when it is not queued, is
    cancelled, or another worker has it."""
    claimed = Job.objects.filter(
        pk=job_id, status=Status.QUEUED, heartbeat_at__isnull=True, cancel_requested=False
    ).update(attempts=F("attempts") + 1, heartbeat_at=timezone.now())
    return Job.objects.filter(pk=job_id).first() if claimed else None


def job_flush(*, job_id: int, attempt: int, log: str, hold_id: int | None) -> bool:
    """Write the log so far and a sign of life; a job whose hold is placed is running. False
    when the worker must stop: the job was cancelled, deleted, or given to another attempt."""
    now = timezone.now()
    fields = {"log": log, "heartbeat_at": now}
    if hold_id is not None:
        fields.update(
            status=Status.RUNNING, hold_id=hold_id, started_at=Coalesce(F("started_at"), now)
        )
    return bool(_attempt(job_id, attempt).filter(cancel_requested=False).update(**fields))


def _attempt(job_id: int, attempt: int):
    """The job while this attempt has it: claimed (not swept since) and not ended."""
    return Job.objects.filter(
        pk=job_id, attempts=attempt, status__in=ACTIVE, heartbeat_at__isnull=False
    )


def job_finish(
    *, job_id: int, attempt: int, status: str, log: str, entry: LedgerEntry | None
) -> bool:
    """The attempt's end: its status, its whole log and its ledger row's usage."""
    now = timezone.now()
    fields = {
        "status": status, "log": log, "finished_at": now, "heartbeat_at": None, "hold_id": None,
        "started_at": Coalesce(F("started_at"), now),
        "prompt_tokens": entry.prompt_tokens if entry else 0,
        "completion_tokens": entry.completion_tokens if entry else 0,
        "credits": entry.credits if entry else 0,
    }  # fmt: skip
    return bool(_attempt(job_id, attempt).update(**fields))


def with_reason(log: str, reason: str) -> str:
    """A failed job's log: what was generated, then a line saying why it failed."""
    return f"{log}\n" * bool(log) + f"Failed: {reason}"


# --- sweeps ----------------------------------------------------------------------------------


def jobs_sweep_lost(*, now: dt.datetime | None = None) -> int:
    """Jobs whose worker gave no sign of life for JOBS_LOST_SECONDS: the hold it placed is
    withdrawn (nothing charged for the lost attempt), then the job is queued again from the
    start (empty log), or failed after its last attempt, or cancelled if that was asked."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.JOBS_LOST_SECONDS)
    lost = Job.objects.filter(status__in=ACTIVE, heartbeat_at__lt=cutoff)
    swept = 0
    for job in lost.only("id", "attempts", "heartbeat_at", "hold_id", "cancel_requested", "log"):
        swept += _sweep(job, now)
    return swept


def _sweep(job: Job, now: dt.datetime) -> int:
    with transaction.atomic():
        claimed = Job.objects.filter(
            pk=job.pk, attempts=job.attempts, heartbeat_at=job.heartbeat_at, status__in=ACTIVE
        )
        if job.cancel_requested:
            fields = {"status": Status.CANCELLED, "finished_at": now}
        elif job.attempts >= MAX_ATTEMPTS:
            fields = {"status": Status.FAILED, "finished_at": now,
                      "log": with_reason(job.log, LOST_REASON)}  # fmt: skip
        else:
            fields = {"status": Status.QUEUED, "log": "", "started_at": None}
        if not claimed.update(heartbeat_at=None, hold_id=None, **fields):
            return 0
        if job.hold_id is not None:
            hold = Hold.objects.filter(pk=job.hold_id).first()
            if hold is not None:
                ledger.withdraw(hold)
        if fields["status"] == Status.QUEUED:
            transaction.on_commit(lambda: _enqueue(job.pk))
    logger.warning("Job %s: its worker was lost; %s", job.pk, fields["status"])
    return 1


def jobs_delete_expired(*, now: dt.datetime | None = None) -> int:
    """Delete the jobs, and their output, older than JOBS_RETENTION_DAYS that have ended."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.JOBS_RETENTION_DAYS)
    old = Job.objects.filter(Q(created__lt=cutoff) & ~Q(status__in=ACTIVE))
    return old.delete()[0]
