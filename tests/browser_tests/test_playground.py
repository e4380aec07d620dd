"""The playground in a real browser: an answer streams in and its charge is on the key's page;
an exhausted key is refused with the gateway's own message."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from apps.keys.services import api_key_create
from tests.world import wait_for_settlements

pytestmark = pytest.mark.browser


def test_it_streams_an_answer_charged_to_the_picked_key(world, page, sign_in, devbackend):
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="play-key")
    sign_in("bob")
    page.click("nav >> text=Try a model")
    page.select_option("[data-testid=pg-key]", str(key.public_id))
    page.select_option("[data-testid=pg-model]", "chat-small")
    page.fill("[data-testid=pg-system]", "Answer briefly.")
    page.fill("[data-testid=pg-prompt]", "Say hello")
    page.click("[data-testid=pg-send]")

    page.wait_for_selector("[data-testid=pg-charge]:visible")
    assert page.inner_text(".turn.user .text") == "Say hello"
    assert page.inner_text(".turn.assistant .text").strip()
    shown = page.inner_text("[data-testid=pg-charge]")
    assert "completion tokens" in shown and "credits charged" in shown
    charged = Decimal(shown.split(" credits charged")[0].split(" · ")[-1])
    assert charged > 0

    wait_for_settlements()
    page.goto(f"/keys/{key.public_id}/")
    assert Decimal(page.inner_text("[data-testid=credits-used]")) == charged
    daily = page.locator("[data-testid=table-daily] tbody tr").filter(has_text="1")
    assert daily.count() >= 1  # the request is in the key's consumption


def test_an_exhausted_key_is_refused_with_the_gateways_message(
    world, page, sign_in, devbackend, anvil_server
):
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="spent", total_limit=0)
    api_answer = httpx.post(
        f"{anvil_server.url}/api/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "chat-small", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert api_answer.status_code == 429
    sign_in("bob")
    page.goto("/playground/")
    page.select_option("[data-testid=pg-key]", str(key.public_id))
    page.fill("[data-testid=pg-prompt]", "Hi")
    page.click("[data-testid=pg-send]")

    page.wait_for_selector("[data-testid=pg-error]:visible")
    assert page.inner_text("[data-testid=pg-error]") == api_answer.json()["error"]["message"]
    assert page.locator(".turn.assistant").count() == 0
