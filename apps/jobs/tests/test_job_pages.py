"""The Jobs pages: one's own jobs only; Cancel and Delete."""

from __future__ import annotations

from django.urls import reverse

from apps.jobs.models import Job, Status
from apps.keys.services import api_key_create


def make_job(world, owner, **fields) -> Job:
    key, _ = api_key_create(grant=world.grant, owner=owner, name=f"{owner.username}-page")
    return Job.objects.create(
        owner=owner, grant=world.grant, api_key=key, model_name="chat-small",
        app="text-inference", prompt="a question", **fields,
    )  # fmt: skip


def test_it_lists_and_shows_ones_own_jobs(client, world):
    job = make_job(world, world.bob, status=Status.DONE, log="an answer")
    client.force_login(world.bob)
    listing = client.get(reverse("jobs:list"))
    assert job.public_id.hex.encode() in listing.content
    page = client.get(reverse("jobs:detail", args=[job.public_id]))
    assert b"an answer" in page.content
    assert client.get(reverse("jobs:state", args=[job.public_id])).json()["log"] == "an answer"


def test_an_outsider_gets_404(client, world):
    job = make_job(world, world.bob, status=Status.DONE, log="an answer")
    client.force_login(world.charlie)
    assert job.public_id.hex.encode() not in client.get(reverse("jobs:list")).content
    for name in ("jobs:detail", "jobs:state"):
        assert client.get(reverse(name, args=[job.public_id])).status_code == 404
    for name in ("jobs:cancel", "jobs:delete"):
        assert client.post(reverse(name, args=[job.public_id])).status_code == 404
    assert Job.objects.get(pk=job.pk).status == Status.DONE


def test_cancel_and_delete(client, world):
    job = make_job(world, world.bob)
    client.force_login(world.bob)
    client.post(reverse("jobs:cancel", args=[job.public_id]))
    assert Job.objects.get(pk=job.pk).status == Status.CANCELLED
    client.post(reverse("jobs:delete", args=[job.public_id]))
    assert not Job.objects.exists()
