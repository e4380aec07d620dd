"""API keys and management keys in a real browser: the secret is shown once, then only managed."""

from __future__ import annotations

import json
import re

import pytest

from apps.keys.auth import Refusal, api_key_authenticate, management_key_authenticate
from apps.keys.services import api_key_create

pytestmark = pytest.mark.browser


def confirm(page, action: str) -> None:
    assert page.locator("h1").inner_text().startswith(f"{action} ")
    page.click("[data-testid=confirm]")


def test_it_generates_a_key_shows_it_once_and_manages_it(world, page, sign_in):
    sign_in("alice")
    page.click("nav >> text=Grants")
    page.click("[data-grant=alice-grant]")
    page.click("[data-testid=generate-key]")

    assert page.locator("select[name=grant] option:checked").inner_text() == "alice-grant"
    assert page.input_value("input[name=expires_at]")  # prefilled, 30 days ahead
    page.fill("input[name=name]", "browser-key")
    page.fill("input[name=comment]", "made in Chromium")
    page.fill("input[name=monthly_limit]", "10")
    page.click("button:text-is('Generate')")

    secret = page.input_value("[data-testid=secret]")
    assert re.fullmatch(r"anv-[0-9a-f]{12}[A-Za-z0-9]{40}", secret)
    assert "can not show it again" in page.inner_text("[data-testid=secret-warning]")
    page.click("[data-testid=copy]")
    page.wait_for_selector("[data-testid=copy]:has-text('Copied')")
    assert api_key_authenticate(secret=secret).ok

    page.reload()
    assert secret not in page.content()
    assert page.locator("[data-testid=secret]").count() == 0
    assert "can not be shown again" in page.inner_text(".messages")
    assert page.locator("h1").inner_text() == "API key browser-key"

    page.click("text=Change limits")
    assert page.locator("input[name=expires_at]").count() == 0
    page.fill("input[name=monthly_limit]", "20")
    page.fill("input[name=total_limit]", "100")
    page.click("button:text-is('Save limits')")
    assert page.inner_text("[data-testid=monthly-limit]") == "20"
    assert page.inner_text("[data-testid=total-limit]") == "100"

    page.click("a.button >> text=Revoke")
    confirm(page, "Revoke")
    row = page.locator("tr[data-key=browser-key]")
    assert row.locator("[data-testid=status]").inner_text() == "Revoked"
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED

    row.locator("text=Archive").click()
    confirm(page, "Archive")
    assert page.locator("a.chip.selected").inner_text() == "Archived keys"
    assert page.locator("tr[data-key=browser-key]").count() == 1
    page.click("a.chip >> text=API keys")
    assert page.locator("tr[data-key=browser-key]").count() == 0


def test_it_creates_and_revokes_a_management_key(world, page, sign_in):
    sign_in("bob")
    page.click("nav >> text=Management keys")
    page.fill("input[name=name]", "ci-pipeline")
    page.click("button:text-is('Create management key')")

    secret = page.input_value("[data-testid=secret]")
    assert secret.startswith("anvm-")
    assert management_key_authenticate(secret=secret).ok
    page.click("text=Done")

    row = page.locator("tr[data-key=ci-pipeline]")
    assert row.locator("[data-testid=status]").inner_text() == "Active"
    assert secret not in page.content()
    row.locator("text=Revoke").click()
    confirm(page, "Revoke")
    assert row.locator("[data-testid=status]").inner_text() == "Revoked"
    assert management_key_authenticate(secret=secret).refusal == Refusal.REVOKED


def test_it_serves_swagger_ui_with_authorize_from_our_own_server(
    world, page, sign_in, anvil_server
):
    elsewhere = []
    page.on(
        "request",
        lambda request: None if request.url.startswith(anvil_server.url) else elsewhere.append(1),
    )
    sign_in("alice")
    page.click("nav >> text=API docs")
    page.wait_for_selector("button.authorize")
    page.wait_for_selector("[data-path='/api/v1/management/api_keys/create']")
    page.click("#operations-API_keys-api_keys_list .opblock-summary")
    page.click("button:text-is('Try it out')")
    page.click("button:text-is('Execute')")
    page.wait_for_selector(".live-responses-table .response-col_status:text-is('200')")
    assert elsewhere == []


def test_swagger_ui_tries_a_streamed_chat_completion_with_a_pasted_api_key(
    world, page, sign_in, devbackend
):
    """The guide's *Try it out*: paste an API key under Authorize, run chat completions with
    stream: true, and read the stream as text."""
    _, secret = api_key_create(grant=world.grant, owner=world.alice, name="swagger-key")
    sign_in("alice")
    page.goto("/api/docs")
    page.click("button.authorize")
    scheme = page.locator(".auth-container", has_text=re.compile(r"^ApiKey\W+\(http, Bearer\)"))
    scheme.locator("input").fill(secret)
    scheme.locator("button.authorize").click()
    page.click("button.btn-done")

    page.click("#operations-Inference-chat_completions_create .opblock-summary")
    operation = page.locator("#operations-Inference-chat_completions_create")
    operation.locator("button:text-is('Try it out')").click()
    body = {
        "model": world.chat_model.name,
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 20,
        "stream": True,
    }
    operation.locator("textarea.body-param__text").fill(json.dumps(body))
    operation.locator("button:text-is('Execute')").click()
    operation.locator(".live-responses-table .response-col_status:text-is('200')").wait_for()
    answer = operation.locator(".live-responses-table .response-col_description pre").first
    text = answer.inner_text()
    assert "chat.completion.chunk" in text and "data: [DONE]" in text
    contents = [
        json.loads(line[len("data: ") :])["choices"][0]["delta"].get("content") or ""
        for line in text.splitlines()
        if line.startswith("data: {") and '"choices":[{' in line
    ]
    assert "".join(contents).strip()  # the model's words, streamed
