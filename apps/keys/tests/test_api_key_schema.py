"""The OpenAPI document of the key operations says what the API enforces: a name that is not
blank, credit limits that are not negative, no unknown fields, and the errors they answer
with (issue 16: the document allowed ``name: ""`` and negative quotas that the API refused,
and listed no error)."""

from __future__ import annotations

import jsonschema
import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

OWN_KEY_OPERATIONS = [
    ("/api/v1/api_keys", "get", {"200", "403"}),
    ("/api/v1/api_keys/create", "post", {"201", "400", "403", "404", "409"}),
    ("/api/v1/api_keys/{public_id}", "get", {"200", "403", "404"}),
    ("/api/v1/api_keys/{public_id}/revoke", "post", {"200", "403", "404"}),
    ("/api/v1/api_keys/{public_id}/archive", "post", {"200", "403", "404"}),
    ("/api/v1/api_keys/{public_id}/limits", "post", {"200", "400", "403", "404"}),
    ("/api/v1/management/api_keys/create", "post", {"201", "400", "401", "403", "404", "409"}),
]
# (body fields beside grant_id, what the API should answer)
BODIES = [
    ({"name": "plain"}, 201),
    ({"name": "  spaced  "}, 201),
    ({"name": "quota", "monthly_credits_quota": "12.5", "total_credits_quota": 7}, 201),
    ({"name": "zero", "monthly_credits_quota": "0"}, 201),
    ({"name": ""}, 400),
    ({"name": "   "}, 400),
    ({"name": "\x1c"}, 400),  # whitespace to Python's str.strip, which DRF trims with
    ({"name": "nul\x00"}, 400),
    ({"name": "x" * 101}, 400),
    ({"name": "negative", "monthly_credits_quota": "-1"}, 400),
    ({"name": "negative-number", "total_credits_quota": -1}, 400),
    ({"name": "too-precise", "monthly_credits_quota": "1.1234567"}, 400),
    ({"name": "unknown", "monthly_limit": "5"}, 400),
]


@pytest.fixture
def schema(client):
    return client.get("/api/schema", HTTP_ACCEPT="application/json").json()


def test_each_key_operation_documents_its_errors_in_the_error_shape(schema):
    for path, method, statuses in OWN_KEY_OPERATIONS:
        responses = schema["paths"][path][method]["responses"]
        assert set(responses) == statuses, path
        for status in statuses - {"200", "201"}:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorOutput"), (path, status)
            assert responses[status]["description"], (path, status)


def test_the_create_body_is_valid_in_the_document_exactly_when_the_api_takes_it(schema, world):
    body_schema = schema["components"]["schemas"]["KeyCreateInput"]
    assert body_schema["additionalProperties"] is False
    assert body_schema["properties"]["name"]["minLength"] == 1
    validator = jsonschema.Draft7Validator(body_schema)
    api = APIClient()
    api.force_login(world.alice)
    for fields, status in BODIES:
        body = {"grant_id": "alice-grant", **fields}
        response = api.post("/api/v1/api_keys/create", body, format="json")
        assert response.status_code == status, (fields, response.json())
        assert validator.is_valid(body) == (status == 201), fields
        if status == 400:
            assert response.json()["error"]["param"] in {*fields, None}, fields


def test_the_limits_never_go_negative_in_the_document_or_the_api(schema, world, alice_key):
    limits = schema["components"]["schemas"]["ApiKeyChangeLimitsInput"]
    validator = jsonschema.Draft7Validator(limits)
    api = APIClient()
    api.force_login(world.alice)
    url = f"/api/v1/api_keys/{alice_key[0].public_id}/limits"
    for value, status in [("-0.5", 400), (-3, 400), ("3.5", 200), (0, 200)]:
        body = {"monthly_credits_quota": value}
        assert api.post(url, body, format="json").status_code == status, value
        assert validator.is_valid(body) == (status == 200), value
    answer = schema["components"]["schemas"]["ApiKeyOutput"]["properties"]["credits_used"]
    assert not answer["pattern"].startswith("^-")
