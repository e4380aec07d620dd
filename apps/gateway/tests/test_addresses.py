"""Every address under /api/v1/ answers in OpenAI's error shape, a model can be retrieved as
``client.models.retrieve`` does it, and a trailing slash is accepted on the inference
endpoints (issue 16)."""

from __future__ import annotations

import httpx
import openai
import pytest

from apps.gateway.tests.test_gateway_bad_input import assert_error_shape

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def get(gateway, path: str, method: str = "GET") -> httpx.Response:
    headers = {"Authorization": f"Bearer {gateway.secret}"}
    return httpx.request(method, f"{gateway.url}{path}", headers=headers, timeout=10)


def test_a_model_is_retrieved_with_anvil_s_fields(gateway):
    model = gateway.client().models.retrieve("chat-small")
    assert (model.id, model.object, model.owned_by) == ("chat-small", "model", "anvil")
    extra = model.model_extra
    assert extra["context_window"] == 8192
    assert (extra["prompt_price"], extra["completion_price"]) == ("0.5", "1.5")
    assert extra["status"] == "active" and extra["kind"] == "chat"


def test_a_model_name_with_a_slash_is_retrieved(gateway):
    gateway.add_model("org/chat-large")
    assert gateway.client().models.retrieve("org/chat-large").id == "org/chat-large"


def test_a_model_of_another_grant_is_as_unknown_as_no_model(gateway):
    gateway.add_model("not-for-this-grant", allow=False)
    for name in ("not-for-this-grant", "no-such-model"):
        with pytest.raises(openai.NotFoundError) as info:
            gateway.client().models.retrieve(name)
        assert info.value.body["code"] == "model_not_found"
        assert info.value.body["message"] == f"The model '{name}' does not exist."


def test_retrieving_a_model_needs_a_key(gateway):
    with pytest.raises(openai.AuthenticationError):
        gateway.client(secret="anv-not-a-key").models.retrieve("chat-small")


@pytest.mark.parametrize("path", ["/nothing-here", "/chat/completion", "/management/nope"])
def test_an_unknown_address_answers_404_unknown_url_in_json(gateway, path):
    response = get(gateway, path)
    assert response.status_code == 404
    error = assert_error_shape(response)
    assert error["code"] == "unknown_url"
    assert f"GET /api/v1{path}" in error["message"]


def test_a_wrong_method_answers_405_in_json_with_allow(gateway):
    response = get(gateway, "/models/chat-small", method="POST")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert assert_error_shape(response)["code"] == "method_not_allowed"


def test_the_inference_endpoints_accept_a_trailing_slash(gateway):
    client = openai.OpenAI(
        base_url=gateway.url, api_key=gateway.secret, max_retries=0,
        http_client=httpx.Client(event_hooks={"request": [_add_slash]}),
    )  # fmt: skip
    answer = client.chat.completions.create(model="chat-small", messages=HELLO, max_tokens=4)
    assert answer.choices[0].message.content
    assert [m.id for m in client.models.list()] == ["chat-small", "embed-small"]


def _add_slash(request: httpx.Request) -> None:
    request.url = request.url.copy_with(path=request.url.path + "/")


def test_a_model_name_no_address_can_hold_is_a_json_404_not_a_500(gateway):
    # Found by the schemathesis run: "\n" matched no URL pattern and the handler's lookup
    # raised, so uvicorn answered 500.
    response = get(gateway, "/models/%0A")
    assert response.status_code == 404
    assert assert_error_shape(response)["code"] == "unknown_url"


def test_prices_are_plain_decimals_in_both_model_listings(gateway):
    from decimal import Decimal

    gateway.add_model("round-prices", prompt_price=Decimal("10"), completion_price=Decimal("2E+2"))
    model = get(gateway, "/models/round-prices").json()
    assert (model["prompt_price"], model["completion_price"]) == ("10", "200")  # not "1E+1"
    listed = {m["name"]: m for m in get(gateway, "/models-plgrid-format").json()["data"]}
    assert listed["round-prices"]["prompt_price"] == "10"
