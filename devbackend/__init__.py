"""Anvil's development backend: a small, fast, deterministic OpenAI-compatible server.

It stands in for vLLM / Ollama / llama.cpp in tests, benchmarks and ``make run``. It is a
plain ASGI application (no framework) served by uvicorn; it is not part of the Django project.

Run
---
    python -m devbackend --host 127.0.0.1 --port 8001 [--latency-ms 0]
        [--tokens-per-second 0] [--models chat-small,chat-large,embed-small] [--api-key SECRET]
        [--context-tokens 131072]

``--port 0`` picks a free port; the one-line startup message on stdout names the URL.
``--tokens-per-second 0`` means unlimited. With ``--api-key`` (or ``DEVBACKEND_API_KEY``)
every ``/v1`` request needs ``Authorization: Bearer <key>``. Request content is never logged.

Endpoints
---------
- ``GET /health`` → ``{"status": "ok"}``.
- ``GET /v1/models`` (and ``GET /v1/models/<id>``): the ``--models`` list. Requests may name
  any model; the response echoes the requested name.
- ``POST /v1/chat/completions``, ``POST /v1/completions`` (stream or not, OpenAI wire
  format; streams end with ``data: [DONE]``; ``stream_options.include_usage`` adds a final
  chunk with ``"choices": []`` and the usage).
- ``POST /v1/responses`` (stream or not): OpenAI's Responses API as vLLM serves it, for text
  and function tools: the chat reply the request amounts to, as a response object or as
  ``event:``/``data:`` events from ``response.created`` to ``response.completed`` (or
  ``response.incomplete`` at ``max_output_tokens``), the usage in the last; no ``[DONE]``.
- ``POST /v1/embeddings``: ``input`` is a string, a list of strings, a token list or a list
  of token lists; ``encoding_format`` float (default) or base64 (little-endian float32);
  ``dimensions`` (default 32). Vectors are unit length and derived from a hash of the input.
- ``POST /tokenize`` (vLLM's, at the root): ``{"model", "messages"}`` or ``{"model",
  "prompt"}`` → ``{"count", "max_model_len", "tokens"}``, the prompt tokens as counted below
  (every token id 0). Needs the API key like ``/v1``.
- ``GET /dev/stats`` → ``{"in_flight", "max_in_flight", "requests", "cancelled"}`` over the
  valid requests to the inference endpoints (``POST /v1/...``, counted from the end of
  validation to the last byte); ``cancelled`` counts those whose client went away before
  the response was complete. ``POST /dev/stats/reset`` zeroes the counters
  (``max_in_flight`` restarts from the current ``in_flight``). ``/health`` and ``/dev``
  need no API key.

Deterministic output
--------------------
Prompt tokens (the estimate Anvil's gateway uses too), with ``b(s)`` = UTF-8 bytes of ``s``:
- chat: for every message ``4 + ceil(b(text) / 4)``, where text is the string content or
  the joined ``text`` parts of a list content, plus 85 per non-text part (an image);
  tool definitions are not counted;
- completions: ``ceil(b(prompt) / 4)``, or the length of a token-list prompt;
- embeddings: the same per input, summed.

The reply is a sequence of tokens; one token is one word with its leading space. Its
natural length is 16 tokens (or longer if the echo below or vLLM's ``min_tokens`` asks for
more); ``max_completion_tokens`` / ``max_tokens`` cut it, and vLLM's ``ignore_eos: true``
makes the reply exactly ``max_tokens`` long (for benchmarks). ``finish_reason`` is
``"length"`` when the reply has exactly ``max_tokens`` tokens, otherwise ``"stop"``. Whatever
``min_tokens`` and ``max_tokens`` ask, a reply has at most what the context window
(``--context-tokens``, default 131072) leaves after the prompt, and at most 1,000,000 tokens;
one cut there ends with ``"length"`` (so its size, and the server's memory, stay bounded).
Words come from a fixed vocabulary, cycled from a start chosen by a hash of the prompt.

ECHO: if the last user message (or the prompt) contains ``ECHO:``, the reply begins with the
rest of that line after the marker (leading whitespace stripped).

Tools: when a chat request has ``tools``, ``tool_choice`` is not ``"none"``, and
``tool_choice`` names a function or is ``"required"`` or the last user message contains the
word "weather", the reply is one tool call (``finish_reason: "tool_calls"``) to the named
function, else the first tool whose name contains "weather", else the first tool. Its
arguments hold every property of the function's JSON schema with a fixed value per type
(strings: the ECHO text if any, else ``"Paris"``). One completion token per 4 characters
of the arguments JSON; a stream sends the arguments in 4-character pieces.

Faults and pacing, per request
------------------------------
Headers (they win), or a suffix on the model name for gateways that do not forward headers:
``<model>@<key>=<value>[,<key>=<value>...]`` with keys ``fault``, ``latency-ms`` and
``tokens-per-second``, e.g. ``chat-small@fault=drop-after:3,tokens-per-second=50``.

- ``X-Dev-Fault: error-500`` (any ``error-<4xx|5xx>``, e.g. ``error-429``, which adds
  ``Retry-After: 1``): that status with an OpenAI error body.
- ``X-Dev-Fault: drop-after:N``: a stream sends its role chunk and N token chunks, then the
  connection is closed abruptly (no final chunk, no ``[DONE]``, no chunked terminator). A
  non-stream request gets its status line and headers, then the connection closes before
  the body.
- ``X-Dev-Fault: stall-after:N``: a stream sends its role chunk and N token chunks, then
  nothing until the client goes away; a non-stream request never gets a response.
- ``X-Dev-Fault: no-usage``: no usage anywhere (no usage chunk, no ``usage`` key).
- ``X-Dev-Fault: floats-only``: embeddings are floats whatever ``encoding_format`` asks.
- ``X-Dev-Latency-Ms: N``: wait N ms before the first byte (default ``--latency-ms``).
- ``X-Dev-Tokens-Per-Second: N``: token i (from 1) is ready N⁻¹·i seconds after the first
  byte; a non-stream response waits for its last token (default ``--tokens-per-second``).

A request that names a fault also works in ``/v1/embeddings`` (pacing does not apply
there). Invalid dev options are a 400 in OpenAI's error shape.

Tests start it as a separate process with :func:`devbackend.testing.start_devbackend`
(``with devbackend_running(...) as (url, process)``; ``devbackend_stats(url)``).
"""
