"""Deterministic token counts and replies (the rules are in the package docstring)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

REPLY_TOKENS = 16
# The context window when none is given (--context-tokens), and the most any reply has, so a
# ``min_tokens`` or ``max_tokens`` of any size can not make a reply (and the server's memory)
# grow without bound.
DEFAULT_CONTEXT_TOKENS = 131072
MAX_REPLY_TOKENS = 1_000_000
MESSAGE_TOKENS = 4
NON_TEXT_PART_TOKENS = 85
ECHO_MARKER = "ECHO:"
VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "anvil forge hammer spark ingot quench temper smith bellows tongs chisel rivet"
).split()
_WORD_RE = re.compile(r"\s*\S+")


def text_tokens(text: str) -> int:
    return -(-len(text.encode()) // 4)


def message_text(message: dict[str, Any]) -> str:
    """A message's text: the string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _non_text_parts(message: dict[str, Any]) -> int:
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if not (isinstance(part, dict) and part.get("type") == "text"))


def chat_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(
        MESSAGE_TOKENS
        + text_tokens(message_text(message))
        + NON_TEXT_PART_TOKENS * _non_text_parts(message)
        for message in messages
    )


def prompt_tokens(prompt: str | list[int]) -> int:
    """Tokens of a completions prompt or an embeddings input."""
    return len(prompt) if isinstance(prompt, list) else text_tokens(prompt)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def echo_text(text: str) -> str:
    """The rest of the line after ``ECHO:``, or ``""``."""
    _, marker, rest = text.partition(ECHO_MARKER)
    return rest.split("\n", 1)[0].strip() if marker else ""


def seed(obj: Any) -> bytes:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).digest()


def reply_room(*, context_tokens: int, prompt_tokens: int) -> int:
    """The most tokens a reply may have: what the context window leaves after the prompt (none
    when the prompt fills it), and never more than MAX_REPLY_TOKENS."""
    return max(0, min(context_tokens - prompt_tokens, MAX_REPLY_TOKENS))


def reply_tokens(
    *,
    seed: bytes,
    echo: str,
    limit: int | None,
    min_tokens: int = 0,
    ignore_eos: bool = False,
    room: int = MAX_REPLY_TOKENS,
) -> tuple[list[str], str]:
    """The reply's tokens and its finish reason; at most ``room`` tokens (see ``reply_room``),
    whatever ``limit`` and ``min_tokens`` ask: a reply cut there ends with "length"."""
    tokens = _WORD_RE.findall(echo)
    natural = max(REPLY_TOKENS, len(tokens), min_tokens)
    count = limit if (ignore_eos and limit) else min(natural, limit or natural)
    if count >= room:
        count, limit = room, room
    start = int.from_bytes(seed[:4], "big")
    step = 1 + seed[4] % (len(VOCABULARY) - 1)
    for i in range(len(tokens), count):
        word = VOCABULARY[(start + i * step) % len(VOCABULARY)]
        tokens.append(f" {word}" if i else word)
    finish = "length" if limit is not None and count == limit else "stop"
    return tokens[:count], finish
