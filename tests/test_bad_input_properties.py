"""Bad input never makes a 500 (issue 17): a bounded property-based search over every portal
form and every endpoint a person uses on their own keys.

Each test posts arbitrary field values (text with control characters, huge strings, numbers
out of range, dates at the calendar's edges with and without offsets, wrong JSON types,
missing and extra fields) and checks what a user would notice: the answer is never 5xx; an
API error is in the API's error shape; a refused form is shown again with its errors; and a
refused request changed nothing.

Bounded: ``EXAMPLES`` per endpoint in ``make test``; ``HYPOTHESIS_PROFILE=nightly`` (root
conftest.py) searches many more.
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote, urlencode

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.catalog.models import CatalogModel
from apps.grants.models import Grant
from apps.jobs.models import Job
from apps.keys.models import ApiKey, ManagementKey
from apps.keys.services import api_key_create, management_key_create
from apps.limits.models import MemberLimit, MemberLimitChange
from apps.teams.models import Membership
from tests.servers import drop_server_connections

pytestmark = pytest.mark.django_db

# 8 in `make test` (the default profile's 25 examples, a third); the nightly profile's 400 give
# 128 per endpoint.
EXAMPLES = max(8, settings().max_examples // 3)
bounded = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ERROR_KEYS = {"message", "type", "param", "code"}

# --- values ----------------------------------------------------------------------------------

EDGE_TEXT = [
    "", " ", "\x00", "\x01\x1f\x7f", "\u2028", "\ufeff", "\u202e", "'; DROP TABLE x;--",
    "<script>", "%00", "../../etc/passwd", "x" * 100_000, "é" * 5_000, "🙂" * 1_000,
]  # fmt: skip
EDGE_NUMBERS = [
    "0", "-0", "-1", "0.0000001", "1e999", "-1e999", "1e-999", "NaN", "-NaN", "Infinity",
    "-Infinity", "9" * 40, "-" + "9" * 40, "1" + "0" * 400, "0x10", "1_000", "٣", "½", "1,5",
    "999999999999.999999", "1000000000000", "9223372036854775808", "-9223372036854775809",
]  # fmt: skip
EDGE_DATES = [
    "0001-01-01", "0001-01-01T00:00", "0001-01-01T00:00:00", "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-12:00", "9999-12-31",
    "9999-12-31T23:59", "9999-12-31T23:59:59.999999", "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59+14:00", "0000-01-01T00:00",
    "10000-01-01T00:00", "2026-02-30T00:00", "2026-13-01T00:00", "2026-12-01T25:61",
    "2026-12-01T00:00+99:99", "2099-01-01T00:00", "2027-06-01T12:00:00+02:00",
]  # fmt: skip

text = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
)
number_text = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.decimals(allow_nan=True, allow_infinity=True, places=None).map(str),
)
date_text = st.one_of(
    st.sampled_from(EDGE_DATES),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
        lambda moment: moment.isoformat(timespec="minutes")
    ),
)
form_value = st.one_of(text, number_text, date_text)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
    number_text,
    date_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def form_data(fields: list[str]) -> st.SearchStrategy[dict]:
    """Some of ``fields`` (missing ones are left out) and perhaps an extra one."""
    return st.dictionaries(st.sampled_from([*fields, "extra", "csrfmiddlewaretoken"]), form_value)


def json_body(fields: list[str]) -> st.SearchStrategy:
    """A JSON object of some of ``fields`` and perhaps extra ones; now and then not an object."""
    known = st.dictionaries(st.sampled_from([*fields, "extra", "id", "owner"]), json_value)
    return st.one_of(known, known, known, json_value)


# --- what a refusal may not change -----------------------------------------------------------

WATCHED = [ApiKey, ManagementKey, MemberLimit, MemberLimitChange, Membership, Grant, Job]


def state() -> dict:
    """Everything a refused request might have changed."""
    rows = {m.__name__: list(m.objects.order_by("pk").values()) for m in WATCHED}
    rows["audit"] = AuditEntry.objects.count()
    return rows


def assert_not_5xx(response) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:500])


def assert_api_error(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"]


def assert_form_answer(
    response, before: dict, *, form: str = "form", client=None, shown_on: str = ""
) -> None:
    """A form page's answer: a redirect after success (and ``shown_on``, the page that shows
    what was saved, still opens); else the form again, with its errors, or a 4xx; and nothing
    changed unless it succeeded."""
    assert_not_5xx(response)
    if response.status_code == 302:
        if shown_on:
            assert_not_5xx(client.get(shown_on))
        return
    if response.status_code == 200:
        shown = response.context[form]
        if shown.is_bound:  # (an empty POST is read as no POST: the blank form)
            assert shown.errors, "a refused form is shown again with its errors"
            assert 'role="alert"' in response.content.decode()
    else:
        assert 400 <= response.status_code < 500
    assert state() == before


def post_json(client, url: str, body) -> object:
    return client.generic("POST", url, json.dumps(body), content_type="application/json")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def signed_in(client, world):
    """Alice, manager of alice-grant, signed in."""
    client.force_login(world.alice)
    return client


@pytest.fixture
def api(world):
    client = APIClient(raise_request_exception=False)
    client.force_login(world.alice)
    return client


@pytest.fixture
def alice_key(world) -> ApiKey:
    return api_key_create(grant=world.grant, owner=world.alice, name="alice-key")[0]


# --- portal forms ----------------------------------------------------------------------------

KEY_FIELDS = ["grant", "name", "comment", "expires_at", "monthly_limit", "total_limit"]


@bounded
@given(data=form_data(KEY_FIELDS), grant=st.sampled_from(["own", "other", "garbage"]))
def test_key_creation_form(signed_in, world, data, grant):
    if grant == "own":
        data["grant"] = str(world.grant.public_id)
    before = state()
    response = signed_in.post(reverse("keys:create"), data)
    assert_form_answer(response, before, client=signed_in, shown_on=reverse("keys:list"))


@bounded
@given(data=form_data(["monthly_limit", "total_limit", "expires_at"]))
def test_key_limits_form(signed_in, alice_key, data):
    before = state()
    url = reverse("keys:change_limits", args=[alice_key.public_id])
    assert_form_answer(signed_in.post(url, data), before)


@bounded
@given(data=form_data(["name", "expires_at"]))
@example(data={"name": "utc", "expires_at": "9999-12-31T23:59:59-12:00"})  # was a 500
@example(data={"name": "local", "expires_at": "9999-12-31T23:30+00:00"})  # its list was a 500
def test_management_key_form(signed_in, data):
    before = state()
    response = signed_in.post(reverse("management_keys:create"), data)
    listed = reverse("management_keys:list")
    assert_form_answer(response, before, client=signed_in, shown_on=listed)


@bounded
@given(data=form_data(["monthly_limit"]), everyone=st.booleans())
def test_member_limit_forms(signed_in, world, data, everyone):
    if everyone:
        url = reverse("limits:all_members", args=[world.grant.public_id])
    else:
        url = reverse("limits:member", args=[world.grant.public_id, world.bob.public_id])
    before = state()
    assert_form_answer(signed_in.post(url, data), before)


@bounded
@given(data=form_data(["confirm", "next"]), action=st.sampled_from(["revoke", "archive"]))
def test_key_confirm_pages_ignore_odd_fields(signed_in, alice_key, data, action):
    """Revoke and archive take no fields: odd ones change nothing beyond the action."""
    response = signed_in.post(reverse(f"keys:{action}", args=[alice_key.public_id]), data)
    assert_not_5xx(response)


PAGES_WITH_QUERIES = [
    ("consumption:mine", None),
    ("consumption:grant", "grant"),
    ("consumption:api_key", "key"),
    ("statements:list", None),
    ("keys:list", None),
    ("keys:create", None),
    ("grants:list", None),
    ("audit:all", None),
    ("audit:grant", "grant"),
    ("catalog:models", None),
    ("jobs:list", None),
    ("playground:page", None),
]
QUERY_NAMES = ["period", "grant", "format", "page", "tag", "archived", "key", "model", "sort"]


@bounded
@given(
    page=st.sampled_from(PAGES_WITH_QUERIES),
    query=st.dictionaries(st.sampled_from(QUERY_NAMES), form_value, min_size=1),
)
@example(page=("statements:list", None), query={"grant": " "})  # was a 500
def test_pages_with_odd_query_strings(signed_in, world, alice_key, page, query):
    name, argument = page
    args = {"grant": [world.grant.public_id], "key": [alice_key.public_id], None: []}[argument]
    before = state()
    response = signed_in.get(reverse(name, args=args), query)
    assert_not_5xx(response)
    assert state() == before


@bounded
@given(
    form=st.sampled_from(["account_login", "account_signup"]),
    data=form_data(["login", "password", "email", "username", "password1", "password2"]),
)
def test_sign_in_and_sign_up_forms(client, world, settings, form, data):
    # Failed sign-ins count toward allauth's rate limits in the cache: this test's own.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "bad"}
    }
    before = state()
    response = client.post(reverse(form), data)
    assert_not_5xx(response)
    assert state() == before


# --- the own-keys API and the management API -------------------------------------------------

CREATE_FIELDS = [
    "name", "grant_id", "comment", "expires_at", "monthly_credits_quota", "total_credits_quota",
]  # fmt: skip
QUOTA_FIELDS = ["monthly_credits_quota", "total_credits_quota", "expires_at"]


def assert_api_answer(response, before: dict, *, success: int, shown_by=None) -> None:
    """``shown_by``: a client whose list of keys must still open after a success."""
    assert_not_5xx(response)
    if response.status_code == success:
        if shown_by is not None:
            assert_not_5xx(shown_by.get("/api/v1/api_keys"))
        return
    assert_api_error(response)
    assert state() == before


@bounded
@given(body=json_body(CREATE_FIELDS), grant=st.sampled_from(["own", "identifier", "as sent"]))
def test_api_key_create(api, world, body, grant):
    if isinstance(body, dict) and grant != "as sent":
        body["grant_id"] = str(world.grant.public_id) if grant == "own" else "alice-grant"
    before = state()
    response = post_json(api, "/api/v1/api_keys/create", body)
    assert_api_answer(response, before, success=201, shown_by=api)


@bounded
@given(body=json_body(QUOTA_FIELDS))
def test_api_key_limits(api, alice_key, body):
    before = state()
    response = post_json(api, f"/api/v1/api_keys/{alice_key.public_id}/limits", body)
    assert_api_answer(response, before, success=200)


@bounded
@given(
    action=st.sampled_from(["revoke", "archive", "detail"]),
    body=json_body(["reason", "id"]),
    known=st.booleans(),
)
def test_api_key_actions(api, alice_key, action, body, known):
    public_id = alice_key.public_id if known else "00000000-0000-0000-0000-000000000000"
    url = f"/api/v1/api_keys/{public_id}" + ("" if action == "detail" else f"/{action}")
    before = state()
    response = api.get(url) if action == "detail" else post_json(api, url, body)
    assert_api_answer(response, before, success=200)


@bounded
@given(query=st.dictionaries(st.sampled_from(["archived", "page", "limit"]), form_value))
def test_api_key_list(api, alice_key, query):
    response = api.get("/api/v1/api_keys", query)
    if response.status_code != 200:
        assert_api_error(response)


@pytest.fixture
def management_secret(world) -> str:
    return management_key_create(owner=world.alice, name="automation")[1]


@bounded
@given(body=json_body(CREATE_FIELDS), grant=st.sampled_from(["own", "identifier", "as sent"]))
def test_management_api_key_create(world, management_secret, body, grant):
    if isinstance(body, dict) and grant != "as sent":
        body["grant_id"] = str(world.grant.public_id) if grant == "own" else "alice-grant"
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {management_secret}")
    before = state()
    response = post_json(client, "/api/v1/management/api_keys/create", body)
    assert_api_answer(response, before, success=201)


# --- jobs: submitted with an API key; their API answers {"success": false, "error"} ---------

JOB_FIELDS = ["app", "commandLine", "tag", "model", "inputs", "parameters"]


@pytest.fixture
def jobs_secret(world) -> str:
    return api_key_create(grant=world.grant, owner=world.alice, name="jobs")[1]


@bounded
@given(body=json_body(JOB_FIELDS))
def test_job_submission(world, jobs_secret, body):
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {jobs_secret}")
    before = state()
    response = post_json(client, "/api/v1/jobs", body)
    assert_not_5xx(response)
    if response.status_code >= 400:
        assert state() == before
        document = response.json()
        assert "error" in document, document


# --- the playground: the gateway's chat endpoint for the signed-in owner's key ---------------

CHAT_FIELDS = [
    "model", "messages", "max_tokens", "max_completion_tokens", "min_tokens", "temperature",
    "stream", "n", "stop", "tools", "logprobs", "top_p", "user", "stream_options",
]  # fmt: skip


@pytest.fixture
def worker_connections_dropped(transactional_db):
    """The gateway's worker threads leave database sessions behind; end them after the test,
    so the test database can be flushed and dropped."""
    yield
    drop_server_connections()


message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"])},
    optional={"content": json_value, "name": json_value},
)


@pytest.mark.django_db(transaction=True)  # the gateway reads the key in a worker thread
@bounded
@given(
    body=json_body(CHAT_FIELDS),
    messages=st.one_of(st.lists(message, max_size=3), json_value),
    model=st.sampled_from(["chat-small", "embed-small", "nope", None]),
)
def test_playground_chat(client, world, worker_connections_dropped, body, messages, model):
    """No backend is ever reached: the models are switched off, so a request the gateway
    admits is answered 503 ``model_inactive``; everything else must be a 4xx in its shape."""
    CatalogModel.objects.update(active=False)
    key = _playground_key(world)
    if isinstance(body, dict):
        body.setdefault("messages", messages)
        if model is not None:
            body["model"] = model
    client.force_login(world.alice)
    before = state()
    response = post_json(client, reverse("playground:chat", args=[key.public_id]), body)
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}, error
    if response.status_code >= 500:
        assert (response.status_code, error["code"]) == (503, "model_inactive"), error
    else:
        assert 400 <= response.status_code < 500, error
    assert state() == before


def _playground_key(world) -> ApiKey:
    key = ApiKey.objects.filter(owner=world.alice, name="playground").first()
    return key or api_key_create(grant=world.grant, owner=world.alice, name="playground")[0]


@bounded
@given(
    ids=st.one_of(text, date_text, st.lists(text, max_size=120).map(",".join)),
    method=st.sampled_from(["GET", "DELETE"]),
    query=st.dictionaries(st.sampled_from(["purge", "status", "limit"]), form_value),
)
def test_job_lookup_and_cancel(world, jobs_secret, ids, method, query):
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {jobs_secret}")
    before = state()
    safe_ids = quote(ids.replace("/", "_"), safe=",") or "_"
    url = f"/api/v1/jobs/{safe_ids}?{urlencode(query)}"
    response = client.generic(method, url)
    assert_not_5xx(response)
    if response.status_code >= 400:
        assert state() == before
    listed = client.get(f"/api/v1/jobs?{urlencode(query)}")
    assert_not_5xx(listed)
