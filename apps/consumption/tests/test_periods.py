"""The month a consumption page shows comes from ``?period=``: a month the calendar can not
hold (year 0, or a last month whose end is past year 9999) is a 400 with the reason, on the
page and on its CSV download alike, never a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.keys.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def pages(world) -> dict[str, str]:
    key, _ = api_key_create(grant=world.grant, owner=world.alice, name="period-key")
    return {
        "my usage": reverse("consumption:mine"),
        "grant": reverse("consumption:grant", args=[world.grant.public_id]),
        "key": reverse("consumption:api_key", args=[key.public_id]),
    }


@pytest.mark.parametrize("period", ["0000-01", "0001-01", "9999-12", "1969-12"])
@pytest.mark.parametrize("csv", [False, True], ids=["page", "csv"])
def test_a_month_out_of_range_is_a_bad_request(client, world, pages, period, csv):
    client.force_login(world.alice)
    for name, url in pages.items():
        query = {"period": period, **({"format": "csv", "table": "limits"} if csv else {})}
        response = client.get(url, query)
        assert response.status_code == 400, (name, response.status_code)
        assert b"1970-01" in response.content, name  # says which months exist


@pytest.mark.parametrize("period", ["1970-01", "9998-12"])
def test_the_first_and_last_months_show(client, world, pages, period):
    client.force_login(world.alice)
    for name, url in pages.items():
        response = client.get(url, {"period": period})
        assert response.status_code == 200, (name, response.status_code)
