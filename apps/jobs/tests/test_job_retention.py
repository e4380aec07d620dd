"""Job output is the user's data: deleted after JOBS_RETENTION_DAYS, or when the owner says."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from apps.jobs.models import Job
from apps.jobs.tasks import delete_expired_jobs
from tests.waiting import eventually


def test_the_retention_task_deletes_old_jobs_and_their_output(jobs, settings):
    settings.JOBS_RETENTION_DAYS = 7
    old, recent = jobs.submit(["an old question", "a recent question"], model="chat-small")
    eventually(
        lambda: {j["status"] for j in jobs.status(old, recent).values()} == {"done"}, timeout=30
    )
    Job.objects.filter(public_id=old).update(created=timezone.now() - dt.timedelta(days=8))
    if jobs.workers is not None:
        delete_expired_jobs.apply_async(queue=jobs.workers.queue)  # on the worker, from Redis
    else:
        delete_expired_jobs()  # in-process mode runs periodic tasks eagerly
    eventually(lambda: not Job.objects.filter(public_id=old).exists(), timeout=30)
    found = jobs.status(old, recent)
    assert found[old] == {"status": "not_found"}
    assert found[recent]["log"]
    jobs.settled()


def test_the_owner_deletes_a_job_and_its_output(jobs):
    [job_id] = jobs.submit(["a question"], model="chat-small")
    eventually(lambda: jobs.job(job_id)["status"] == "done", timeout=30)
    with jobs.api() as api:
        answer = api.delete(f"/jobs/{job_id}?purge=true")
    assert answer.status_code == 200, answer.text
    assert jobs.job(job_id) == {"status": "not_found"}
    assert not Job.objects.exists()
    jobs.settled()
