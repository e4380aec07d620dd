from __future__ import annotations

import base64
import math
import struct

import httpx


def test_it_embeds_deterministic_unit_vectors(client):
    result = client.embeddings.create(
        model="embed-small", input=["alpha", "beta", "alpha"], encoding_format="float"
    )
    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert len(vectors[0]) == 32
    assert vectors[0] == vectors[2] != vectors[1]
    assert math.isclose(sum(v * v for v in vectors[1]), 1.0, rel_tol=1e-5)
    assert result.usage.prompt_tokens == result.usage.total_tokens == 2 + 1 + 2


def test_it_encodes_base64_as_the_openai_client_decodes_it(client):
    floats = client.embeddings.create(model="e", input="hello world", encoding_format="float")
    # Without encoding_format the client asks for base64 and decodes it itself.
    decoded = client.embeddings.create(model="e", input="hello world")
    assert decoded.data[0].embedding == floats.data[0].embedding
    raw = client.embeddings.create(model="e", input="hello world", encoding_format="base64")
    data = base64.b64decode(raw.data[0].embedding)
    assert list(struct.unpack("<32f", data)) == floats.data[0].embedding


def test_it_takes_token_inputs_and_dimensions(client):
    result = client.embeddings.create(
        model="e", input=[[1, 2, 3], [4, 5]], dimensions=8, encoding_format="float"
    )
    assert [len(item.embedding) for item in result.data] == [8, 8]
    assert result.usage.prompt_tokens == 5


def test_it_rejects_bad_input_in_the_openai_error_shape(backend):
    response = httpx.post(f"{backend}/v1/embeddings", json={"model": "e", "input": [None]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"
