from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.keys.models import ApiKey


def make_key(world, *, owner, name) -> ApiKey:
    return ApiKey.objects.create(
        grant=world.grant, owner=owner, name=name, lookup_prefix=f"st{name[:10]}",
        digest="x" * 64, expires_at=timezone.now() + dt.timedelta(days=400),
    )  # fmt: skip


@pytest.fixture
def keys(world) -> dict[str, ApiKey]:
    return {
        "alice": make_key(world, owner=world.alice, name="alice-key"),
        "bob": make_key(world, owner=world.bob, name="bob-key"),
    }
