"""Staff open the admin only after a second factor (TOTP), and the admin's login is allauth's,
with its rate limits: once, 30 wrong passwords and then the right one got into the admin.
Setting TOTP up right after signing in with the password does not ask for it again."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
)
from django.core.cache import cache

from apps.accounts.models import User

pytestmark = pytest.mark.django_db

STAFF_PASSWORD = "staff-password-0123"
SETUP = "/accounts/2fa/totp/activate/"


@pytest.fixture(autouse=True)
def fresh_counters(settings):
    """allauth's rate-limit counters and used TOTP codes live in the cache: none from before,
    and none left for the next test. A code of the previous 30-second period counts too, so a
    code computed just before a period ends still works when it arrives."""
    settings.MFA_TOTP_TOLERANCE = 1
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user(
        "operator", "operator@example.org", STAFF_PASSWORD, is_staff=True, is_superuser=True
    )


def code(secret: str, *, periods_away: int = 0) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + periods_away))


def with_totp(user: User) -> str:
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def sign_in(client, password: str = STAFF_PASSWORD, *, username: str = "operator"):
    """The admin's way in: /admin/ sends to its login, which sends to allauth's sign-in page,
    whose form is posted."""
    page = client.get("/admin/", follow=True)
    login_url = page.redirect_chain[-1][0]
    assert login_url == "/accounts/login/?next=%2Fadmin%2F", page.redirect_chain
    return client.post(login_url, {"login": username, "password": password})


def test_it_sends_staff_without_a_second_factor_to_set_one_up(client, staff):
    response = sign_in(client)
    assert response["Location"] == "/admin/"
    to_setup = client.get("/admin/")
    assert to_setup.status_code == 302
    assert to_setup["Location"] == "/accounts/2fa/totp/activate/?next=%2Fadmin%2F"
    for page in ("/admin/", "/admin/accounts/user/", "/admin/teams/team/add/"):
        assert client.get(page)["Location"].startswith("/accounts/2fa/totp/activate/")


def test_it_lets_staff_set_up_totp_then_asks_for_a_code_before_the_admin(client, staff):
    sign_in(client)
    setup = client.get("/accounts/2fa/totp/activate/")
    assert setup.status_code == 200  # the sign-in just now stands for the password
    secret = client.session["mfa.totp.secret"]
    wrong = client.post("/accounts/2fa/totp/activate/", {"code": code(secret, periods_away=9)})
    assert wrong.status_code == 200 and not Authenticator.objects.filter(user=staff).exists()
    done = client.post("/accounts/2fa/totp/activate/", {"code": code(secret)})
    assert done.status_code == 302  # to the recovery codes, shown once
    types = set(Authenticator.objects.filter(user=staff).values_list("type", flat=True))
    assert types == {Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES}
    asked = client.get("/admin/")
    assert asked["Location"] == "/accounts/2fa/reauthenticate/?next=%2Fadmin%2F"


def test_it_asks_for_the_password_again_once_the_sign_in_is_minutes_old(client, staff, settings):
    sign_in(client)
    session = client.session
    for record in session[AUTHENTICATION_METHODS_SESSION_KEY]:
        record["at"] -= settings.ACCOUNT_REAUTHENTICATION_TIMEOUT + 1
    session.save()
    asked = client.get(SETUP)
    assert asked["Location"] == "/accounts/reauthenticate/?next=" + quote(SETUP, safe="")
    again = client.post(asked["Location"], {"password": STAFF_PASSWORD})
    assert again["Location"] == SETUP
    assert client.get(SETUP).status_code == 200


def test_it_refuses_a_wrong_totp_code_and_lets_the_right_one_in(client, staff):
    secret = with_totp(staff)
    response = sign_in(client)
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/admin/")["Location"].startswith("/admin/login/")  # not in yet
    wrong = client.post("/accounts/2fa/authenticate/", {"code": code(secret, periods_away=9)})
    assert wrong.status_code == 200 and b"Incorrect code" in wrong.content
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    right = client.post("/accounts/2fa/authenticate/", {"code": code(secret)})
    assert right.status_code == 302 and right["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_it_locks_the_admin_login_after_10_wrong_passwords(client, staff):
    for _ in range(10):
        assert sign_in(client, "wrong-password").status_code == 200
    locked = sign_in(client)
    assert locked.status_code == 200 and b"Too many failed login attempts" in locked.content
    assert client.get("/admin/").status_code == 302
    assert "_auth_user_id" not in client.session


def test_it_locks_the_portal_login_the_same_way(client, world):
    for _ in range(10):
        client.post("/accounts/login/", {"login": "bob", "password": "wrong-password"})
    from tests.world import PASSWORD

    locked = client.post("/accounts/login/", {"login": "bob", "password": PASSWORD})
    assert b"Too many failed login attempts" in locked.content
    assert "_auth_user_id" not in client.session


def test_it_no_longer_takes_passwords_at_the_admins_own_login_form(client, staff):
    """The old way in: the admin's form, 30 wrong passwords, then the right one."""
    for _ in range(30):
        client.post("/admin/login/", {"username": "operator", "password": "wrong-password"})
    response = client.post("/admin/login/", {"username": "operator", "password": STAFF_PASSWORD})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session


def test_it_asks_staff_signed_in_through_the_provider_for_their_code(oidc, browser, client):
    oidc.add_account("operator")
    browser.sign_in("operator")
    staff = User.objects.get(username="operator")
    User.objects.filter(pk=staff.pk).update(is_staff=True, is_superuser=True)
    assert client.get("/admin/")["Location"].startswith("/accounts/2fa/totp/activate/")
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200  # no password to ask
    secret = with_totp(staff)
    asked = client.get("/admin/")
    assert asked["Location"] == "/accounts/2fa/reauthenticate/?next=%2Fadmin%2F"
    wrong = client.post(asked["Location"], {"code": code(secret, periods_away=9)})
    assert wrong.status_code == 200 and client.get("/admin/").status_code == 302
    right = client.post(asked["Location"], {"code": code(secret)})
    assert right["Location"] == "/admin/" and client.get("/admin/").status_code == 200


def test_a_sign_in_through_the_provider_does_not_stand_for_a_code(oidc, browser, client):
    """Turning TOTP off still takes a code: the provider's sign-in took neither it nor an
    Anvil password."""
    oidc.add_account("operator")
    browser.sign_in("operator")
    staff = User.objects.get(username="operator")
    User.objects.filter(pk=staff.pk).update(is_staff=True, is_superuser=True)
    with_totp(staff)
    asked = client.get("/accounts/2fa/totp/deactivate/")
    assert asked["Location"].startswith("/accounts/2fa/reauthenticate/")


def test_it_shows_people_who_are_not_staff_no_admin(client, world):
    client.force_login(world.bob)
    assert client.get("/admin/", follow=True).status_code == 403
