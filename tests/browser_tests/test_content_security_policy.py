"""The portal under its Content-Security-Policy in Chromium: the main pages draw and their
interactive parts work (charts, the menu on a phone, copy buttons, the playground, Swagger UI)
with no violation reported. (The ``page`` fixture fails any browser test that sees one; this
test walks the pages a user opens most.)"""

from __future__ import annotations

import time

import pytest
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
)
from django.urls import reverse

from apps.accounts.models import User
from apps.keys.services import api_key_create
from tests.world import wait_for_settlements

pytestmark = pytest.mark.browser

STAFF_PASSWORD = "staff-password-0123"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def script_src(response) -> list[str]:
    header = response.headers["content-security-policy"]
    for directive in header.split(";"):
        name, *values = directive.split()
        if name == "script-src":
            return values
    raise AssertionError(f"no script-src in {header}")


def test_the_main_pages_work_under_the_policy(world, page, sign_in, devbackend):
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="csp-key")
    sign_in("bob")
    pages = {
        "dashboard": "/",
        "keys": reverse("keys:list"),
        "grant": reverse("consumption:grant", args=[world.grant.public_id]),
        "key": reverse("consumption:api_key", args=[key.public_id]),
        "playground": reverse("playground:page"),
        "jobs": reverse("jobs:list"),
        "statements": reverse("statements:list"),
        "my usage": reverse("consumption:mine"),
        "api docs": reverse("api-docs"),
    }
    for name, url in pages.items():
        response = page.goto(url)
        assert response.ok, name
        assert script_src(response) == ["'self'"], name
    assert page.csp_violations == []

    # The menu button opens the navigation on a phone.
    page.set_viewport_size(PHONE)
    page.goto(pages["keys"])
    assert not page.locator("nav.mainnav").is_visible()
    page.click("[data-testid=menu]")
    assert page.locator("nav.mainnav a", has_text="Statements").is_visible()
    page.set_viewport_size(DESKTOP)

    # A new key's secret and its copy button.
    page.goto(reverse("keys:create"))
    page.fill("input[name=name]", "csp-copied")
    page.click("button:text-is('Generate')")
    page.click("[data-testid=copy]")
    page.wait_for_selector("[data-testid=copy]:has-text('Copied')")

    # The playground's form streams an answer.
    page.goto(pages["playground"])
    page.select_option("[data-testid=pg-key]", str(key.public_id))
    page.fill("[data-testid=pg-prompt]", "Say hello")
    page.click("[data-testid=pg-send]")
    page.wait_for_selector("[data-testid=pg-charge]:visible")
    assert page.inner_text(".turn.assistant .text").strip()

    # With that request settled, the grant page draws its charts with the vendored Chart.js.
    # (page.evaluate, not wait_for_function: Playwright's polling would itself need eval.)
    wait_for_settlements()
    page.goto(pages["grant"])
    assert page.evaluate("Object.keys(Chart.instances).length") > 0

    # Swagger UI starts, opens an operation and runs it.
    page.goto(pages["api docs"])
    page.click("#operations-API_keys-api_keys_list .opblock-summary")
    page.click("button:text-is('Try it out')")
    page.click("button:text-is('Execute')")
    page.wait_for_selector(".live-responses-table .response-col_status:text-is('200')")

    assert page.csp_violations == []


def test_an_inline_script_would_be_refused_and_reported(world, page, sign_in):
    """The watch the ``page`` fixture keeps sees what the policy refuses."""
    sign_in("bob")
    page.evaluate(
        """() => {
        const script = document.createElement("script");
        script.textContent = "window.ranInline = true";
        document.body.append(script);
    }"""
    )
    assert page.evaluate("window.ranInline") is None
    page.wait_for_timeout(300)  # the report arrives through the binding
    assert page.csp_violations, "the refused inline script was not reported"
    assert all("inline" in v for v in page.csp_violations), page.csp_violations
    page.csp_violations.clear()  # expected here: don't fail the test at teardown


def staff_signs_in(page, *, totp_secret: str | None = None) -> None:
    user = User.objects.create_user(
        "operator", "operator@example.org", STAFF_PASSWORD, is_staff=True, is_superuser=True
    )
    if totp_secret:
        TOTP.activate(user, totp_secret)
    page.goto("/accounts/login/?next=/admin/")
    page.fill("input[name=login]", "operator")
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("button[type=submit]")


def test_staff_see_the_qr_code_that_sets_up_their_second_factor(world, page):
    staff_signs_in(page)
    page.wait_for_url("**/accounts/2fa/totp/activate/**")
    qr = page.locator("img[src^='data:']")
    assert qr.evaluate("image => image.complete && image.naturalWidth > 0")


def test_the_admin_works_under_the_policy(world, page):
    secret = generate_totp_secret()
    staff_signs_in(page, totp_secret=secret)
    page.wait_for_url("**/accounts/2fa/authenticate/**")
    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    page.fill("input[name=code]", code)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/")
    for url in ("/admin/accounts/user/", "/admin/teams/team/add/", "/admin/grants/grant/"):
        response = page.goto(url)
        assert response.ok and script_src(response) == ["'self'"], url
    # The change list's "select all" box is the admin's own script.
    page.goto("/admin/accounts/user/")
    page.check("#action-toggle")
    assert page.locator("input.action-select").first.is_checked()
    assert page.csp_violations == []
