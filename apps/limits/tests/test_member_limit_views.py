"""The grant admin's two limit actions: Change limit (one member) and the collective limit."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from apps.limits.models import MemberLimit, MemberLimitChange

pytestmark = pytest.mark.django_db


def one_url(world, member=None) -> str:
    member = member or world.bob
    return reverse("limits:member", args=[world.grant.public_id, member.public_id])


def all_url(world) -> str:
    return reverse("limits:all_members", args=[world.grant.public_id])


def limit_of(world, user) -> Decimal | None:
    return MemberLimit.objects.get(grant=world.grant, user=user).monthly_limit


def test_it_changes_one_members_limit(client, world):
    client.force_login(world.alice)
    response = client.post(one_url(world), {"monthly_limit": "12.5"})
    assert response.status_code == 302
    assert response["Location"] == reverse("consumption:grant", args=[world.grant.public_id])
    assert limit_of(world, world.bob) == Decimal("12.5")
    assert not MemberLimit.objects.filter(user=world.alice).exists()
    page = client.get(response["Location"]).content.decode()
    assert "bob&#x27;s monthly limit is now 12.5 credits." in page


def test_it_shows_the_current_limit_in_the_change_form(client, world):
    client.force_login(world.alice)
    client.post(one_url(world), {"monthly_limit": "12.5"})
    response = client.get(one_url(world))
    assert response.status_code == 200
    assert 'value="12.5"' in response.content.decode()  # as people write it


def test_it_sets_the_limit_of_all_members_at_once(client, world):
    client.force_login(world.alice)
    response = client.post(all_url(world), {"monthly_limit": "3"})
    assert response.status_code == 302
    assert (limit_of(world, world.alice), limit_of(world, world.bob)) == (Decimal(3), Decimal(3))


def test_it_lifts_a_limit_when_the_field_is_left_empty(client, world):
    client.force_login(world.alice)
    client.post(one_url(world), {"monthly_limit": "1"})
    client.post(one_url(world), {"monthly_limit": ""})
    assert limit_of(world, world.bob) is None
    assert MemberLimitChange.objects.count() == 2


@pytest.mark.parametrize("bad", ["-1", "lots", "1e400"])
def test_it_refuses_bad_input_with_a_form_error(client, world, bad):
    client.force_login(world.alice)
    for url in (one_url(world), all_url(world)):
        response = client.post(url, {"monthly_limit": bad})
        assert response.status_code == 200
        assert 'class="field-errors"' in response.content.decode()
    assert not MemberLimit.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_refuses_a_plain_member_with_403(client, world, method):
    client.force_login(world.bob)
    for url in (one_url(world), all_url(world)):
        response = getattr(client, method)(url, {"monthly_limit": "1000"})
        assert response.status_code == 403
    assert not MemberLimit.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_answers_an_outsider_with_404(client, world, method):
    client.force_login(world.charlie)
    for url in (one_url(world), all_url(world)):
        response = getattr(client, method)(url, {"monthly_limit": "1000"})
        assert response.status_code == 404
    assert not MemberLimit.objects.exists()


def test_it_answers_404_for_someone_outside_the_team_or_unknown(client, world):
    client.force_login(world.alice)
    assert client.post(one_url(world, world.charlie), {"monthly_limit": "1"}).status_code == 404
    url = reverse("limits:member", args=[world.grant.public_id, uuid.uuid4()])
    assert client.post(url, {"monthly_limit": "1"}).status_code == 404
    assert not MemberLimit.objects.exists()


def test_it_needs_the_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    assert client.post(all_url(world), {"monthly_limit": "1"}).status_code == 403
    assert not MemberLimit.objects.exists()


def test_it_sends_anonymous_visitors_to_sign_in(client, world):
    response = client.post(all_url(world), {"monthly_limit": "1"})
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
