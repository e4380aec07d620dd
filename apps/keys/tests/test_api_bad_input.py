"""Malformed input to the REST endpoints a client calls with a key: POST
/api/v1/management/api_keys/create (management key) and GET /api/v1/usage (API key). Every
answer is a 4xx in the API's error shape (or a 201 for input that is odd but valid), never a
500, and a refused request creates no key."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from apps.teams.models import Membership, Role, Team

pytestmark = pytest.mark.django_db
CREATE = "/api/v1/management/api_keys/create"
USAGE = "/api/v1/usage"
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture
def api():
    # A view's exception is raised in the test (as the server would answer 500).
    return APIClient(raise_request_exception=True)


@pytest.fixture
def other_grant(world):
    """A grant of a team Alice is not in (Charlie's)."""
    team = Team.objects.create(name="c-team")
    Membership.objects.create(team=team, user=world.charlie, role=Role.MANAGER)
    today = timezone.localdate()
    return Grant.objects.create(
        team=team,
        identifier="charlie-grant",
        credits_allocated=1000,
        valid_from=today - dt.timedelta(days=1),
        valid_until=today + dt.timedelta(days=30),
    )


def valid(world, **overrides) -> dict:
    data = {"name": "fuzzed", "grant_id": str(world.grant.public_id)}
    return data | overrides


def assert_error_shape(response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    assert isinstance(error["message"], str) and error["message"]
    return error


def post_raw(api, secret: str, raw: bytes, content_type: str = "application/json"):
    return api.generic(
        "POST", CREATE, raw, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


RAW_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'[{"name": "x"}]',
    b'"name"',
    b"1",
    b'{"name": NaN}',
    b'{"name": "x", "total_credits_quota": Infinity}',
    b"\xff\xfe\xfd",
    b'{"name": "\xed\xa0\x80"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"name": "\\ud800", "grant_id": "alice-grant"}',
    b'{"name": "x", "grant_id": "\\udc00"}',
    b'{"name": "x", "grant_id": "alice-grant", "name": null}',
    b'{"name": "x", "grant_id": "alice-grant", "total_credits_quota": ' + b"9" * 5000 + b"}",
]


@pytest.mark.parametrize("raw", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_raw_bad_bodies_are_refused_and_create_nothing(api, world, alice_management_key, raw):
    _, secret = alice_management_key
    assert_error_shape(post_raw(api, secret, raw))
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x", ""]
)
def test_other_content_types_are_refused(api, world, alice_management_key, content_type):
    _, secret = alice_management_key
    raw = json.dumps(valid(world)).encode()
    assert_error_shape(post_raw(api, secret, raw, content_type))
    assert not ApiKey.objects.exists()


ODD = [None, True, 0, -1, 1.5, 10**30, "", " ", "\x00", "x" * 600, [], ["a"], {}, {"a": 1}]
FIELD_VALUES = {
    "name": ODD,
    "grant_id": [*ODD, str(uuid.uuid4()), "not-a-uuid", "urn:uuid:" + str(uuid.uuid4())],
    "comment": ODD,
    "monthly_credits_quota": [*ODD, -0.000001, "-1", "1e400", "1e-400", "NaN", "-Infinity",
                              "sNaN", "0x10", "1_000", 1e308, "99999999999999.9999999"],
    "total_credits_quota": [*ODD, -5, "Infinity", "12.1234567", 10**14, "1E+14"],
    "expires_at": [*ODD, "yesterday", "2025-13-45", "2030-02-30", "2030-01-01T25:00",
                   "9999-12-31T23:59:59", "9999-12-31T23:59:59-14:00",
                   "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00", "2000-01-01T00:00:00Z",
                   1_900_000_000, "+275760-09-13T00:00:00Z", "P30D", "2030-01-01T00:00:00+25:00"],
    "unknown_field": [1],
}  # fmt: skip
CASES = [(field, value) for field, values in FIELD_VALUES.items() for value in values]


@pytest.mark.parametrize(
    ("field", "value"), CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)]
)
def test_odd_field_values_are_refused_or_create_a_sound_key(
    api, world, alice_management_key, field, value
):
    _, secret = alice_management_key
    response = api.post(
        CREATE, valid(world, **{field: value}), format="json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    if response.status_code == 201:  # odd but valid (e.g. a far-future expiry)
        key = ApiKey.objects.get()
        assert key.grant_id == world.grant.pk and key.expires_at > timezone.now()
        for limit in (key.monthly_limit, key.total_limit):
            assert limit is None or limit >= 0
        return
    error = assert_error_shape(response)
    assert response.status_code in (400, 404), error
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("reference", ["public_id", "identifier", "braced", "upper"])
def test_another_teams_grant_is_404_and_gets_no_key(
    api, world, alice_management_key, other_grant, reference
):
    _, secret = alice_management_key
    grant_id = {
        "public_id": str(other_grant.public_id),
        "identifier": other_grant.identifier,
        "braced": "{" + str(other_grant.public_id) + "}",
        "upper": str(other_grant.public_id).upper(),
    }[reference]
    response = api.post(
        CREATE,
        valid(world, grant_id=grant_id),
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 404
    assert assert_error_shape(response)["param"] == "grant_id"
    assert not ApiKey.objects.filter(grant=other_grant).exists()
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer  ", "Basic eDp5", "Bearer " + "a" * 10_000, "Bearer anvm-zażółć"],
)
def test_odd_authorization_on_create_is_401_and_creates_nothing(api, world, authorization):
    response = api.post(CREATE, valid(world), format="json", HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401
    assert_error_shape(response)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_on_create_are_405(api, world, alice_management_key, method):
    _, secret = alice_management_key
    response = getattr(api, method)(CREATE, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 405
    assert_error_shape(response)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "query", ["", "?period=2020-13", "?month=%ff", "?x=" + "y" * 5000, "?%00=%00", "?period[]=1"]
)
def test_usage_ignores_odd_query_strings(api, world, query):
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    response = api.get(USAGE + query, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    assert response.json()["remaining"] == "1000"


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer  ", "bearer anv-x", "Bearer " + "a" * 10_000, "Bearer anv-zażółć"],
)
def test_usage_with_odd_authorization_is_401(api, world, authorization):
    response = api.get(USAGE, HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401
    assert_error_shape(response)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_other_methods_on_usage_are_405(api, world, method):
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    response = getattr(api, method)(
        USAGE, b"{oops", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 405
    assert_error_shape(response)


@pytest.mark.parametrize("value", ["", " ", "1_000", "0_5"])
@pytest.mark.parametrize("field", ["monthly_credits_quota", "total_credits_quota"])
def test_a_blank_or_underscored_quota_is_refused_not_read_as_no_limit(
    api, world, alice_management_key, field, value
):
    # null is the one way to say "no limit"; "" would have made the key unlimited.
    _, secret = alice_management_key
    response = api.post(
        CREATE, valid(world, **{field: value}), format="json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 400
    assert assert_error_shape(response)["param"] == field
    assert not ApiKey.objects.exists()
