"""The gateway (Anvil under uvicorn, the official ``openai`` client) refuses keys of a grant
outside its validity dates with an OpenAI-shaped 403 that names the grant and its dates."""

from __future__ import annotations

import datetime as dt

import httpx
import openai
import pytest
from django.utils import timezone

from apps.grants.models import Grant
from apps.keys.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def ended(world, anvil_server):
    """Bob's key in alice-grant, which ended yesterday; a client for the gateway."""
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    Grant.objects.filter(pk=world.grant.pk).update(
        valid_from=yesterday - dt.timedelta(days=30), valid_until=yesterday
    )
    client = openai.OpenAI(base_url=f"{anvil_server.url}/api/v1", api_key=secret, max_retries=0)
    return client, secret, yesterday


def test_it_refuses_inference_with_403_naming_the_grant_and_dates(ended):
    client, _, yesterday = ended
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="chat-small", messages=HELLO, max_tokens=5)
    assert info.value.status_code == 403
    error = info.value.body
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "permission_error"
    assert f"Grant alice-grant ended on {yesterday:%Y-%m-%d}" in error["message"]
    assert f"until {yesterday:%Y-%m-%d}" in error["message"]


def test_it_refuses_the_models_lists_too(ended, anvil_server):
    client, secret, _ = ended
    with pytest.raises(openai.PermissionDeniedError):
        client.models.list()
    response = httpx.get(
        f"{anvil_server.url}/api/v1/models-plgrid-format",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert response.status_code == 403
    assert "alice-grant" in response.json()["error"]["message"]
