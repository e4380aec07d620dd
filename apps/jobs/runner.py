"""Running one job on a worker: its streaming chat request goes through the gateway's own
admission and relay (``admission.admitted``, ``relay.stream``), with the worker as the client.
So a job is authenticated, checked, held, limited, charged and settled exactly as an
interactive request of its key; nothing here touches credits.

Jobs take at most JOBS_MAX_SLOT_SHARE of a model's slots: before its admission a job takes a
slot of the model's job share (``model_slot`` of ``jobs:<model>``), and waits there, queued,
while the share is used. While it runs, every FLUSH_SECONDS the log so far and a sign of life
are written (only a sign of life every few seconds while nothing changes, as while queued);
that write also tells a cancelled (or deleted, or retried) job to stop, which
closes the backend request, and the admission settles what was generated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from contextlib import aclosing
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.gateway import relay
from apps.gateway.admission import Admission, Ask, admitted
from apps.gateway.catalog import current_catalog
from apps.gateway.errors import GatewayError
from apps.gateway.slots import QueueFull, model_slot
from apps.gateway.tokens import chat_prompt_size
from apps.gateway.views import upstream_body
from apps.jobs import services
from apps.jobs.models import Job, Status
from apps.jobs.submissions import chat_body
from apps.usage.models import Outcome

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5  # new output is written at least this often while a job runs
QUIET_SECONDS = 5  # with nothing new (waiting for a slot), a sign of life this often
SHARE_QUEUE = 100_000  # jobs wait for the share for as long as it takes, in any number


def _db(function):
    return sync_to_async(function, thread_sensitive=False)


@dataclass
class Run:
    job: Job
    text: list[str] = field(default_factory=list)
    admitting: admitted | None = None
    reason: str | None = None  # why it failed
    stopped: bool = False  # cancelled, deleted, or given to another attempt

    @property
    def admission(self) -> Admission | None:
        return self.admitting.admission if self.admitting is not None else None

    @property
    def log(self) -> str:
        return "".join(self.text)

    def take(self, event: bytes | str) -> None:
        """The text a relayed chunk adds to the log."""
        if not isinstance(event, bytes) or not event.startswith(b"data: {"):
            return
        try:
            chunk = json.loads(event[6:])
        except ValueError:
            return
        for choice in chunk.get("choices") or []:
            content = ((choice or {}).get("delta") or {}).get("content")
            if isinstance(content, str):
                self.text.append(content)


async def job_execute(job_id: int) -> None:
    """Claim the job and run it to its end (done, failed or cancelled)."""
    job = await _db(services.job_claim)(job_id=job_id)
    if job is None:
        return
    run = Run(job)
    working = asyncio.ensure_future(_work(run))
    written = (None, "")  # the hold and log last written
    quiet = min(QUIET_SECONDS, settings.JOBS_LOST_SECONDS / 4)
    last = time.monotonic()
    while not working.done():
        await asyncio.wait([working], timeout=FLUSH_SECONDS)
        if working.done():
            break
        admission = run.admission
        now = (admission.hold.pk if admission is not None else None, run.log)
        if now == written and time.monotonic() - last < quiet:
            continue  # nothing new: only a sign of life now and then
        try:
            keep_on = await _db(services.job_flush)(
                job_id=job.pk, attempt=job.attempts, log=now[1], hold_id=now[0]
            )
        except Exception:  # the database away for a moment: the next flush tries again
            logger.warning("Job %s: writing its log failed", job.pk, exc_info=True)
            continue
        if not keep_on:
            await _stop(run, working)
        written, last = now, time.monotonic()
    await _finish(run, working)


async def _stop(run: Run, working: asyncio.Future) -> None:
    run.stopped = True
    if run.admission is not None:
        run.admission.tally.outcome = Outcome.CANCELLED
    working.cancel()
    await asyncio.gather(working, return_exceptions=True)


async def _finish(run: Run, working: asyncio.Future) -> None:
    if not working.cancelled() and working.exception() is not None:
        logger.error("Job %s failed", run.job.pk, exc_info=working.exception())
        run.reason = "an internal error of the worker."
    admission = run.admission
    entry = None
    if admission is not None and admission.settlement is not None:
        try:
            entry = await asyncio.shield(admission.settlement)
        except Exception:  # logged by the ledger; the hold is withdrawn when it expires
            entry = None
    if run.stopped:
        status, log = Status.CANCELLED, run.log
    elif run.reason is not None:
        status, log = Status.FAILED, services.with_reason(run.log, run.reason)
    else:
        status, log = Status.DONE, run.log
    job = run.job
    await _db(services.job_finish)(
        job_id=job.pk, attempt=job.attempts, status=status, log=log, entry=entry
    )


async def _work(run: Run) -> None:
    """The job's request, waiting (queued) for the job share and a slot of the model."""
    job = run.job
    body = chat_body(prompt=job.prompt, parameters=job.parameters)
    ask = Ask(
        secret=None, key_id=job.api_key_id, endpoint="chat", model_name=job.model_name,
        prompt=chat_prompt_size(body), max_tokens=job.parameters.get("max_tokens"),
    )  # fmt: skip
    try:
        catalog = await current_catalog()
        model = catalog.models.get(job.model_name)
        slots = model.max_concurrency if model is not None else 1
        share = max(1, math.floor(slots * settings.JOBS_MAX_SLOT_SHARE))
        async with model_slot(
            model=f"jobs:{job.model_name}", max_concurrency=share, queue_size=SHARE_QUEUE,
            grant_id=job.grant_id,
        ):  # fmt: skip
            await _admitted_run(run, ask, body)
    except GatewayError as exc:
        run.reason = exc.message
    except QueueFull as exc:  # the job share's queue (100 000 jobs) or Redis unreachable
        run.reason = exc.message
    if run.admission is not None and run.reason is None:
        outcome = run.admission.tally.outcome
        if outcome in (Outcome.BACKEND_ERROR, Outcome.BACKEND_TIMEOUT):
            run.reason = relay.stream_failure(outcome).message


async def _admitted_run(run: Run, ask: Ask, body: dict) -> None:
    """Relay the request; when the model's queue is full, wait and ask again (still queued:
    nothing was generated)."""
    while True:
        run.admitting = admitted(ask, await current_catalog())
        events = relay.stream(
            run.admitting, "/chat/completions",
            lambda admission: upstream_body(body, admission, stream=True), False,
        )  # fmt: skip
        try:
            async with aclosing(events):
                async for event in events:
                    run.take(event)
            return
        except QueueFull as exc:
            run.admitting = None
            await asyncio.sleep(exc.retry_after)
