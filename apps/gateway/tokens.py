"""Counting tokens before the backend has (and when it never does).

Anvil does not ship every model's tokenizer, so it counts with two documented, deterministic
rules over the UTF-8 bytes of the text a request carries (message contents, including text
parts of multimodal messages, tool definitions (``tools``, ``functions``), the name and
arguments of every tool call in the messages, and the prompt of a completion):

* ``estimate`` ≈ what a BPE tokenizer produces: ceil(bytes / 4) + 4 tokens per message.
  Used for the context-window check and, when a backend reports no usage, for billing (the
  ledger row is then marked *estimated*). The development backend counts message text the
  same way but rounds up per message (up to a token per message above), and counts neither
  tools nor tool calls.
* ``upper_bound``: bytes + 8 per message. A byte-level BPE token covers at least one byte,
  so real prompt tokens never exceed it (chat-template special tokens are the per-message
  allowance). The credit hold uses it, so a request can never cost more than was held.

Both add what only the model's catalog entry knows (``for_model``): its ``template_tokens``
(what its chat template adds beyond the per-message allowance: a default system prompt, the
assistant's header) and its images. An image part is counted by the model's ``image_tokens``
rule (``image_sizes``): a fixed count, or tiles as OpenAI sizes them (fit in 2048 x 2048, then
the shortest side in 768 px; 170 tokens per 512-px tile plus 85). Anvil neither fetches nor
decodes images, so an image of unknown size counts the most tiles the rule allows (1445 tokens
by OpenAI's), and ``detail: "low"`` the base alone (85). A model that takes no images refuses
them; audio, files, video and any part type not listed here are refused by every model
(400 ``unsupported_content``): Anvil can not tell what they would cost.

Where a backend can count a chat prompt as its engine renders it (``tokenize`` in the catalog:
vLLM's or llama.cpp's ``/tokenize``), a stream that ended without usage is billed for that
count instead of the estimate (``relay``).

Completions without usage are counted one token per content-bearing chunk when streamed (vLLM,
llama.cpp and Ollama send one chunk per generated token), and ceil(bytes / 4) of the answer's
text and tool-call arguments otherwise (``relay.completion_estimate``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from apps.catalog.models import IMAGE_TILE_FIELDS
from apps.gateway.errors import GatewayError

PER_MESSAGE_ESTIMATE = 4
PER_MESSAGE_UPPER = 8

TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
IMAGE_PARTS = frozenset({"image_url", "input_image"})
# Message fields beside role and content whose text a chat template renders into the prompt.
NAMED_FIELDS = ("name", "tool_call_id")


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which cost
# about 1 µs more per request here (nobody changes a size once made; ``for_model`` replaces).
@dataclass(slots=True)
class PromptSize:
    text_bytes: int
    messages: int
    # Embeddings: the largest input's tokens (token ids counted exactly, text by ``estimate``'s
    # rule); each input must fit the model's context window on its own.
    largest_input: int = 0
    chat: bool = False  # a chat prompt: the model's chat template renders it
    images: int = 0  # image parts at detail high or auto (or none said): the rule's worst case
    low_images: int = 0  # image parts at detail low
    model_tokens: int = 0  # counted by the model's rules (``for_model``): images, template

    @property
    def estimate(self) -> int:
        return -(-self.text_bytes // 4) + PER_MESSAGE_ESTIMATE * self.messages + self.model_tokens

    @property
    def upper_bound(self) -> int:
        return self.text_bytes + PER_MESSAGE_UPPER * self.messages + self.model_tokens


def image_sizes(rule) -> tuple[int, int]:
    """(tokens of an image at detail low, tokens of any other) under a catalog ``image_tokens``
    rule (apps.catalog.models.validate_image_tokens): a fixed count for both, or the tiles
    rule — the base alone at low detail, else the base and the most tiles an image can have."""
    if type(rule) is int:
        return rule, rule
    field = {name: default for name, (default, _) in IMAGE_TILE_FIELDS.items()} | (rule or {})
    tile = field["tile_size"]
    long_side, short_side = field["max_long_side"], field["max_short_side"]
    tiles = -(-long_side // tile) * -(-short_side // tile)
    return field["base_tokens"], field["base_tokens"] + tiles * field["tokens_per_tile"]


def for_model(prompt: PromptSize, model) -> PromptSize:
    """The prompt's size on ``model`` (a gateway ``ServedModel``): its images by the model's
    rule (400 ``unsupported_content`` when it takes none) and its chat template's tokens."""
    images = prompt.images + prompt.low_images
    if not images and not (prompt.chat and model.template_tokens):
        return prompt
    if images and model.image_tokens is None:
        raise GatewayError(
            400,
            f"The model '{model.name}' does not take images; send text only, or use a "
            "vision-language model.",
            code="unsupported_content",
            param="messages",
        )
    low, other = model.image_tokens or (0, 0)
    extra = prompt.low_images * low + prompt.images * other
    if prompt.chat:
        extra += model.template_tokens
    return dataclasses.replace(prompt, model_tokens=extra)


class _Parts:
    """What the content parts of a chat body hold beside text: its images, by detail."""

    __slots__ = ("images", "low_images")

    def __init__(self) -> None:
        self.images = self.low_images = 0


def _unsupported(kind, where: str) -> GatewayError:
    return GatewayError(
        400,
        f"{where} is a content part of type {kind!r}, which Anvil can not size (it takes text "
        "parts, and image parts on vision-language models).",
        code="unsupported_content",
        param=where,
    )


def _detail(part: dict) -> object:
    """An image part's detail: OpenAI's image_url {url, detail}, or the Responses API's
    input_image {image_url, detail}."""
    image = part.get("image_url")
    if isinstance(image, dict) and "detail" in image:
        return image["detail"]
    return part.get("detail")


def _parts_bytes(parts: list, found: _Parts, index: int) -> int:
    """UTF-8 bytes of the text in a list content; images noted on ``found``."""
    size = 0
    for number, part in enumerate(parts):
        if isinstance(part, str):
            size += len(part.encode())
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if not isinstance(kind, str | None):
            raise _unsupported(type(kind).__name__, f"messages[{index}].content[{number}]")
        if kind in IMAGE_PARTS:
            if _detail(part) == "low":
                found.low_images += 1
            else:
                found.images += 1
        elif kind is None or kind in TEXT_PARTS or kind == "refusal":
            text = part.get("refusal" if kind == "refusal" else "text")
            if isinstance(text, str):
                size += len(text.encode())
        else:
            raise _unsupported(kind, f"messages[{index}].content[{number}]")
    return size


def _calls_bytes(message: dict) -> int:
    """UTF-8 bytes of what a message holds beside its content: its name or tool call id, and
    the name and arguments of each of its tool calls (``tool_calls``, the legacy
    ``function_call``)."""
    size = 0
    for field in NAMED_FIELDS:
        value = message.get(field)
        if isinstance(value, str):
            size += len(value.encode())
    calls = message.get("tool_calls")
    functions = [message.get("function_call")]
    if isinstance(calls, list):
        functions += [call.get("function") for call in calls if isinstance(call, dict)]
    for function in functions:
        if isinstance(function, dict):
            for value in (function.get("name"), function.get("arguments")):
                if isinstance(value, str):
                    size += len(value.encode())
                elif value is not None:
                    size += len(json.dumps(value).encode())
    return size


def chat_prompt_size(body: dict) -> PromptSize:
    """A chat body's size (its messages checked by ``parsing.require_messages``): 400
    ``unsupported_content`` for a content part Anvil can not size."""
    messages = body.get("messages") or []
    size, found = 0, None
    for index, message in enumerate(messages):
        content = message.get("content")
        if type(content) is str:
            size += len(content.encode())
        elif isinstance(content, list):
            found = found or _Parts()
            size += _parts_bytes(content, found, index)
        if len(message) != 2 or content is None:  # more than role and content: tool calls…
            size += _calls_bytes(message)
    for field in ("tools", "functions"):
        if body.get(field):
            size += len(json.dumps(body[field]).encode())
    if found is None:  # text only (the common case)
        return PromptSize(size, max(len(messages), 1), 0, True)
    return PromptSize(
        size, max(len(messages), 1), 0, True, images=found.images, low_images=found.low_images
    )


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
