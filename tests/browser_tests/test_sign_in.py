from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_it_signs_in_and_opens_models_and_grants(world, page, sign_in):
    sign_in("bob")
    assert page.request.get("/static/css/anvil.css").status == 200
    page.click("nav >> text=Models")
    row = page.locator("tr[data-model=chat-small]")
    assert "Accessible" in row.inner_text()
    assert "Inaccessible" in page.locator("tr[data-model=embed-small]").inner_text()

    page.click("nav >> text=Grants")
    page.click("[data-grant=alice-grant]")
    assert page.locator("h1").inner_text() == "Grant alice-grant"
    assert page.locator("[data-testid=credits-left]").inner_text() == "1,000"  # thousands separated


def test_it_refuses_a_wrong_password(world, page):
    page.goto("/accounts/login/")
    page.fill("input[name=login]", "bob")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert "not correct" in page.content()
    assert page.locator("[data-testid=username]").count() == 0
