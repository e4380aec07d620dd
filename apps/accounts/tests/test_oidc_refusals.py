"""Every way an OpenID Connect sign-in can fail ends on a page that says what happened, with
nobody signed in, never an error 500: a tampered or foreign signature, a wrong issuer or
audience, an expired token, a replayed or forged state, a reused nonce, the provider down or
saying no, a missing claim, an unverified e-mail where one is required, a deactivated account.

The provider is oidc-provider-mock; where it can not be made to sign a wrong token, a layer
between it and Anvil changes its answer (tests.oidc_mock). Tokens the mock never signs
(expired, without expiry or nonce, from a key outside the JWKS, ES256 and HS256) come from
our own provider, tests.idp."""

from __future__ import annotations

import time

import jwt
import pytest

from apps.accounts.models import User
from tests.oidc_mock import OTHER_CLIENT
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


def refusal_logged(caplog) -> str:
    """Why the token was refused, as the log says."""
    said = [r.getMessage() for r in caplog.records if "token refused" in r.getMessage()]
    assert len(said) == 1, said
    return said[0]


def claims_signed(mock) -> dict:
    """The claims of the one ID token the mock signed (unchecked: the test only looks)."""
    [answer] = mock.token_answers
    return jwt.decode(answer["id_token"], options={"verify_signature": False})


@pytest.mark.parametrize("idp", ["mock", "ES256", "HS256"], indirect=True)
def test_it_refuses_a_tampered_token(oidc, browser, client, caplog):
    oidc.add_account("ada")
    oidc.tamper = True
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)
    assert "signature fits none of the provider's keys" in refusal_logged(caplog)


def test_it_refuses_a_token_from_another_issuer(oidc, browser, client, caplog):
    """The mock's own key signs it, naming the mock under another name as its issuer."""
    oidc.add_account("ada")
    oidc.issuer_host = oidc.issuer.replace("127.0.0.1", "localhost").removeprefix("http://")
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)
    assert claims_signed(oidc)["iss"] == f"http://{oidc.issuer_host}"
    assert "Invalid issuer" in refusal_logged(caplog)


def test_it_refuses_a_token_issued_to_another_client(oidc, browser, client, caplog):
    oidc.add_account("ada")
    oidc.audience = OTHER_CLIENT
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)
    assert claims_signed(oidc)["aud"] == [OTHER_CLIENT]
    assert "Audience doesn't match" in refusal_logged(caplog)


@pytest.mark.parametrize("idp", ["RS256", "ES256"], indirect=True)
def test_it_refuses_a_token_signed_with_a_key_not_in_the_jwks(oidc, browser, client):
    oidc.add_account("ada")
    oidc.foreign_key = True
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)


@pytest.mark.parametrize("idp", ["RS256"], indirect=True)
@pytest.mark.parametrize(
    "changes",
    [
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


def test_it_refuses_a_reused_nonce(oidc, browser, client, caplog):
    """The first sign-in's token answer, its nonce with it, replayed at the next sign-in."""
    oidc.add_account("ada")
    browser.sign_in("ada")
    client.logout()
    User.objects.all().delete()
    oidc.replay = oidc.token_answers[0]
    assert_refused(browser.sign_in("ada"), 400, NOT_VERIFIED, client)
    assert oidc.nonces[0] != oidc.nonces[1]
    assert "its nonce is not the one this sign-in sent" in refusal_logged(caplog)


def test_it_says_so_when_the_provider_is_down_at_the_start(oidc, browser, client):
    oidc.stop()
    assert_refused(browser.get("/oidc/authenticate/"), 502, UNREACHABLE, client)


def test_it_says_so_when_the_provider_goes_down_before_the_token_exchange(oidc, browser, client):
    oidc.add_account("ada")
    callback = browser.sign_in("ada", stop_at=CALLBACK)
    oidc.stop()
    assert_refused(browser.get(callback.url), 502, UNREACHABLE, client)


def test_it_says_what_the_provider_said_when_it_says_no(oidc, browser, client):
    at_provider = browser.get("/oidc/authenticate/")  # its page: "Authorize" or "Deny"
    page = browser.post(at_provider.url, {"action": "deny"})
    said = "The resource owner or authorization server denied the request"
    assert_refused(page, 403, f"Test University did not sign you in: {said}", client)


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
