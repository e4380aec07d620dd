"""400, 403, 404 and 500 are pages in the portal's layout, with the reason and a way back."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.urls import reverse

from apps.core.views import bad_request, server_error

pytestmark = pytest.mark.django_db


def test_it_tells_a_member_why_a_managers_page_is_refused(client, world):
    client.force_login(world.bob)
    response = client.get(reverse("limits:all_members", args=[world.grant.public_id]))
    assert response.status_code == 403
    page = response.content.decode()
    assert "Only the team&#x27;s managers can do this." in page
    assert 'href="/"' in page and "Sign out" in page  # the layout, navigation and a way back


def test_it_tells_an_outsider_only_that_there_is_no_such_grant(client, world):
    client.force_login(world.charlie)
    response = client.get(reverse("consumption:grant", args=[world.grant.public_id]))
    assert response.status_code == 404
    assert "No such grant." in response.content.decode()
    assert "alice-grant" not in response.content.decode()


def test_it_explains_an_unknown_address_without_djangos_internals(client, world):
    client.force_login(world.bob)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "There is nothing at this address" in page
    assert "Resolver404" not in page and "tried" not in page


def test_it_answers_400_and_500_in_the_layout():
    request = RequestFactory().get("/")
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    assert "could not be understood" in bad_request(request, Exception("x")).content.decode()
    response = server_error(request)
    assert response.status_code == 500
    assert "Back to the portal" in response.content.decode()


def test_it_serves_a_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("favicon.svg")
