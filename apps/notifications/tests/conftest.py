from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from apps.keys.models import ApiKey

_numbers = itertools.count()


def make_key(world, *, owner=None, expires_in: dt.timedelta, lived: dt.timedelta, **fields):
    """A key of the world's grant created ``lived`` ago, expiring ``expires_in`` from now."""
    number = next(_numbers)
    now = timezone.now()
    return ApiKey.objects.create(
        grant=world.grant, owner=owner or world.bob, name=f"key-{number}",
        lookup_prefix=f"note{number:08d}", digest="x" * 64,
        created=now - lived, expires_at=now + expires_in, **fields,
    )  # fmt: skip


@pytest.fixture
def bob_key(world):
    return make_key(world, expires_in=dt.timedelta(days=300), lived=dt.timedelta(days=1))
