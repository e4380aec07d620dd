"""The soak's clients: each one loops until the run's end, picking what to do at random —
non-streaming chat, completions and embeddings through the official ``openai`` package
(``AsyncOpenAI``, no retries, the credit header read from the raw response); streams read
raw with httpx (the ``openai`` package skips SSE comments, where the stream's charge is);
streams left mid-way; streams closed the moment the chunk with ``finish_reason`` arrives;
non-streaming requests given up before their answer. Every request leaves one ``Record``:
what the client saw, and so whether the ledger must, may or must not have a row for it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from decimal import Decimal

import httpx
import openai

# What a client does, and how often (relative weights).
ACTIONS = {
    "chat": 16,
    "completion": 7,
    "embedding": 8,
    "chat-stream": 16,
    "completion-stream": 6,
    "leave-mid-stream": 10,
    "close-at-finish": 20,
    "give-up": 6,
}
# Which model a generating request goes to (relative weights).
CHAT_MODELS = {
    "soak-chat": 50,
    "soak-slow": 14,
    "soak-nousage": 14,
    "soak-drop": 8,
    "soak-fail": 8,
    "soak-stall": 2,
}
# Errors after the hold was placed: the hold is settled (a ledger row) before the answer.
SETTLED_ERRORS = {
    (400, "backend_rejected"),
    (502, "backend_error"),
    (504, "backend_timeout"),
    (503, "queue_full"),
    (503, "queue_timeout"),
    (503, "slots_unavailable"),
}
REFUSALS = {401, 403, 429, 503}  # answered at once: the client waits a little before the next
TIMEOUT = 30.0  # seconds; any answer here takes at most GATEWAY_READ_TIMEOUT (5) after queueing
WORDS = "anvil grant credit token model stream ledger hold budget limit".split()


@dataclass
class Record:
    client: int
    key: int  # the key's index in the world
    action: str
    model: str
    status: int | None = None  # None: no answer (given up, or a transport error)
    code: str | None = None  # the error's code, for a status other than 200
    charged: Decimal | None = None  # what the answer said it charged
    ending: str = ""  # how it ended, for the summary
    error_event: bool = False  # a stream that ended with an error event (backend broke off)

    @property
    def needs_row(self) -> bool:
        """Whether the request certainly got a hold: answered 200 (whatever followed), or
        refused after its hold was placed."""
        return self.status == 200 or (self.status, self.code) in SETTLED_ERRORS

    @property
    def may_have_row(self) -> bool:
        """Given up or cut off before any answer: the hold may or may not have been placed."""
        return self.status is None

    @property
    def outcome(self) -> str:
        if self.status is None:
            return self.ending
        if self.status != 200:
            return f"{self.status} {self.code}"
        return f"200 {self.ending}"


class Client:
    """One client: one key, one gateway, its own random sequence."""

    def __init__(self, index: int, key: int, secret: str, base: str, http, oai_http) -> None:
        self.index, self.key, self.secret, self.base = index, key, secret, base
        self.rng = random.Random(index)
        self.http = http  # httpx.AsyncClient of the client's gateway (streams, give-ups)
        self.oai = openai.AsyncOpenAI(
            api_key=secret, base_url=base, max_retries=0, timeout=TIMEOUT, http_client=oai_http
        )
        self.records: list[Record] = []

    async def run(self, *, until: float) -> None:
        actions, weights = zip(*ACTIONS.items(), strict=True)
        while time.monotonic() < until:
            action = self.rng.choices(actions, weights)[0]
            record = await getattr(self, action.replace("-", "_"))()
            self.records.append(record)
            if record.status in REFUSALS:
                await asyncio.sleep(self.rng.uniform(0.2, 0.5))

    # -- what goes in a request

    def _model(self) -> str:
        return self.rng.choices(list(CHAT_MODELS), list(CHAT_MODELS.values()))[0]

    def _text(self) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(3, 40)))

    def _max_tokens(self) -> dict:
        """Mostly a small max_tokens; one request in ten none (held for the whole context)."""
        return {} if self.rng.random() < 0.1 else {"max_tokens": self.rng.randint(4, 32)}

    def _record(self, action: str, model: str) -> Record:
        return Record(self.index, self.key, action, model)

    # -- non-streaming, through the openai package

    async def chat(self) -> Record:
        model = self._model()
        messages = [{"role": "user", "content": self._text()}]
        call = self.oai.chat.completions.with_raw_response.create
        return await self._openai(
            "chat", model, call(model=model, messages=messages, **self._max_tokens())
        )

    async def completion(self) -> Record:
        model = self._model()
        call = self.oai.completions.with_raw_response.create
        return await self._openai(
            "completion", model, call(model=model, prompt=self._text(), **self._max_tokens())
        )

    async def embedding(self) -> Record:
        texts = [self._text() for _ in range(self.rng.randint(1, 3))]
        call = self.oai.embeddings.with_raw_response.create
        return await self._openai("embedding", "soak-embed", call(model="soak-embed", input=texts))

    async def give_up(self) -> Record:
        """A non-streaming request to the slow model given up before its answer (300 ms)."""
        timeout = self.rng.uniform(0.02, 0.25)
        messages = [{"role": "user", "content": self._text()}]
        call = self.oai.chat.completions.with_raw_response.create
        request = call(model="soak-slow", messages=messages, max_tokens=16, timeout=timeout)
        return await self._openai("give-up", "soak-slow", request)

    async def _openai(self, action: str, model: str, request) -> Record:
        record = self._record(action, model)
        try:
            response = await request
        except openai.APIStatusError as exc:
            record.status, record.code = exc.status_code, exc.code
            return record
        except openai.APITimeoutError:
            record.ending = "gave up before the answer" if action == "give-up" else "timed out"
            return record
        except openai.APIConnectionError as exc:
            record.ending = f"connection error ({type(exc.__cause__).__name__})"
            return record
        response.parse()  # the body must be what the openai package expects
        record.status = response.status_code
        record.charged = Decimal(response.headers["x-anvil-credits-charged"])
        record.ending = "answered"
        return record

    # -- streams, raw

    async def chat_stream(self) -> Record:
        return await self._stream("chat-stream", self._model(), chat=True)

    async def completion_stream(self) -> Record:
        return await self._stream("completion-stream", self._model(), chat=False)

    async def leave_mid_stream(self) -> Record:
        model = self.rng.choice(["soak-chat", "soak-slow", "soak-nousage"])
        leave = self.rng.randint(1, 8)
        return await self._stream("leave-mid-stream", model, chat=True, leave_after=leave)

    async def close_at_finish(self) -> Record:
        """A short stream closed as soon as its finish chunk arrives (issue 11, defect 1)."""
        model = "soak-nousage" if self.rng.random() < 0.2 else "soak-chat"
        extra = {"max_tokens": self.rng.randint(1, 12)}
        return await self._stream("close-at-finish", model, chat=True, extra=extra, at_finish=True)

    async def _stream(
        self, action: str, model: str, *, chat: bool, leave_after: int = 0,
        at_finish: bool = False, extra: dict | None = None,
    ) -> Record:  # fmt: skip
        record = self._record(action, model)
        body = {"model": model, "stream": True, **(extra or self._max_tokens())}
        if chat:
            body["messages"] = [{"role": "user", "content": self._text()}]
        else:
            body["prompt"] = self._text()
        url = f"{self.base}/{'chat/completions' if chat else 'completions'}"
        headers = {"Authorization": f"Bearer {self.secret}"}
        try:
            async with self.http.stream("POST", url, json=body, headers=headers) as response:
                record.status = response.status_code
                if response.status_code != 200:
                    await _read_error(response, record)
                    return record
                await _read_events(response, record, leave_after, at_finish)
        except httpx.TimeoutException:
            record.ending = record.ending or "timed out"
        except httpx.TransportError as exc:
            record.ending = record.ending or f"connection error ({type(exc).__name__})"
        return record


async def _read_error(response: httpx.Response, record: Record) -> None:
    try:
        record.code = json.loads(await response.aread())["error"]["code"]
    except (ValueError, KeyError, TypeError):
        record.code = "unreadable"


async def _read_events(
    response: httpx.Response, record: Record, leave_after: int, at_finish: bool
) -> None:
    """Read a stream to its end, or leave as the record's action says (closing the response
    on the way out drops the connection, as a client that goes away does)."""
    chunks = 0
    record.ending = "stream cut before [DONE]"
    async for line in response.aiter_lines():
        if line.startswith(": anvil "):
            record.charged = Decimal(json.loads(line[len(": anvil ") :])["credits_charged"])
            continue
        if not line.startswith("data: "):
            continue
        data = line[len("data: ") :]
        if data == "[DONE]":
            record.ending = "stream, backend broke off" if record.error_event else "stream read"
            return
        event = json.loads(data)
        if "error" in event:
            record.error_event = True
            continue
        chunks += 1
        finish = any(choice.get("finish_reason") for choice in event.get("choices") or [])
        if finish and (at_finish or chunks == leave_after):
            record.ending = "stream, client closed at the finish chunk"
            return
        if leave_after and chunks >= leave_after:
            record.ending = "stream, client left mid-way"
            return
