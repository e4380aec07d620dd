"""An asynchronous job: one input of a submission, run later on a worker as one streaming chat
request of the owner's API key. Its input and output are the owner's data: they are kept only
until the owner deletes the job or it expires (``JOBS_RETENTION_DAYS``), and no admin page
shows them."""

from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE = (Status.QUEUED, Status.RUNNING)


class Job(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    grant = models.ForeignKey("grants.Grant", on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("keys.ApiKey", on_delete=models.CASCADE, related_name="+")
    model_name = models.CharField(max_length=200)  # the reference's "tag"
    app = models.CharField(max_length=100)
    prompt = models.TextField()
    parameters = models.JSONField(default=dict)  # max_tokens, temperature, top_p, stop, system
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    log = models.TextField(blank=True, default="")
    created = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The attempt a worker claimed (1, then 2 after a lost worker); its sign of life while it
    # runs (None: no worker has it); its credit hold once placed (None once ended).
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    hold_id = models.BigIntegerField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # From the job's ledger row once it ended.
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    credits = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created"], name="jobs_job_owner_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="jobs_job_status_heartbeat"),
            models.Index(fields=["created"], name="jobs_job_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=Status.values), name="jobs_job_status_known"
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.public_id.hex}"

    @property
    def command_line(self) -> str:
        """The job's input as the reference shows it: ``{"inputs": [prompt], ...parameters}``."""
        return json.dumps({"inputs": [self.prompt], **self.parameters})

    @property
    def runtime(self) -> int:
        """Whole seconds it has run (so far)."""
        if self.started_at is None:
            return 0
        end = self.finished_at or timezone.now()
        return max(int((end - self.started_at).total_seconds()), 0)

    @property
    def credits_text(self) -> str | None:
        """The credits charged as a plain decimal string ("10", never "1E+1"); None until
        the job has ended."""
        if self.credits is None:
            return None
        return format(self.credits.normalize(), "f")

    @property
    def active(self) -> bool:
        return self.status in ACTIVE
