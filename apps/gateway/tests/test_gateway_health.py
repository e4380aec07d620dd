"""The gateway follows the backend health probes: an unhealthy model answers 503, shows as
down in /api/health and Inactive in the model lists, and comes back when its backend does."""

from __future__ import annotations

import datetime as dt
import socket

import httpx
import openai
import pytest
from django.utils import timezone

from apps.catalog.models import CatalogModel
from apps.catalog.probes import catalog_probe
from apps.gateway.catalog import forget_catalog

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def probe(gateway, *, base_url: str, minutes: int) -> dt.datetime:
    gateway.world.backend.base_url = base_url
    gateway.world.backend.save()
    now = timezone.now() + dt.timedelta(minutes=minutes)
    catalog_probe(now=now)
    forget_catalog()  # other processes follow within GATEWAY_CATALOG_SECONDS
    return now


def health(gateway, model: str) -> dict:
    base = gateway.url.removesuffix("/v1")
    return httpx.get(f"{base}/health", params={"model": model}, timeout=10).json()


def test_it_serves_a_model_only_while_its_backend_answers(gateway):
    checked = probe(gateway, base_url=dead_url(), minutes=1)
    with pytest.raises(openai.InternalServerError) as info:
        gateway.client().chat.completions.create(model="chat-small", messages=HELLO)
    assert info.value.status_code == 503
    assert info.value.body["code"] == "model_unavailable"
    assert info.value.response.headers["retry-after"] == "30"
    state = health(gateway, "chat-small")
    assert state["status"] == "down"
    assert dt.datetime.fromisoformat(state["last_check"]) == checked
    assert CatalogModel.objects.get(name="chat-small").active  # the operator's switch stays

    probe(gateway, base_url=f"{gateway.backend_url}/v1", minutes=2)
    answer = gateway.client().chat.completions.create(model="chat-small", messages=HELLO)
    assert answer.choices[0].message.content
    assert health(gateway, "chat-small")["status"] == "up"


def test_it_lists_an_unhealthy_model_as_inactive(gateway):
    probe(gateway, base_url=dead_url(), minutes=1)
    assert gateway.client().models.list().data == []
    response = httpx.get(
        f"{gateway.url}/models-plgrid-format",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
    )
    chat = {m["name"]: m for m in response.json()["data"]}["chat-small"]
    assert chat["status"] == "Inactive" and "Inactive" in chat["tags"]
