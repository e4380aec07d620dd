from __future__ import annotations

from celery import shared_task

from apps.jobs import services
from apps.jobs.queue import jobs_loop


# Acknowledged once run: a worker lost before it claimed the job leaves the message to be
# delivered again (after Redis's visibility timeout); one lost after finds the job claimed,
# and the lost-jobs sweep retries it.
@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: int) -> None:
    """Run one job to its end on this worker (a duplicate delivery finds it claimed)."""
    from apps.jobs.runner import job_execute

    jobs_loop.run(job_execute(job_id))


@shared_task(ignore_result=True)
def sweep_lost_jobs() -> int:
    return services.jobs_sweep_lost()


@shared_task(ignore_result=True)
def delete_expired_jobs() -> int:
    return services.jobs_delete_expired()
