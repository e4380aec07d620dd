"""Schemathesis over the whole OpenAPI document (/api/schema): requests generated from each
operation's description are sent to a live Anvil (uvicorn, the development backend, PostgreSQL
and Redis) with real credentials, and every answer must be no 5xx, carry a status and a
content type the document lists, and match the document's schema for them.

Bounded for `make test`: SCHEMA_FUZZ_EXAMPLES examples per operation (default 25; the nightly
hypothesis profile's runs search longer with SCHEMA_FUZZ_EXAMPLES=200), no deadline.

Random model names, grants and key ids would only ever meet 404s, so about half the generated
requests (chosen by the parity of the generated value's length: deterministic, so hypothesis
can shrink) name a model of the test world, Alice's grant or one of her own keys instead.
POST /api/v1/jobs is not steered (its generated bodies meet 400s): a valid job would keep
running after the test.
"""

from __future__ import annotations

import os
import secrets

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.test import Client
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.keys.services import api_key_create, management_key_create
from devbackend.testing import start_devbackend, stop_devbackend

EXAMPLES = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


INFERENCE = {
    "POST /api/v1/chat/completions",
    "POST /api/v1/completions",
    "POST /api/v1/embeddings",
    "GET /api/v1/models",
    "GET /api/v1/models/{model}",
    "GET /api/v1/models-plgrid-format",
    "GET /api/health",
}


class Credentials:
    def __init__(self, *, api_key: str, management_key: str, session: str, key_ids: list):
        self.csrf = secrets.token_hex(16)  # 32 characters: a CSRF secret Django accepts as is
        self.api_key, self.management_key = api_key, management_key
        self.session, self.key_ids = session, key_ids

    def for_operation(self, operation) -> tuple[dict, dict]:
        """(headers, cookies) for what the operation's security asks for."""
        schemes = {name for entry in operation.definition.raw.get("security", []) for name in entry}
        if "ManagementKey" in schemes:
            return {"Authorization": f"Bearer {self.management_key}"}, {}
        if "cookieAuth" in schemes:
            cookies = {
                django_settings.SESSION_COOKIE_NAME: self.session,
                django_settings.CSRF_COOKIE_NAME: self.csrf,
            }
            return {"X-CSRFToken": self.csrf}, cookies
        if "ApiKey" in schemes:
            return {"Authorization": f"Bearer {self.api_key}"}, {}
        return {}, {}


@pytest.fixture
def live(world, anvil_server):
    backend = start_devbackend()
    world.backend.base_url = f"{backend.url}/v1"
    world.backend.save()
    world.grant.allowed_models.add(world.embed_model)
    _, api_key = api_key_create(grant=world.grant, owner=world.alice, name="fuzz-api")
    _, management_key = management_key_create(owner=world.alice, name="fuzz-management")
    own = [
        api_key_create(grant=world.grant, owner=world.alice, name=name)[0]
        for name in ("fuzz-own", "fuzz-own-to-revoke")
    ]
    browser = Client()
    browser.force_login(world.alice)
    session = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
    credentials = Credentials(
        api_key=api_key,
        management_key=management_key,
        session=session,
        key_ids=[key.public_id for key in own],
    )
    try:
        yield anvil_server.url, credentials
    finally:
        stop_devbackend(backend.process)


def operations(url: str) -> list:
    """The served document's operations, as schemathesis reads them."""
    schema = schemathesis.openapi.from_url(f"{url}/api/schema?format=json")
    return [result.ok() for result in schema.get_all_operations()]


def steer(case, world, credentials) -> None:
    """Point half the requests at things that exist: a model of the world, an own key."""
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and isinstance(body.get("model"), str) and len(body["model"]) % 2 == 0:
        embeds = case.operation.path.endswith("/embeddings")
        body["model"] = (world.embed_model if embeds else world.chat_model).name
    if body is not None and isinstance(body.get("grant_id"), str) and len(body["grant_id"]) % 2:
        body["grant_id"] = world.grant.identifier
    params = case.path_parameters or {}
    if isinstance(params.get("model"), str) and len(params["model"]) % 2 == 0:
        params["model"] = world.chat_model.name
    if "public_id" in params and int(str(params["public_id"])[-1], 16) % 2 == 0:
        # revoking or archiving the key would leave nothing for the limits to change
        ends = case.operation.path.endswith(("/revoke", "/archive"))
        params["public_id"] = str(credentials.key_ids[1 if ends else 0])
    query = case.query or {}
    if isinstance(query.get("model"), str) and len(query["model"]) % 2 == 0:
        query["model"] = world.chat_model.name


def fuzz(operation, url: str, world, credentials) -> None:
    """EXAMPLES generated requests of one operation; the first failing answer, shrunk, is
    raised."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case):
        steer(case, world, credentials)
        headers, cookies = credentials.for_operation(operation)
        case.call_and_validate(
            base_url=url, headers=headers, cookies=cookies, checks=CHECKS, timeout=30
        )

    run()


def test_every_answer_matches_the_schema(live, world):
    url, credentials = live
    found = operations(url)
    labels = {operation.label for operation in found}
    assert INFERENCE <= labels, INFERENCE - labels
    assert len(labels) >= 18, labels
    failures = []
    for operation in found:
        try:
            fuzz(operation, url, world, credentials)
        except Exception as exc:  # every operation is run; each failure is reported
            failures.append(f"{operation.label}:\n{exc}")
    assert not failures, "\n\n".join(failures)
