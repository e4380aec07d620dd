from __future__ import annotations

import datetime as dt
import inspect
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.core.exceptions import ApplicationError, Conflict, NotFound
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import (
    api_key_archive,
    api_key_change_limits,
    api_key_create,
    management_key_create,
)
from apps.keys.tests.conftest import past, tables_containing
from apps.teams.models import Team

pytestmark = pytest.mark.django_db


def test_it_stores_only_the_lookup_prefix_and_a_digest(world):
    key, secret = api_key_create(grant=world.grant, owner=world.alice, name="k")
    body = secret[len("anv-") + 12 :]
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert not [c for c, v in row.items() if secret in str(v) or body in str(v)]
    assert secret.startswith(f"anv-{row['lookup_prefix']}")
    assert len(row["digest"]) == 64
    assert tables_containing(body) == []


def test_it_stores_no_management_secret_anywhere(world):
    _, secret = management_key_create(owner=world.alice, name="m")
    assert secret.startswith("anvm-")
    assert tables_containing(secret[len("anvm-") + 12 :]) == []


def test_it_sets_every_field(world):
    expires = timezone.now() + dt.timedelta(days=3)
    key, _ = api_key_create(
        grant=world.grant,
        owner=world.bob,
        name="  nightly  ",
        comment="cron job",
        expires_at=expires,
        monthly_limit=Decimal("10.5"),
        total_limit=Decimal("100"),
    )
    key.refresh_from_db()
    assert (key.name, key.comment, key.owner, key.grant) == (
        "nightly",
        "cron job",
        world.bob,
        world.grant,
    )
    assert key.expires_at == expires
    assert (key.monthly_limit, key.total_limit) == (Decimal("10.5"), Decimal("100"))
    assert key.status == "active"


def test_it_expires_keys_after_the_default_number_of_days(world, settings):
    settings.API_KEY_DEFAULT_DAYS = 30
    key, _ = api_key_create(grant=world.grant, owner=world.alice, name="k")
    expected = timezone.now() + dt.timedelta(days=30)
    assert abs(key.expires_at - expected) < dt.timedelta(minutes=1)


def test_it_refuses_an_expiry_in_the_past(world):
    with pytest.raises(ApplicationError) as caught:
        api_key_create(grant=world.grant, owner=world.alice, name="k", expires_at=past())
    assert caught.value.param == "expires_at"
    assert not ApiKey.objects.exists()


def test_it_refuses_a_blank_name(world):
    with pytest.raises(ApplicationError) as caught:
        api_key_create(grant=world.grant, owner=world.alice, name="   ")
    assert caught.value.param == "name"


def test_it_refuses_negative_limits(world):
    with pytest.raises(ApplicationError) as caught:
        api_key_create(grant=world.grant, owner=world.alice, name="k", total_limit=Decimal(-1))
    assert caught.value.param == "total_limit"


def test_it_refuses_an_owner_outside_the_grants_team(world):
    with pytest.raises(NotFound):
        api_key_create(grant=world.grant, owner=world.charlie, name="k")


def test_it_refuses_a_name_already_used_in_the_grant(world):
    api_key_create(grant=world.grant, owner=world.alice, name="shared")
    with pytest.raises(Conflict) as caught:
        api_key_create(grant=world.grant, owner=world.bob, name="shared")
    assert caught.value.param == "name"
    assert '"shared"' in caught.value.message
    assert ApiKey.objects.filter(name="shared").count() == 1


def test_it_keeps_the_name_taken_by_a_revoked_key(world):
    key, _ = api_key_create(grant=world.grant, owner=world.alice, name="shared")
    key.revoked_at = timezone.now()
    key.save()
    with pytest.raises(Conflict):
        api_key_create(grant=world.grant, owner=world.alice, name="shared")


def test_it_frees_the_name_when_the_key_is_archived(world):
    old, _ = api_key_create(grant=world.grant, owner=world.alice, name="shared")
    api_key_archive(key=old)
    new, _ = api_key_create(grant=world.grant, owner=world.alice, name="shared")
    assert new.pk != old.pk
    assert ApiKey.objects.filter(name="shared").count() == 2


def test_it_allows_the_same_name_in_another_grant(world):
    other = Grant.objects.create(
        team=world.team,
        identifier="second-grant",
        credits_allocated=10,
        valid_from=world.grant.valid_from,
        valid_until=world.grant.valid_until,
    )
    api_key_create(grant=world.grant, owner=world.alice, name="shared")
    api_key_create(grant=other, owner=world.alice, name="shared")
    assert ApiKey.objects.filter(name="shared").count() == 2


def test_it_enforces_the_name_rule_in_the_database_too(world):
    from django.db import IntegrityError, transaction

    key, _ = api_key_create(grant=world.grant, owner=world.alice, name="shared")
    twin = ApiKey(
        grant=world.grant,
        owner=world.bob,
        name="shared",
        expires_at=key.expires_at,
        lookup_prefix="0" * 12,
        digest="0" * 64,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()


def test_it_offers_no_way_to_change_the_expiry(world, alice_key):
    key, _ = alice_key
    assert "expires_at" not in inspect.signature(api_key_change_limits).parameters
    with pytest.raises(TypeError):
        api_key_change_limits(
            key=key, monthly_limit=None, total_limit=None, expires_at=timezone.now()
        )


def test_it_changes_limits_and_keeps_the_expiry(world, alice_key):
    key, _ = alice_key
    expires = key.expires_at
    api_key_change_limits(key=key, monthly_limit=Decimal("5"), total_limit=None)
    key.refresh_from_db()
    assert (key.monthly_limit, key.total_limit, key.expires_at) == (Decimal("5"), None, expires)


def test_it_refuses_limit_changes_on_archived_keys(world, alice_key):
    key, _ = alice_key
    api_key_archive(key=key)
    with pytest.raises(ApplicationError):
        api_key_change_limits(key=key, monthly_limit=Decimal("5"), total_limit=None)


def test_it_archives_by_revoking_at_once(world, alice_key):
    key, _ = alice_key
    api_key_archive(key=key)
    key.refresh_from_db()
    assert key.revoked_at and key.archived_at
    assert key.status == "revoked"


def test_it_keeps_each_team_to_its_own_grants(world):
    other_team = Team.objects.create(name="b-team")
    other = Grant.objects.create(
        team=other_team,
        identifier="b-grant",
        credits_allocated=10,
        valid_from=world.grant.valid_from,
        valid_until=world.grant.valid_until,
    )
    with pytest.raises(NotFound):
        api_key_create(grant=other, owner=world.alice, name="k")
