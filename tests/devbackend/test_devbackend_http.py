"""Raw HTTP checks: SSE framing, flushing, errors, and the API key."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from devbackend.testing import devbackend_running

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def test_it_frames_server_sent_events_exactly(backend):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = httpx.post(f"{backend}/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\ndata: [DONE]\n\n")
    events = response.text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    chunks = [json.loads(event[len("data: ") :]) for event in events[:-1]]
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 6
    assert len({c["id"] for c in chunks}) == 1
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 4 + ["length"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_it_flushes_each_token_chunk_at_once(backend):
    body = {**CHAT, "model": "m@fault=stall-after:2", "stream": True}
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as http,
        http.stream("POST", f"{backend}/v1/chat/completions", json=body) as response,
    ):
        lines = response.iter_lines()
        events = [line for line in (next(lines) for _ in range(6)) if line]
        with pytest.raises(httpx.ReadTimeout):
            next(lines)
    deltas = [json.loads(event[len("data: ") :])["choices"][0]["delta"] for event in events]
    assert deltas[0]["role"] == "assistant"
    assert all(delta["content"] for delta in deltas[1:])


def test_it_answers_bad_json_with_400(backend):
    response = httpx.post(f"{backend}/v1/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.post(f"{backend}/v1/chat/completions", json={"model": "m"})
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "messages")


def test_it_answers_unknown_paths_with_404(backend):
    response = httpx.get(f"{backend}/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


def test_it_requires_the_api_key_when_configured():
    with devbackend_running(api_key="dev-secret", models="only-one") as (url, _process):
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = openai.OpenAI(base_url=f"{url}/v1", api_key="dev-secret", max_retries=0)
        assert [m.id for m in right.models.list().data] == ["only-one"]
        assert httpx.get(f"{url}/health").status_code == 200
