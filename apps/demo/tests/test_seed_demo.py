from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from apps.accounts.models import User
from apps.grants.models import Grant
from apps.teams.models import Membership, Team

pytestmark = pytest.mark.django_db


def seed(settings, *args) -> str:
    settings.DEBUG = True
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_it_prints_exactly_one_json_object(settings, world):
    data = json.loads(seed(settings, "--json"))
    assert set(data) == {"team", "grant", "grant_id", "users", "api_key", "management_key"}
    assert data["team"] == "demo" and data["grant"] == "demo-grant"
    grant = Grant.objects.get(identifier="demo-grant")
    assert data["grant_id"] == str(grant.public_id)
    assert data["users"]["manager"]["username"] == "demo-admin"
    assert data["users"]["member"]["username"] == "demo-user"


def test_it_creates_users_that_can_sign_in_with_the_printed_passwords(settings, client, world):
    data = json.loads(seed(settings, "--json"))
    for user in data["users"].values():
        assert client.login(username=user["username"], password=user["password"])


def test_it_gives_the_demo_grant_every_active_model(settings, world):
    world.embed_model.active = False
    world.embed_model.save()
    seed(settings, "--json")
    grant = Grant.objects.get(identifier="demo-grant")
    assert list(grant.allowed_models.values_list("name", flat=True)) == ["chat-small"]
    assert grant.credits_allocated == 1000


def test_it_is_idempotent(settings, world):
    first = json.loads(seed(settings, "--json"))
    counts = (User.objects.count(), Team.objects.count(), Grant.objects.count())
    second = json.loads(seed(settings, "--json"))
    assert (User.objects.count(), Team.objects.count(), Grant.objects.count()) == counts
    assert second["grant_id"] == first["grant_id"]
    assert Membership.objects.filter(team__name="demo").count() == 2


def test_it_refuses_to_run_with_debug_off(settings, world):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo", "--json", stdout=io.StringIO())
    assert not Grant.objects.filter(identifier="demo-grant").exists()


def test_it_runs_with_debug_off_when_forced(settings, world):
    settings.DEBUG = False
    out = io.StringIO()
    call_command("seed_demo", "--json", "--force", stdout=out)
    assert json.loads(out.getvalue())["grant"] == "demo-grant"


def test_it_issues_the_demo_keys_once(settings, world):
    from apps.keys.auth import api_key_authenticate, management_key_authenticate

    first = json.loads(seed(settings, "--json"))
    assert api_key_authenticate(secret=first["api_key"]).key.owner.username == "demo-user"
    assert management_key_authenticate(secret=first["management_key"]).ok
    second = json.loads(seed(settings, "--json"))
    assert second["api_key"] is None and second["management_key"] is None
    assert api_key_authenticate(secret=first["api_key"]).ok  # still valid


def test_it_rotates_the_demo_keys_on_request(settings, world):
    from apps.keys.auth import api_key_authenticate, management_key_authenticate

    first = json.loads(seed(settings, "--json"))
    rotated = json.loads(seed(settings, "--json", "--rotate"))
    assert rotated["api_key"] and rotated["api_key"] != first["api_key"]
    assert not api_key_authenticate(secret=first["api_key"]).ok
    assert not management_key_authenticate(secret=first["management_key"]).ok
    assert api_key_authenticate(secret=rotated["api_key"]).ok


def test_it_makes_a_demo_grant_that_has_ended_valid_again(settings, world):
    import datetime as dt

    from django.utils import timezone

    from apps.keys.auth import api_key_authenticate

    first = json.loads(seed(settings, "--json"))
    long_ago = timezone.localdate() - dt.timedelta(days=400)
    Grant.objects.filter(identifier="demo-grant").update(
        valid_from=long_ago, valid_until=long_ago + dt.timedelta(days=365)
    )
    assert not api_key_authenticate(secret=first["api_key"]).ok
    rotated = json.loads(seed(settings, "--json", "--rotate"))
    assert api_key_authenticate(secret=rotated["api_key"]).ok


def test_it_changes_a_demo_users_role_back(settings, world):
    seed(settings, "--json")
    Membership.objects.filter(user__username="demo-user").update(role="manager")
    seed(settings, "--json")
    assert Membership.objects.get(user__username="demo-user").role == "member"
