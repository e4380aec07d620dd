"""Every stream that got a hold leaves exactly one ledger row, however its client leaves.

The chaos soak found streams whose client closed the connection as soon as the chunk with
``finish_reason`` arrived escaping settlement (about 1-2 % of them): the cancellation landed
while the slot was being released, before the settlement, so the answer was delivered unpaid
and its hold stayed open until the sweeper expired it. Reproduced here as there: many
concurrent clients, each closing at the finish chunk, against two server processes.
"""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from apps.keys.services import api_key_create
from apps.usage.models import Hold, LedgerEntry
from tests.servers import start_anvil_processes, stop_anvil_processes
from tests.waiting import eventually

CLIENTS = 30
SECONDS = 15


async def _close_at_finish(url: str, secret: str, model: str) -> tuple[int, int]:
    """CLIENTS clients streaming for SECONDS, each closing its stream at the finish chunk;
    (streams answered to their finish chunk, streams that failed otherwise)."""
    client = openai.AsyncOpenAI(base_url=url, api_key=secret, max_retries=0)
    answered = failed = 0
    stop = time.monotonic() + SECONDS

    async def one_client() -> None:
        nonlocal answered, failed
        while time.monotonic() < stop:
            try:
                stream = await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "Count to eight."}],
                    max_tokens=8,
                    stream=True,
                )
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].finish_reason:
                        answered += 1
                        await stream.close()  # right at the finish chunk
                        break
            except openai.APIError:
                failed += 1

    try:
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    finally:
        await client.close()
    return answered, failed


def _open_holds_after(*, seconds: float) -> int:
    """The holds still open once every settlement had ``seconds`` to run. The key's ready
    holds are withdrawn GATEWAY_READY_HOLD_SECONDS after its last request; a stream that
    escaped settlement keeps its hold for half an hour."""
    try:
        eventually(lambda: not Hold.objects.exists(), timeout=seconds)
    except AssertionError:
        pass
    return Hold.objects.count()


@pytest.mark.django_db(transaction=True)
def test_streams_closed_at_the_finish_chunk_are_each_settled_once(world, devbackend, tmp_path):
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.save()
    world.chat_model.max_concurrency = CLIENTS  # every client streams at once, none queues
    world.chat_model.save()
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="soak")
    server = start_anvil_processes(workers=2, log_path=tmp_path / "anvil.log")
    try:
        answered, failed = asyncio.run(
            _close_at_finish(f"{server.url}/api/v1", secret, world.chat_model.name)
        )
        left_open = _open_holds_after(seconds=20)
    finally:
        stop_anvil_processes(server)
    rows = LedgerEntry.objects.filter(api_key=key).count()
    assert (left_open, failed, rows) == (0, 0, answered)
    assert answered > 500  # enough streams for a 1 % escape rate to show
