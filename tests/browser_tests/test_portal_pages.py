"""Every portal page on a phone (390x844) and a desktop (1366x900), as a researcher (Bob) and
as a manager (Alice): nothing wider than the screen, every navigation link reachable (through
the menu on the phone), no console errors, and no serious or critical axe-core violation."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from apps.keys.services import api_key_create, management_key_create

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent.parent / "vendor" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
NAV = ["Quickstart", "Models", "Try a model", "Jobs", "Grants", "API keys", "Management keys",
       "My usage", "Statements", "API docs"]  # fmt: skip


def pages_of(world, user) -> list[str]:
    key, _ = api_key_create(grant=world.grant, owner=user, name=f"{user.username}-key")
    management_key_create(owner=user, name=f"{user.username}-ci")
    grant = world.grant.public_id
    urls = [
        reverse("keys:quickstart"), reverse("catalog:models"), reverse("grants:list"),
        reverse("consumption:grant", args=[grant]), reverse("keys:list"),
        reverse("keys:archived"), reverse("keys:create"),
        reverse("consumption:api_key", args=[key.public_id]),
        reverse("keys:change_limits", args=[key.public_id]),
        reverse("keys:revoke", args=[key.public_id]), reverse("management_keys:list"),
        reverse("consumption:mine"), reverse("statements:list"), reverse("playground:page"),
        reverse("jobs:list"),
        "/no-such-page/",
    ]  # fmt: skip
    if user == world.alice:
        urls += [
            reverse("audit:grant", args=[grant]),
            reverse("limits:all_members", args=[grant]),
            reverse("limits:member", args=[grant, world.bob.public_id]),
        ]
    else:
        urls += [reverse("audit:grant", args=[grant])]  # 403: the error page
    return urls


def assert_fits(page, url: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"{url} is {width} px wide on a {viewport} px screen"


def assert_nav_reachable(page, url: str, phone: bool) -> None:
    if phone:
        assert not page.locator("nav.mainnav").is_visible()
        page.click("[data-testid=menu]")
    for text in NAV:
        link = page.locator("nav.mainnav a", has_text=text).first
        assert link.is_visible(), f"{text} is not reachable on {url}"
    assert page.locator("button:text-is('Sign out')").is_visible()
    if phone:
        page.click("[data-testid=menu]")
        assert not page.locator("nav.mainnav").is_visible()


def check_page(page, url: str, *, phone: bool, signed_in: bool = True) -> None:
    assert_fits(page, url)
    if signed_in:
        assert_nav_reachable(page, url, phone=phone)
    assert serious_violations(page) == [], url


def serious_violations(page) -> list[str]:
    # Evaluated through the DevTools protocol: a <script> tag with axe's text would be inline
    # script, which the portal's Content-Security-Policy refuses.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("username", ["bob", "alice"])
def test_it_fits_every_page_on_a_phone_and_a_desktop(world, page, sign_in, username):
    user = getattr(world, username)
    urls = pages_of(world, user)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(username)
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        for url in urls:
            page.goto(url)
            refused = "no-such" in url or (username == "bob" and "audit" in url)
            check_page(page, url, phone=size is PHONE)
            # The browser reports the 403/404 answers themselves as console errors.
            assert len(errors) == (1 if refused else 0), (url, errors)
            errors.clear()
        # The page that shows a new key's secret once, with the examples.
        page.goto("/keys/new/")
        page.fill("input[name=name]", f"shown-once-{size['width']}")
        page.click("button:text-is('Generate')")
        page.wait_for_selector("[data-testid=secret]")
        check_page(page, "the secret page", phone=size is PHONE)
        assert errors == []


def test_the_sign_in_page_fits_a_phone(world, page):
    page.set_viewport_size(PHONE)
    page.goto("/accounts/login/")
    check_page(page, "/accounts/login/", phone=True, signed_in=False)


def test_the_api_docs_fit_and_lead_back_to_the_portal(world, page, sign_in):
    sign_in("bob")
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        page.goto("/api/docs")
        page.wait_for_selector("button.authorize")
        check_page(page, "/api/docs", phone=size is PHONE, signed_in=False)
        assert page.locator("nav.anvil-bar a", has_text="Anvil portal").is_visible()
