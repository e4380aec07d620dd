"""The Jobs pages: the signed-in person's jobs, and one job's log (polled while it runs) with
Cancel and Delete. Another person's job is a 404."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.jobs import selectors, services
from apps.jobs.apis import job_data


@login_required
@require_GET
def job_list(request):
    jobs = selectors.job_list(owner_id=request.user.pk, limit=selectors.MAX_LIST)
    context = {"jobs": jobs, "retention_days": settings.JOBS_RETENTION_DAYS}
    return render(request, "jobs/job_list.html", context)


@login_required
@require_GET
def job_detail(request, public_id):
    job = selectors.job_for_owner(owner_id=request.user.pk, public_id=public_id)
    return render(request, "jobs/job_detail.html", {"job": job})


@login_required
@require_GET
def job_state(request, public_id):
    """What the job page polls: status, log, runtime, usage."""
    job = selectors.job_for_owner(owner_id=request.user.pk, public_id=public_id)
    return JsonResponse(job_data(job))


@login_required
@require_POST
def job_cancel(request, public_id):
    job = selectors.job_for_owner(owner_id=request.user.pk, public_id=public_id)
    services.job_cancel(owner_id=request.user.pk, public_id=job.public_id)
    messages.success(request, "The job is cancelled; what it generated so far is charged.")
    return redirect("jobs:detail", public_id=job.public_id)


@login_required
@require_POST
def job_delete(request, public_id):
    job = selectors.job_for_owner(owner_id=request.user.pk, public_id=public_id)
    services.job_delete(owner_id=request.user.pk, public_id=job.public_id)
    messages.success(request, "The job and its output are deleted.")
    return redirect("jobs:list")
