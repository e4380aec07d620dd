"""A worker killed mid-job: the job is retried from the start once, then failed; the lost
attempt's hold is withdrawn (nothing charged for it) and its log is not kept."""

from __future__ import annotations

import pytest

from apps.jobs.models import Job
from apps.jobs.services import jobs_sweep_lost
from apps.jobs.tests.conftest import echo
from apps.usage.models import Hold, LedgerEntry
from tests.waiting import eventually


@pytest.fixture
def lost(jobs, settings):
    if jobs.mode != "celery":
        pytest.skip("a worker process to kill")
    settings.JOBS_LOST_SECONDS = 2
    return jobs


def running_with_hold(jobs, job_id: str) -> bool:
    job = Job.objects.get(public_id=job_id)
    return job.status == "running" and job.hold_id is not None and len(job.log) > 10


def test_a_killed_workers_job_is_retried_from_the_start_and_done(lost):
    jobs = lost
    [job_id] = jobs.submit([echo(100)])
    eventually(lambda: running_with_hold(jobs, job_id), timeout=30, what="running")
    jobs.workers.kill(jobs.workers.processes[0])
    eventually(lambda: jobs_sweep_lost() == 1, timeout=15, what="swept")
    job = jobs.job(job_id)
    assert (job["status"], job["log"]) == ("queued", "")
    assert not Hold.objects.exists()  # the lost attempt's hold is withdrawn
    jobs.workers.start()
    done = eventually(
        lambda: (j := jobs.job(job_id))["status"] == "done" and j, timeout=60, what="done"
    )
    words = " ".join(f"w{i}" for i in range(100))
    assert done["log"].strip().startswith(words)
    assert done["log"].count("w0 ") == 1  # not duplicated by the retry
    assert Job.objects.get(public_id=job_id).attempts == 2
    [entry] = LedgerEntry.objects.filter(api_key=jobs.key)  # the lost attempt: no charge
    assert entry.completion_tokens == done["usage"]["completion_tokens"] >= 100
    jobs.settled()


def test_a_job_whose_worker_is_lost_twice_fails_saying_so(lost):
    jobs = lost
    [job_id] = jobs.submit([echo(100)])
    for attempt in (1, 2):
        eventually(lambda: running_with_hold(jobs, job_id), timeout=60, what=f"run {attempt}")
        jobs.workers.kill(jobs.workers.processes[-1])
        eventually(lambda: jobs_sweep_lost() == 1, timeout=15, what="swept")
        if attempt == 1:
            jobs.workers.start()
    job = jobs.job(job_id)
    assert job["status"] == "failed"
    assert job["log"].splitlines()[-1] == "Failed: the worker running this job was lost " + (
        "(retried once already)."
    )
    assert not LedgerEntry.objects.filter(api_key=jobs.key).exists()
    jobs.settled()
