"""The served OpenAPI document (/api/schema) describes the OpenAI-compatible endpoints
(apps/gateway/openapi.py): each path and method, the ApiKey scheme, OpenAI's shapes with
Anvil's fields, the stream, and every error status with its codes. Whether the live answers
match it is tests/test_api_schema_fuzz.py's part."""

from __future__ import annotations

import pytest

from apps.gateway.openapi import ERROR_CODES

INFERENCE = {
    ("/api/v1/chat/completions", "post"),
    ("/api/v1/completions", "post"),
    ("/api/v1/embeddings", "post"),
    ("/api/v1/responses", "post"),
    ("/api/v1/models", "get"),
    ("/api/v1/models/{model}", "get"),
    ("/api/v1/models-plgrid-format", "get"),
    ("/api/health", "get"),
}
GENERATING = ["/api/v1/chat/completions", "/api/v1/completions", "/api/v1/embeddings"]


@pytest.fixture
def schema(client, db):
    return client.get("/api/schema", HTTP_ACCEPT="application/json").json()


def operation(schema, path, method="post"):
    return schema["paths"][path][method]


def component(schema, ref: str) -> dict:
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]


def error_codes(schema, op, status: int) -> list[str]:
    ref = op["responses"][str(status)]["content"]["application/json"]["schema"]["$ref"]
    detail = component(schema, component(schema, ref)["properties"]["error"]["$ref"])
    return component(schema, detail["properties"]["code"]["$ref"])["enum"]


def test_every_inference_endpoint_is_documented_with_the_api_key_scheme(schema):
    for path, method in INFERENCE:
        op = operation(schema, path, method)
        assert op["tags"] == ["Inference"], path
        expected = [{}] if path == "/api/health" else [{"ApiKey": []}]  # {}: no key needed
        assert op.get("security", []) == expected, path
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }


def test_generating_endpoints_document_every_error_status_with_its_codes(schema):
    for path in [*GENERATING, "/api/v1/responses"]:
        op = operation(schema, path)
        statuses = {int(s) for s in op["responses"] if s != "200"}
        assert statuses == set(ERROR_CODES), path
        assert "context_length_exceeded" in error_codes(schema, op, 400)
        assert error_codes(schema, op, 404) == ["model_not_found", "unknown_url", "not_found"]
        assert error_codes(schema, op, 429) == ["insufficient_quota", "backend_rate_limited"]
        assert error_codes(schema, op, 405) == ["method_not_allowed"]
        assert "queue_full" in error_codes(schema, op, 503)
        assert "Retry-After" in op["responses"]["429"]["headers"]
        assert "Retry-After" in op["responses"]["503"]["headers"]
        assert "Allow" in op["responses"]["405"]["headers"]
        answer_headers = op["responses"]["200"]["headers"]
        assert {"X-Request-ID", "X-Anvil-Credits-Charged", "X-Anvil-Usage-Estimated"} <= set(
            answer_headers
        )


def test_chat_completions_answer_json_or_an_event_stream(schema):
    op = operation(schema, "/api/v1/chat/completions")
    content = op["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}
    completion = component(schema, content["application/json"]["schema"]["$ref"])
    assert {"id", "object", "created", "model", "choices", "usage"} <= set(completion["required"])
    stream = content["text/event-stream"]
    assert "data: [DONE]" in stream["examples"]["Stream"]["value"]
    request = component(schema, op["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert {"model", "messages"} <= set(request["required"])
    assert request["properties"]["messages"]["minItems"] == 1
    assert request["properties"]["stream"]["type"] == "boolean"
    # the example Try it out starts from works with the demo catalog (`make run`)
    example = op["requestBody"]["content"]["application/json"]["examples"]["Chat"]["value"]
    assert example["model"] == "anvil-chat-small"


def test_a_model_is_described_with_anvil_s_fields_and_a_name_that_may_hold_slashes(schema):
    op = operation(schema, "/api/v1/models/{model}", "get")
    (param,) = [p for p in op["parameters"] if p["in"] == "path"]
    assert param["name"] == "model" and "slashes" in param["description"]
    model = component(
        schema, op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    )
    assert {"id", "object", "status", "kind", "prompt_price", "completion_price"} <= set(
        model["properties"]
    )
    assert {"context_window", "tags", "price_unit"} <= set(model["properties"])
    assert model["properties"]["prompt_price"]["type"] == "string"
    assert error_codes(schema, op, 404) == ["model_not_found", "unknown_url", "not_found"]


def test_the_responses_api_is_described_in_openai_s_shape(schema):
    op = operation(schema, "/api/v1/responses")
    request = component(schema, op["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert {
        "model", "input", "instructions", "tools", "tool_choice", "max_output_tokens",
        "temperature", "top_p", "stream", "previous_response_id", "metadata", "store",
    } <= set(request["properties"])  # fmt: skip
    items = request["properties"]["input"]["oneOf"][1]["items"]["oneOf"]
    assert [item["title"] for item in items] == ["message", "function_call", "function_call_output"]
    content = op["responses"]["200"]["content"]
    response = component(schema, content["application/json"]["schema"]["$ref"])
    assert response["properties"]["id"]["pattern"] == "^resp_"
    usage = component(schema, response["properties"]["usage"]["allOf"][0]["$ref"])
    assert set(usage["required"]) == {"input_tokens", "output_tokens", "total_tokens"}
    example = content["text/event-stream"]["examples"]["Stream"]["value"]
    for event in ("response.created", "response.output_text.delta", "response.completed"):
        assert f"event: {event}" in example
