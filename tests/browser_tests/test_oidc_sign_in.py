"""In Chromium: "Sign in with Test University" on Anvil's sign-in page, the provider's own page
(oidc-provider-mock on 127.0.0.1), and back on the portal with the teams the claims named."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.grants.models import Grant
from apps.teams.models import Team
from tests.oidc_mock import AUTHORIZE
from tests.signing_in import configure_oidc

pytestmark = pytest.mark.browser


def grant_of_new_team(team: str, identifier: str) -> Grant:
    today = timezone.localdate()
    return Grant.objects.create(
        team=Team.objects.create(name=team),
        identifier=identifier,
        credits_allocated=Decimal("50"),
        valid_from=today,
        valid_until=today + dt.timedelta(days=30),
    )


def test_it_signs_in_at_the_providers_page_and_lands_with_the_claimed_teams(
    settings, idp, world, anvil_server, page
):
    configure_oidc(settings, idp)
    grant_of_new_team("plg-team-7", "plg7-gpu")
    grant_of_new_team("plg-team-9", "plg9-gpu")  # not named by the claim
    ada = idp.add_account("ada", anvil_teams=["a-team:manager", "plg-team-7:member"])

    page.goto("/accounts/login/")
    page.click("text=Sign in with Test University")
    page.wait_for_url(f"{idp.issuer}{AUTHORIZE}?*")
    page.fill("input[name=sub]", ada.claims["sub"])  # the mock's sign-in: who, no password
    page.click("button:text-is('Authorize')")
    page.wait_for_selector("[data-testid=username]")
    assert page.url == f"{anvil_server.url}/models/"
    assert page.locator("[data-testid=username]").inner_text() == "ada"

    page.click("nav >> text=Grants")
    tiles = page.locator("[data-testid=grant-tile]")
    assert sorted(tiles.locator("[data-grant]").all_inner_texts()) == ["alice-grant", "plg7-gpu"]
    assert "Team plg-team-7" in tiles.all_inner_texts()[1] + tiles.all_inner_texts()[0]

    page.click("text=Sign out")
    page.click("button:text-is('End session')")  # the provider's end-session page
    page.wait_for_url(f"{anvil_server.url}/accounts/login/")
    assert idp.ended_sessions == 1
