"""Signing in through an OpenID Connect provider, the whole authorization-code flow against a
real provider on 127.0.0.1 (oidc-provider-mock; ours, tests.idp, for ES256, HS256 and tokens
with a kid): discovery, the redirect with state, nonce and PKCE, the provider's login page, the
token exchange, the signature checked against the provider's JWKS (tokens without a kid), and
the claims made into a person."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.accounts.models import Affiliation, ProviderIdentity, User
from tests.idp import CLIENT_ID
from tests.oidc_mock import AUTHORIZE, TOKEN, WELL_KNOWN

pytestmark = pytest.mark.django_db


def signed_in_user(client) -> User | None:
    response = client.get(reverse("catalog:models"))
    return response.context["user"] if response.status_code == 200 else None


@pytest.mark.parametrize("idp", ["mock", "ES256", "HS256"], indirect=True)
def test_it_signs_in_through_the_whole_flow(oidc, browser, client):
    account = oidc.add_account("ada", given_name="Ada", family_name="Lovelace")
    page = browser.sign_in("ada")
    assert (page.status, page.url) == (200, "http://testserver/models/")
    assert 'data-testid="username">ada<' in page.text
    ask = oidc.authorize_requests[0]
    assert (
        ask["client_id"] == CLIENT_ID and ask["redirect_uri"] == "http://testserver/oidc/callback/"
    )
    assert ask["state"] and ask["nonce"] and ask["code_challenge_method"] == "S256"
    user = signed_in_user(client)
    assert (user.username, user.first_name, user.last_name) == ("ada", "Ada", "Lovelace")
    assert user.email == "ada@uni.example.org" and not user.has_usable_password()
    identity = ProviderIdentity.objects.get(user=user)
    assert (identity.issuer, identity.subject) == (oidc.issuer, account.claims["sub"])


def test_it_asks_the_provider_in_the_flows_order(oidc, browser):
    """Discovery, the redirect to the provider's page, the login there, the token exchange,
    the provider's keys (the mock's token names no kid) and userinfo."""
    oidc.add_account("ada")
    assert browser.sign_in("ada").url == "http://testserver/models/"
    assert oidc.requests == [
        ("GET", WELL_KNOWN),
        ("GET", AUTHORIZE),
        ("POST", AUTHORIZE),
        ("POST", TOKEN),
        ("GET", "/jwks"),
        ("GET", "/userinfo"),
    ]
    browser.client.logout()
    browser.sign_in("ada")
    assert oidc.discovery_reads == 1  # kept from the first sign-in; the keys are read again
    assert oidc.requests.count(("GET", "/jwks")) == 2


@pytest.mark.parametrize("idp", ["RS256"], indirect=True)
def test_it_verifies_a_token_with_a_kid_too(settings, idp, browser, client):
    from tests.signing_in import configure_oidc

    idp.with_kid = True
    configure_oidc(settings, idp)
    idp.add_account("ada")
    assert browser.sign_in("ada").url == "http://testserver/models/"


def test_it_works_with_the_endpoints_set_one_by_one(settings, idp, browser):
    from tests.signing_in import configure_oidc

    configure_oidc(
        settings,
        idp,
        OIDC_OP_DISCOVERY_URL="",
        OIDC_OP_ISSUER=idp.issuer,
        OIDC_OP_AUTHORIZATION_ENDPOINT=f"{idp.issuer}{AUTHORIZE}",
        OIDC_OP_TOKEN_ENDPOINT=f"{idp.issuer}{TOKEN}",
        OIDC_OP_USER_ENDPOINT=f"{idp.issuer}/userinfo",
        OIDC_OP_JWKS_ENDPOINT=f"{idp.issuer}/jwks",
    )
    idp.add_account("ada")
    assert browser.sign_in("ada").url == "http://testserver/models/"
    assert idp.discovery_reads == 0


def test_it_updates_name_username_and_email_at_each_sign_in(oidc, browser, client):
    account = oidc.add_account("ada")
    browser.sign_in("ada")
    client.logout()
    account.claims |= {
        "preferred_username": "ada.king",
        "email": "ada.king@uni.example.org",
        "family_name": "King",
    }
    browser.sign_in("ada")
    user = User.objects.get()
    assert (user.username, user.email, user.last_name) == (
        "ada.king",
        "ada.king@uni.example.org",
        "King",
    )


def test_it_gives_a_taken_username_a_suffix_of_its_own(oidc, browser, world):
    oidc.add_account("bob")  # another person than the local bob
    browser.sign_in("bob")
    newcomer = User.objects.get(provider_identities__isnull=False)
    assert newcomer.username.startswith("bob-") and newcomer != world.bob


def test_it_knows_people_by_issuer_and_subject_not_by_email(oidc, browser, world):
    oidc.add_account("robert", email="bob@example.org")  # the local bob's address
    browser.sign_in("robert")
    user = User.objects.get(provider_identities__isnull=False)
    assert user != world.bob and user.username == "robert"


def test_it_links_a_local_account_by_a_verified_email_when_told_to(settings, oidc, browser, world):
    settings.OIDC_LINK_BY_EMAIL = True
    oidc.add_account("robert", email="BOB@example.org")
    browser.sign_in("robert")
    assert ProviderIdentity.objects.get().user == world.bob


def test_it_never_links_by_an_unverified_email(settings, oidc, browser, world):
    settings.OIDC_LINK_BY_EMAIL = True
    oidc.add_account("robert", email="bob@example.org", email_verified=False)
    browser.sign_in("robert")
    assert ProviderIdentity.objects.get().user != world.bob


def test_it_never_takes_over_a_staff_account_by_email(settings, oidc, browser, world):
    settings.OIDC_LINK_BY_EMAIL = True
    User.objects.filter(pk=world.alice.pk).update(is_staff=True)
    oidc.add_account("alicia", email="alice@example.org")
    page = browser.sign_in("alicia")
    assert page.status == 403 and "never taken over by e-mail" in page.text
    assert not ProviderIdentity.objects.exists()


def test_it_keeps_the_same_person_when_their_email_changes(oidc, browser, client):
    account = oidc.add_account("ada")
    browser.sign_in("ada")
    client.logout()
    account.claims["email"] = "someone.new@uni.example.org"
    browser.sign_in("ada")
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("claim", "affiliation"),
    [
        ("staff", Affiliation.ACADEMIC),
        ("company", Affiliation.COMMERCIAL),
        (["student", "company"], Affiliation.COMMERCIAL),
        ("alumni", Affiliation.COMMERCIAL),  # unmapped: OIDC_AFFILIATION_DEFAULT
        (None, Affiliation.COMMERCIAL),
    ],
)
def test_it_maps_the_affiliation_claim(oidc, browser, claim, affiliation):
    oidc.add_account("ada", **({} if claim is None else {"affiliation": claim}))
    browser.sign_in("ada")
    assert User.objects.get().affiliation == affiliation


def test_it_leaves_the_affiliation_alone_without_an_affiliation_claim(settings, oidc, browser):
    settings.OIDC_AFFILIATION_CLAIM = ""
    oidc.add_account("ada", affiliation="company")
    browser.sign_in("ada")
    assert User.objects.get().affiliation == Affiliation.ACADEMIC  # the model's default
