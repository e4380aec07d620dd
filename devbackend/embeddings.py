"""Deterministic unit-length embeddings derived from a hash of each input."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct

from devbackend.text import prompt_tokens

DEFAULT_DIMENSIONS = 32
MAX_DIMENSIONS = 4096


def embedding_vector(item: str | list[int], *, dimensions: int) -> list[float]:
    """Unit vector whose values are exact float32 numbers (so float and base64 agree)."""
    data = item.encode() if isinstance(item, str) else json.dumps(item).encode()
    raw = hashlib.shake_256(b"anvil-devbackend\0" + data).digest(4 * dimensions)
    values = [n / 2**31 - 1.0 for n in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


def embedding_base64(vector: list[float]) -> str:
    """OpenAI's base64 format: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings_body(
    *, model: str, inputs: list[str | list[int]], dimensions: int, encoding: str, with_usage: bool
) -> dict[str, object]:
    data = []
    for index, item in enumerate(inputs):
        vector = embedding_vector(item, dimensions=dimensions)
        value = embedding_base64(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": value})
    body: dict[str, object] = {"object": "list", "data": data, "model": model}
    if with_usage:
        tokens = sum(prompt_tokens(item) for item in inputs)
        body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return body
