"""A worker killed mid-job: the job is retried from the start once, then failed; the lost
attempt's hold is withdrawn (nothing charged for it) and its log is not kept."""

from __future__ import annotations

import pytest

from apps.jobs.models import Job
from apps.jobs.queue import jobs_stop
from apps.jobs.services import jobs_sweep_lost
from apps.jobs.tests.conftest import TPS, Jobs, echo
from apps.keys.services import api_key_create
from apps.usage.models import Hold, LedgerEntry
from tests.servers import start_anvil_processes, stop_anvil_processes
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


def test_a_web_process_killed_mid_job_in_process_mode_has_it_retried(
    world, anvil_server, devbackend, settings, tmp_path
):
    """In-process mode (no Celery): the web process running the job dies; the job is retried
    from the start by the sweep, on the jobs thread of the process that sweeps."""
    if not settings.REDIS_URL:
        pytest.skip("the killed web process and this one share the model slots in Redis")
    settings.JOBS_IN_PROCESS, settings.JOBS_LOST_SECONDS = True, 2
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.save()
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="in-process")
    jobs = Jobs("in_process", world, f"{anvil_server.url}/api/v1", devbackend, key, secret, None)
    jobs.add_model("chat-slow", upstream=f"org/chat-slow@tokens-per-second={TPS}")
    server = start_anvil_processes(
        workers=1, log_path=tmp_path / "anvil.log", extra_env={"JOBS_IN_PROCESS": "true"}
    )
    try:
        dying = Jobs("in_process", world, f"{server.url}/api/v1", devbackend, key, secret, None)
        [job_id] = dying.submit([echo(100)])
        eventually(lambda: running_with_hold(dying, job_id), timeout=30, what="running")
        server.process.kill()  # SIGKILL: the web process and its jobs thread are gone
        server.process.wait()
    finally:
        stop_anvil_processes(server)
    try:
        eventually(lambda: jobs_sweep_lost() == 1, timeout=15, what="swept")
        done = eventually(
            lambda: (j := jobs.job(job_id))["status"] == "done" and j, timeout=60, what="done"
        )
        assert done["log"].count("w0 ") == 1
        assert Job.objects.get(public_id=job_id).attempts == 2
        [entry] = LedgerEntry.objects.filter(api_key=key)
        assert entry.completion_tokens == done["usage"]["completion_tokens"]
        jobs.settled()
    finally:
        jobs_stop()
