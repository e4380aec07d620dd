from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.keys.models import ApiKey

_prefixes = itertools.count()


def make_key(world, *, owner=None, name=None, **limits) -> ApiKey:
    """An API key of the world's grant; the secret is irrelevant to accounting."""
    number = next(_prefixes)
    return ApiKey.objects.create(
        grant=world.grant,
        owner=owner or world.alice,
        name=name or f"key-{number}",
        lookup_prefix=f"usage{number:08d}",
        digest="x" * 64,
        expires_at=timezone.now() + dt.timedelta(days=30),
        **limits,
    )


def place(key, world, *, prompt_tokens=1000, max_completion_tokens=1000, **options):
    """A hold for the world's chat model (0.5 / 1.5 credits per 1M tokens)."""
    from apps.usage.services import hold_place

    return hold_place(
        api_key_id=key.pk,
        grant_id=key.grant_id,
        user_id=key.owner_id,
        catalog_model_id=world.chat_model.pk,
        prompt_tokens=prompt_tokens,
        max_completion_tokens=max_completion_tokens,
        **options,
    )


@pytest.fixture
def key(world) -> ApiKey:
    return make_key(world)


# 1000 prompt + 1000 completion tokens of chat-small: 0.0005 + 0.0015 credits.
REQUEST_COST = Decimal("0.002")
