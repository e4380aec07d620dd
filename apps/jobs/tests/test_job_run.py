"""Submit, watch the log grow, read the output and the usage; cancel a running job."""

from __future__ import annotations

from decimal import Decimal

from apps.jobs.tests.conftest import echo
from apps.usage.models import LedgerEntry, Outcome
from devbackend.testing import devbackend_stats, devbackend_stats_reset
from tests.waiting import eventually


def all_ended(jobs, ids) -> dict | bool:
    found = jobs.status(*ids)
    if all(job["status"] in ("done", "failed", "cancelled") for job in found.values()):
        return found
    return False


def test_it_runs_three_inputs_and_the_log_grows_while_they_run(jobs):
    prompts = [echo(30), echo(31), echo(32)]
    ids = jobs.submit(prompts)
    assert len(ids) == 3
    first = eventually(
        lambda: (j := jobs.job(ids[0]))["status"] == "running" and j["log"] and j,
        timeout=30, what="output arrived",
    )  # fmt: skip
    grown = eventually(
        lambda: (j := jobs.job(ids[0]))["log"] != first["log"] and j, timeout=10, what="grew"
    )
    assert grown["log"].startswith(first["log"])  # the next poll: more of the same text
    every = eventually(lambda: all_ended(jobs, ids), timeout=60, what="all three done")
    for job_id, words in zip(ids, (30, 31, 32), strict=True):
        job = every[job_id]
        expected = " ".join(f"w{i}" for i in range(words))
        assert job["log"].strip().startswith(expected)
        assert job["states"]["default"]["log"] == job["log"]
        assert job["tag"] == "chat-slow" and job["runtime"] >= 1
        entry = LedgerEntry.objects.get(
            api_key=jobs.key, completion_tokens=job["usage"]["completion_tokens"]
        )
        assert job["usage"]["prompt_tokens"] == entry.prompt_tokens
        assert Decimal(job["usage"]["credits"]) == entry.credits > 0
    assert LedgerEntry.objects.filter(api_key=jobs.key, outcome=Outcome.OK).count() == 3
    if jobs.workers is not None:  # the output is the user's: never in the worker's log
        assert "w29" not in jobs.workers.log() and "succeeded" in jobs.workers.log()
    jobs.settled()


def test_it_cancels_a_running_job_closes_the_backend_and_charges_what_was_generated(jobs):
    devbackend_stats_reset(jobs.backend_url)
    [job_id] = jobs.submit([echo(400)])
    eventually(lambda: len(jobs.job(job_id)["log"]) > 20, timeout=30, what="output arrived")
    with jobs.api() as api:
        answer = api.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    job = eventually(
        lambda: (j := jobs.job(job_id))["status"] == "cancelled" and j, timeout=10, what="cancelled"
    )
    eventually(lambda: devbackend_stats(jobs.backend_url)["cancelled"] == 1, timeout=10)
    entry = LedgerEntry.objects.get(api_key=jobs.key)
    assert entry.outcome == Outcome.CANCELLED
    assert 0 < entry.completion_tokens < 400
    assert Decimal(job["usage"]["credits"]) == entry.credits > 0
    assert job["usage"]["completion_tokens"] == entry.completion_tokens
    jobs.settled()
