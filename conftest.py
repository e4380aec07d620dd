from __future__ import annotations

import pytest

from tests.world import World, make_world, sign_in_staff

pytest_plugins = ["tests.servers", "tests.browser", "tests.signing_in"]


@pytest.fixture
def world(db) -> World:
    return make_world()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The default PBKDF2 takes a good part of a second per password: far too slow for the
    hundreds of users the tests create. Production keeps the default."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_client(client, admin_user):
    """pytest-django's, past the second factor the admin asks staff for."""
    sign_in_staff(client, admin_user)
    return client
