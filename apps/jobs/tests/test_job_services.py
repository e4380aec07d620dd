"""The job's state changes, one conditional UPDATE each: a cancel, a claim, a lost worker's
late write and the sweep can not overwrite each other."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import Job, Status
from apps.keys.services import api_key_create


def make_job(world) -> Job:
    name = f"services-{Job.objects.count()}"
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name=name)
    return Job.objects.create(
        owner=world.bob, grant=world.grant, api_key=key, model_name="chat-small",
        app="text-inference", prompt="a question",
    )  # fmt: skip


def test_a_queued_job_no_worker_has_is_cancelled_at_once_and_never_claimed(world):
    job = make_job(world)
    cancelled = services.job_cancel(owner_id=world.bob.pk, public_id=job.public_id)
    assert cancelled.status == Status.CANCELLED and cancelled.finished_at is not None
    assert services.job_claim(job_id=job.pk) is None


def test_a_claimed_job_is_stopped_by_its_next_flush(world):
    job = make_job(world)
    claimed = services.job_claim(job_id=job.pk)
    assert claimed.attempts == 1 and services.job_claim(job_id=job.pk) is None  # only once
    assert services.job_flush(job_id=job.pk, attempt=1, log="Hel", hold_id=None)
    services.job_cancel(owner_id=world.bob.pk, public_id=job.public_id)
    assert Job.objects.get(pk=job.pk).status == Status.QUEUED  # its worker decides
    assert not services.job_flush(job_id=job.pk, attempt=1, log="Hello", hold_id=None)


def test_someone_else_can_not_cancel_or_delete_it(world):
    job = make_job(world)
    assert services.job_cancel(owner_id=world.alice.pk, public_id=job.public_id) is None
    assert not services.job_delete(owner_id=world.alice.pk, public_id=job.public_id)
    assert Job.objects.get(pk=job.pk).status == Status.QUEUED


def test_a_lost_attempts_late_writes_change_nothing_after_the_sweep(world, settings):
    settings.JOBS_LOST_SECONDS = 60
    job = make_job(world)
    services.job_claim(job_id=job.pk)
    services.job_flush(job_id=job.pk, attempt=1, log="Hel", hold_id=None)
    later = timezone.now() + dt.timedelta(seconds=61)
    assert services.jobs_sweep_lost(now=later) == 1
    assert services.jobs_sweep_lost(now=later) == 0  # once
    swept = Job.objects.get(pk=job.pk)
    assert (swept.status, swept.log, swept.heartbeat_at) == (Status.QUEUED, "", None)
    assert not services.job_flush(job_id=job.pk, attempt=1, log="Hello", hold_id=None)
    assert not services.job_finish(
        job_id=job.pk, attempt=1, status=Status.DONE, log="Hello", entry=None
    )
    assert services.job_claim(job_id=job.pk).attempts == 2


def test_a_lost_job_that_was_being_cancelled_ends_cancelled(world, settings):
    settings.JOBS_LOST_SECONDS = 60
    job = make_job(world)
    services.job_claim(job_id=job.pk)
    services.job_cancel(owner_id=world.bob.pk, public_id=job.public_id)
    assert services.jobs_sweep_lost(now=timezone.now() + dt.timedelta(seconds=61)) == 1
    assert Job.objects.get(pk=job.pk).status == Status.CANCELLED


def test_retention_keeps_jobs_still_running(world, settings):
    settings.JOBS_RETENTION_DAYS = 7
    running, ended = make_job(world), make_job(world)
    old = timezone.now() - dt.timedelta(days=8)
    Job.objects.filter(pk=running.pk).update(created=old, status=Status.RUNNING)
    Job.objects.filter(pk=ended.pk).update(created=old, status=Status.FAILED)
    assert services.jobs_delete_expired() == 1
    assert list(Job.objects.values_list("pk", flat=True)) == [running.pk]
