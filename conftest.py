from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.world import World, make_world, sign_in_staff

pytest_plugins = ["tests.servers", "tests.browser", "tests.signing_in"]

# Hypothesis (the ledger's state machine, apps/usage/tests/test_ledger_state_machine.py): each
# step runs on PostgreSQL, so a run is bounded by examples and steps, not by a deadline.
# "default" keeps `make test` within about a minute; HYPOTHESIS_PROFILE=nightly searches longer.
settings.register_profile("default", max_examples=25, stateful_step_count=25, deadline=None)
settings.register_profile("nightly", max_examples=400, stateful_step_count=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "default")


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
