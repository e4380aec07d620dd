from __future__ import annotations

from celery import shared_task

from apps.jobs import services
from apps.jobs.queue import jobs_loop


@shared_task(ignore_result=True)
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
