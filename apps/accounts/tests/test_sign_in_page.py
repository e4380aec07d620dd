"""The sign-in page offers "Sign in with <label>" only when a provider is configured, beside the
local form unless LOCAL_LOGIN hides it (never on the way to the admin), and sign-up only while
it is open."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

BUTTON = 'data-testid="oidc-sign-in"'
LOCAL_FORM = 'data-testid="local-sign-in"'


def sign_in_page(client, query: str = "") -> str:
    response = client.get(f"/accounts/login/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_only_the_local_form_without_a_provider(client):
    page = sign_in_page(client)
    assert BUTTON not in page and "Sign in with" not in page
    assert LOCAL_FORM in page and 'href="/accounts/signup/"' in page


def test_it_offers_the_provider_with_its_label_beside_the_local_form(oidc, client):
    page = sign_in_page(client)
    assert BUTTON in page and "Sign in with Test University" in page
    assert LOCAL_FORM in page


def test_it_carries_next_through_the_provider(oidc, client):
    page = sign_in_page(client, "?next=/grants/")
    assert 'href="/oidc/authenticate/?next=/grants/"' in page


def test_it_hides_the_local_form_and_sign_up_with_local_login_off(settings, oidc, client):
    settings.LOCAL_LOGIN = False
    page = sign_in_page(client)
    assert BUTTON in page and LOCAL_FORM not in page and "/accounts/signup/" not in page
    assert client.get("/accounts/signup/").status_code == 200  # allauth's "sign-up closed"
    assert b"closed" in client.get("/accounts/signup/").content.lower()


def test_it_shows_the_local_form_on_the_way_to_the_admin_all_the_same(settings, oidc, client):
    settings.LOCAL_LOGIN = False
    assert LOCAL_FORM in sign_in_page(client, "?next=/admin/")


def test_it_hides_sign_up_when_it_is_closed(settings, client):
    settings.SIGNUP_OPEN = False
    assert "/accounts/signup/" not in sign_in_page(client)
