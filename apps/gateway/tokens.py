"""Counting tokens before the backend has (and when it never does).

Anvil does not ship every model's tokenizer, so it counts with two documented, deterministic
rules over the UTF-8 bytes of the text a request carries (message contents, including text
parts of multimodal messages, tool definitions, and the prompt of a completion):

* ``estimate`` ≈ what a BPE tokenizer produces: ceil(bytes / 4) + 4 tokens per message.
  Used for the context-window check and, when a backend reports no usage, for billing (the
  ledger row is then marked *estimated*). It is the same rule the development backend uses.
* ``upper_bound``: bytes + 8 per message. A byte-level BPE token covers at least one byte,
  so real prompt tokens never exceed it (chat-template special tokens are the per-message
  allowance). The credit hold uses it, so a request can never cost more than was held.

Completions without usage are counted one token per content-bearing chunk when streamed (vLLM,
llama.cpp and Ollama send one chunk per generated token), and ceil(bytes / 4) of the answer's
text and tool-call arguments otherwise (``relay.completion_estimate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

PER_MESSAGE_ESTIMATE = 4
PER_MESSAGE_UPPER = 8


@dataclass(frozen=True)
class PromptSize:
    text_bytes: int
    messages: int
    # Embeddings: the largest input's tokens (token ids counted exactly, text by ``estimate``'s
    # rule); each input must fit the model's context window on its own.
    largest_input: int = 0

    @property
    def estimate(self) -> int:
        return -(-self.text_bytes // 4) + PER_MESSAGE_ESTIMATE * self.messages

    @property
    def upper_bound(self) -> int:
        return self.text_bytes + PER_MESSAGE_UPPER * self.messages


def _text_bytes(value) -> int:
    """UTF-8 bytes of the text in a message content (string or list of parts)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(_text_bytes(part) for part in value)
    if isinstance(value, dict):
        if value.get("type") == "image_url":
            return 0  # images are priced by the backend's own count; see estimate docs
        return sum(_text_bytes(value[key]) for key in ("text", "content") if key in value)
    return 0


def chat_prompt_size(body: dict) -> PromptSize:
    messages = body.get("messages") or []
    size = sum(_text_bytes(m.get("content")) for m in messages if isinstance(m, dict))
    if body.get("tools"):
        size += len(json.dumps(body["tools"]).encode())
    return PromptSize(text_bytes=size, messages=max(len(messages), 1))


def completion_prompt_size(body: dict) -> PromptSize:
    """The prompt's size; a chat body sent to /completions is served (and sized) as chat."""
    prompt = body.get("prompt", "")
    # One prompt (a string or token ids) or a list of them (parsing.require_prompt).
    prompts = (
        prompt
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int)
        else [prompt]
    )
    size = sum(len(p.encode()) if isinstance(p, str) else len(p) for p in prompts)
    return PromptSize(text_bytes=size, messages=max(len(prompts), 1))


def embedding_input_size(body: dict) -> PromptSize:
    value = body.get("input", "")
    inputs = (
        value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]
    )
    sizes = [len(i.encode()) if isinstance(i, str) else len(i) for i in inputs]
    tokens = [-(-s // 4) if isinstance(i, str) else s for i, s in zip(inputs, sizes, strict=True)]
    return PromptSize(text_bytes=sum(sizes), messages=len(inputs), largest_input=max(tokens))
