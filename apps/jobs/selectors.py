"""Reads of jobs, always within one owner's jobs: another person's job is not found."""

from __future__ import annotations

import uuid

from django.shortcuts import get_object_or_404

from apps.jobs.models import Job

MAX_IDS = 100
MAX_LIST = 100


def public_id_parse(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


def jobs_by_ids(*, owner_id: int, ids: list[str]) -> dict[str, Job | None]:
    """Each asked id → the owner's job of that id, or None (unknown, malformed, or someone
    else's: the answer is the same)."""
    parsed = {text: public_id_parse(text) for text in ids}
    wanted = [public_id for public_id in parsed.values() if public_id is not None]
    found = {
        job.public_id: job for job in Job.objects.filter(owner_id=owner_id, public_id__in=wanted)
    }
    return {text: found.get(public_id) for text, public_id in parsed.items()}


def job_for_owner(*, owner_id: int, public_id: uuid.UUID) -> Job:
    """The owner's job; Http404 for anyone else's (its existence is not leaked)."""
    return get_object_or_404(Job, owner_id=owner_id, public_id=public_id)


def job_list(*, owner_id: int, status: str | None = None, limit: int = 20) -> list[Job]:
    jobs = Job.objects.filter(owner_id=owner_id).order_by("-created", "-id")
    if status:
        jobs = jobs.filter(status=status)
    return list(jobs[: max(1, min(limit, MAX_LIST))])
