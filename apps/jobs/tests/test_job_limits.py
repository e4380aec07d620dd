"""A job is limited by its key's budgets like any request, and only its owner sees it."""

from __future__ import annotations

from decimal import Decimal

from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from apps.usage.models import LedgerEntry
from tests.waiting import eventually


def test_it_fails_a_job_of_an_exhausted_key_naming_the_limit_and_charges_nothing(jobs):
    ApiKey.objects.filter(pk=jobs.key.pk).update(total_limit=Decimal("0"))
    [job_id] = jobs.submit(["Hello"])
    job = eventually(
        lambda: (j := jobs.job(job_id))["status"] == "failed" and j, timeout=30, what="failed"
    )
    last = job["log"].splitlines()[-1]
    assert last.startswith("Failed: The key's total credit limit is reached"), last
    assert job["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "credits": "0"}
    assert not LedgerEntry.objects.filter(api_key=jobs.key).exists()
    jobs.settled()


def test_another_persons_job_reads_as_not_found(jobs):
    _, alices_secret = api_key_create(
        grant=jobs.world.grant, owner=jobs.world.alice, name="alice-jobs"
    )
    [alices] = jobs.submit(["Alice's question"], model="chat-small", secret=alices_secret)
    [bobs] = jobs.submit(["Bob's question"], model="chat-small")
    found = jobs.status(alices, bobs, "not-an-id")
    assert found[alices] == {"status": "not_found"}
    assert found["not-an-id"] == {"status": "not_found"}
    assert found[bobs]["status"] in ("queued", "running", "done")
    with jobs.api() as api:
        assert api.delete(f"/jobs/{alices}").status_code == 404
        assert api.delete(f"/jobs/{alices}?purge=true").status_code == 404
        listed = api.get("/jobs").json()["jobs"]
    assert [job["id"] for job in listed] == [bobs]
    done = eventually(
        lambda: (s := jobs.status(alices, secret=alices_secret)[alices])["status"] == "done" and s,
        timeout=30,
    )
    assert done["log"]
    eventually(lambda: jobs.job(bobs)["status"] == "done", timeout=30)
    with jobs.api() as api:
        done = api.get("/jobs", params={"status": "done", "limit": 5}).json()["jobs"]
        assert [job["id"] for job in done] == [bobs]
        assert api.get("/jobs", params={"status": "running"}).json()["jobs"] == []
        assert api.get("/jobs", params={"status": "bogus"}).status_code == 400
    jobs.settled()


def test_a_backend_breaking_off_fails_the_job_and_charges_what_it_generated(jobs):
    jobs.add_model("chat-drops", upstream="org/chat-drops@fault=drop-after:5")
    [job_id] = jobs.submit(["Hello"], model="chat-drops")
    job = eventually(
        lambda: (j := jobs.job(job_id))["status"] == "failed" and j, timeout=30, what="failed"
    )
    lines = job["log"].splitlines()
    assert lines[-1] == "Failed: The model's backend broke off the answer."
    assert len(lines) == 2 and lines[0]  # what was generated, then why it failed
    entry = LedgerEntry.objects.get(api_key=jobs.key)
    assert entry.outcome == "backend_error" and entry.completion_tokens == 5
    assert Decimal(job["usage"]["credits"]) == entry.credits > 0
    jobs.settled()
