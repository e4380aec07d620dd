"""An account that signs in only through the identity provider (a provider identity, no Anvil
password) gets no Anvil password from allauth's pages: the password page and a reset link say
so instead, and asking for a reset mails no link. Accounts with a password of their own, linked
to the provider or not, reset it as before."""

from __future__ import annotations

import re

import pytest
from allauth.account.forms import default_token_generator
from allauth.account.utils import user_pk_to_url_str
from django.core import mail
from django.core.exceptions import PermissionDenied

from apps.accounts.adapters import AccountAdapter
from apps.accounts.models import ProviderIdentity, User
from tests.world import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-new-password-0123456789"
REFUSED = "This account signs in with Test University and has no Anvil password"
LINK = re.compile(r"http://testserver(/accounts/password/reset/key/\S+/)")


def provider_only(oidc, browser) -> User:
    """Ada, as her first sign-in through the provider made her."""
    oidc.add_account("ada")
    browser.sign_in("ada")
    browser.client.logout()
    ada = User.objects.get(username="ada")
    assert not ada.has_usable_password() and ada.signs_in_only_through_provider
    return ada


def reset_link(user: User) -> str:
    key = default_token_generator.make_token(user)
    return f"/accounts/password/reset/key/{user_pk_to_url_str(user)}-{key}/"


def assert_no_password(user: User) -> None:
    user.refresh_from_db()
    assert not user.has_usable_password()


def test_it_refuses_to_set_a_password_for_a_provider_only_account(oidc, browser, client):
    ada = provider_only(oidc, browser)
    client.force_login(ada)
    page = client.get("/accounts/password/set/")
    assert page.status_code == 403 and REFUSED in page.content.decode()
    posted = client.post(
        "/accounts/password/set/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert posted.status_code == 403
    change = client.get("/accounts/password/change/", follow=True)  # allauth: on to "set"
    assert change.status_code == 403 and REFUSED in change.content.decode()
    assert_no_password(ada)


def test_it_mails_no_reset_link_to_a_provider_only_account(oidc, browser, client):
    ada = provider_only(oidc, browser)
    page = client.get("/accounts/password/reset/")
    assert "If you sign in with Test University, your password is theirs" in page.content.decode()
    done = client.post("/accounts/password/reset/", {"email": ada.email})
    assert done.status_code == 302  # the same "we have sent you an e-mail" as for anyone
    [sent] = mail.outbox
    assert sent.to == [ada.email] and "No Anvil password to reset" in sent.subject
    assert "signs in with Test University" in sent.body and not LINK.search(sent.body)
    assert "http://testserver/accounts/login/" in sent.body
    assert_no_password(ada)


def test_it_refuses_a_reset_link_for_a_provider_only_account(oidc, browser, client):
    ada = provider_only(oidc, browser)
    page = client.get(reset_link(ada), follow=True)  # allauth: on to a URL without the key
    assert page.status_code == 403 and REFUSED in page.content.decode()
    posted = client.post(
        page.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert posted.status_code == 403
    assert_no_password(ada)


def test_it_never_sets_one_through_allauths_adapter(oidc, browser):
    ada = provider_only(oidc, browser)
    with pytest.raises(PermissionDenied):
        AccountAdapter().set_password(ada, NEW_PASSWORD)
    assert_no_password(ada)


@pytest.mark.parametrize("linked", [False, True], ids=["local", "linked-to-the-provider"])
def test_it_still_resets_a_password_of_the_accounts_own(client, world, linked):
    if linked:
        ProviderIdentity.objects.create(user=world.bob, issuer="http://idp", subject="bob")
    assert not world.bob.signs_in_only_through_provider
    client.post("/accounts/password/reset/", {"email": world.bob.email})
    [sent] = mail.outbox
    page = client.get(LINK.search(sent.body).group(1), follow=True)
    done = client.post(
        page.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert done.status_code == 302
    world.bob.refresh_from_db()
    assert world.bob.check_password(NEW_PASSWORD) and not world.bob.check_password(PASSWORD)
