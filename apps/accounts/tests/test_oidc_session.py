"""After signing in through the provider: signing out of Anvil ends the provider's session too,
and an old session is renewed silently at the provider (prompt=none), as mozilla-django-oidc
does, or ends when the provider's has. Against our own provider (tests.idp): oidc-provider-mock
keeps no session of its own, so it can neither renew one silently nor end one."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.parametrize("idp", ["RS256"], indirect=True)]


def sign_out(browser, client):
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    return browser.get(response["Location"])


def test_it_ends_the_providers_session_when_signing_out(oidc, browser, client):
    oidc.add_account("ada")
    browser.sign_in("ada")
    page = sign_out(browser, client)
    assert oidc.ended_sessions == 1 and page.url == "http://testserver/accounts/login/"
    assert "_auth_user_id" not in client.session
    assert 'action="/authorize"' in browser.get("/oidc/authenticate/").text  # asks again


def test_it_signs_a_local_account_out_locally(oidc, browser, client, world):
    client.force_login(world.bob)
    page = sign_out(browser, client)
    assert oidc.ended_sessions == 0 and page.url == "http://testserver/accounts/login/"


def expire_session(client) -> None:
    session = client.session
    session["oidc_id_token_expiration"] = time.time() - 1
    session.save()


def test_it_renews_an_old_session_silently_at_the_provider(oidc, browser, client):
    oidc.add_account("ada")
    browser.sign_in("ada")
    expire_session(client)
    page = browser.get("/grants/")
    assert (page.status, page.url) == (200, "http://testserver/grants/")
    assert oidc.authorize_requests[-1]["prompt"] == "none"
    assert client.session["oidc_id_token_expiration"] > time.time()


def test_it_signs_out_when_the_providers_session_has_ended(oidc, browser, client):
    oidc.add_account("ada")
    browser.sign_in("ada")
    oidc.sessions.clear()
    expire_session(client)
    page = browser.get("/grants/")
    assert page.url == "http://testserver/accounts/login/"
    assert "Your session at Test University ended: sign in again." in page.text
    assert "_auth_user_id" not in client.session
