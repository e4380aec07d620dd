"""Where a job runs: on a Celery worker (Redis), or in-process (``make run``, no Redis) on the
jobs' event loop in a thread of the web process. Either way ``runner.job_execute`` runs it on a
long-lived event loop (``jobs_loop``), as the gateway's requests run on the server's."""

from __future__ import annotations

from django.conf import settings

from lib.loop_thread import LoopThread

jobs_loop = LoopThread("anvil-jobs")


def job_enqueue(job_id: int) -> None:
    if settings.JOBS_IN_PROCESS:
        from apps.jobs.runner import job_execute

        jobs_loop.submit(job_execute(job_id))
        return
    from apps.jobs.tasks import run_job

    run_job.apply_async(args=[job_id], queue=settings.JOBS_QUEUE)


def jobs_stop() -> None:
    """Let this process's jobs loop write the settlements it started, then stop it (jobs
    still running are cancelled: their admissions settle what was generated, and the sweep
    retries them)."""
    if not jobs_loop.running:
        return
    from apps.usage.ledger import adrain

    jobs_loop.run(adrain())
    jobs_loop.stop()
