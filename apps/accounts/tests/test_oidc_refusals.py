"""Every way an OpenID Connect sign-in can fail ends on a page that says what happened, with
nobody signed in, never an error 500: a tampered or foreign signature, a wrong issuer or
audience, an expired token, a replayed or forged state, a reused nonce, the provider down or
saying no, a missing claim, an unverified e-mail where one is required, a deactivated account."""

from __future__ import annotations

import time

import pytest

from apps.accounts.models import User
from tests.signing_in import CALLBACK

pytestmark = pytest.mark.django_db

NOT_VERIFIED = "The answer from Test University could not be verified"
START_AGAIN = "This sign-in was not started in this browser, or it was finished already"
UNREACHABLE = "Test University could not be reached"


def assert_refused(page, status: int, says: str, client) -> None:
    assert page.status == status, page.text[-2000:]
    assert 'data-testid="sign-in-failed"' in page.text and says in page.text
    assert "_auth_user_id" not in client.session
    assert not User.objects.filter(provider_identities__isnull=False).exists()


@pytest.mark.parametrize("idp", ["RS256", "ES256", "HS256"], indirect=True)
def test_it_refuses_a_tampered_token(oidc, browser, client):
    oidc.add_account("ada")
    oidc.tamper = True
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)


@pytest.mark.parametrize("idp", ["RS256", "ES256"], indirect=True)
def test_it_refuses_a_token_signed_with_a_key_not_in_the_jwks(oidc, browser, client):
    oidc.add_account("ada")
    oidc.foreign_key = True
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"iss": "http://127.0.0.1:9/another-provider"}, id="wrong-issuer"),
        pytest.param({"aud": "another-client"}, id="wrong-audience"),
        pytest.param({"aud": ["anvil-portal", "another-client"]}, id="shared-audience-no-azp"),
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"exp": None}, id="no-expiry"),
        pytest.param({"nonce": None}, id="no-nonce"),
    ],
)
def test_it_refuses_a_token_with_a_wrong_claim(oidc, browser, client, changes):
    oidc.add_account("ada")
    oidc.id_token_changes = changes
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)


def test_it_refuses_a_token_signed_with_another_algorithm(settings, oidc, browser, client):
    settings.OIDC_RP_SIGN_ALGO = "ES256"  # the provider signs RS256
    oidc.add_account("ada")
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)


def test_it_refuses_a_replayed_state(oidc, browser, client):
    oidc.add_account("ada")
    callback = browser.sign_in("ada", stop_at=CALLBACK)
    assert browser.get(callback.url).url == "http://testserver/models/"
    again = browser.get(callback.url)
    assert again.status == 400 and START_AGAIN in again.text
    assert "_auth_user_id" not in client.session  # the replay signed the person out


def test_it_refuses_a_state_this_browser_did_not_start(oidc, browser, client):
    oidc.add_account("ada")
    callback = browser.sign_in("ada", stop_at=CALLBACK)
    forged = callback.url.replace("state=", "state=forged")
    assert_refused(browser.get(forged), 400, START_AGAIN, client)


def test_it_refuses_a_callback_in_a_browser_that_never_started(oidc, browser, client):
    oidc.add_account("ada")
    callback = browser.sign_in("ada", stop_at=CALLBACK)
    client.cookies.clear()
    assert_refused(browser.get(callback.url), 400, START_AGAIN, client)


def test_it_refuses_a_reused_nonce(oidc, browser, client):
    oidc.add_account("ada")
    browser.sign_in("ada")
    client.logout()
    User.objects.all().delete()
    oidc.id_token_changes = {"nonce": oidc.nonces[0]}  # the first sign-in's, replayed
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)


def test_it_says_so_when_the_provider_is_down_at_the_start(oidc, browser, client):
    oidc.stop()
    assert_refused(browser.get("/oidc/authenticate/"), 502, UNREACHABLE, client)


def test_it_says_so_when_the_provider_goes_down_before_the_token_exchange(oidc, browser, client):
    oidc.add_account("ada")
    callback = browser.sign_in("ada", stop_at=CALLBACK)
    oidc.stop()
    assert_refused(browser.get(callback.url), 502, UNREACHABLE, client)


def test_it_says_what_the_provider_said_when_it_says_no(oidc, browser, client):
    browser.get("/oidc/authenticate/")  # the provider shows its login page; nobody signs in
    state = oidc.authorize_requests[-1]["state"]
    page = browser.get(f"{CALLBACK}?error=access_denied&error_description=Not+today&state={state}")
    assert_refused(page, 403, "Test University did not sign you in: Not today", client)


def test_it_refuses_a_missing_required_claim(settings, oidc, browser, client):
    settings.OIDC_REQUIRED_CLAIMS = ["email", "affiliation"]
    oidc.add_account("ada")
    assert_refused(browser.sign_in("ada"), 403, "did not send the “affiliation” claim", client)


def test_it_refuses_an_unverified_email_where_one_is_required(settings, oidc, browser, client):
    settings.OIDC_REQUIRE_VERIFIED_EMAIL = True
    oidc.add_account("ada", email_verified=False)
    assert_refused(browser.sign_in("ada"), 403, "has not verified your e-mail address", client)


def test_it_refuses_a_deactivated_account(oidc, browser, client):
    oidc.add_account("ada")
    browser.sign_in("ada")
    client.logout()
    User.objects.update(is_active=False)
    page = browser.sign_in("ada")
    assert page.status == 403 and "Your Anvil account is deactivated" in page.text
    assert "_auth_user_id" not in client.session


def test_it_offers_no_provider_sign_in_when_not_configured(client, db):
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get(f"{CALLBACK}?code=x&state=y").status_code == 404
