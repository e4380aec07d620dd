from __future__ import annotations

import pytest

from apps.accounts.models import User
from apps.keys.services import api_key_create


@pytest.fixture
def operator(db) -> User:
    return User.objects.create_superuser("operator", "op@example.org", "pw-operator-123")


@pytest.fixture
def bob_key(world):
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    return key
