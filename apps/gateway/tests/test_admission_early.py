"""A key this process accepted before has its hold and slot taken while the key cache is read
again (``admission._aadmit_early``). What the client is told is still what that fresh read
says, and a request refused by it, or left by its client before its hold is in hand, leaves
nothing behind: no hold, no slot, no ledger row, no counter changed."""

from __future__ import annotations

import asyncio

import hiredis
import pytest
from django.db import connection

from apps.gateway import admission
from apps.gateway.admission import aabandon, aadmit
from apps.gateway.catalog import load_snapshot
from apps.gateway.errors import GatewayError
from apps.gateway.slots import model_slot, slot_stats, slots_close
from apps.gateway.tests.test_slots import make_setup
from apps.gateway.tokens import PromptSize
from apps.grants.models import Grant
from apps.keys import auth
from apps.keys.models import ApiKey
from apps.keys.services import api_key_change_limits, api_key_create, api_key_revoke
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter, Outcome
from lib import resp

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="on SQLite aadmit runs admit, step by step, in a worker thread",
    ),
]

HELLO = PromptSize(text_bytes=20, messages=1)


@pytest.fixture
def setup(settings):
    auth._recent.clear()
    yield make_setup("redis", settings)
    auth._recent.clear()


@pytest.fixture
def bob_key(world):
    return api_key_create(grant=world.grant, owner=world.bob, name="early")


def admit(secret: str, model: str = "chat-small"):
    """The admission of a chat request (call it from sync code, await it in the loop)."""
    return aadmit(
        secret=secret, catalog=load_snapshot(), endpoint="chat", model_name=model,
        prompt=HELLO, max_tokens=16,
    )  # fmt: skip


def run(scenario):
    """``scenario()`` on a loop of its own, its slots' connections closed after."""

    async def main():
        try:
            return await scenario()
        finally:
            await asyncio.sleep(0.2)  # a slot release started in the background has finished
            await slots_close()

    return asyncio.run(main())


def served(secret: str, model: str = "chat-small") -> None:
    """A request admitted (the process now knows the key) and then not forwarded."""

    admitting = admit(secret, model)

    async def scenario():
        await aabandon(await admitting)

    run(scenario)


def refused(secret: str, model: str = "chat-small") -> GatewayError:
    admitting = admit(secret, model)

    async def scenario():
        with pytest.raises(GatewayError) as info:
            await admitting
        return info.value

    return run(scenario)


def accounts(key: ApiKey, model: str = "chat-small") -> dict:
    """Everything a request may leave: holds, ledger rows, counters, the model's slots."""
    grant = Grant.objects.get(pk=key.grant_id)
    key = ApiKey.objects.get(pk=key.pk)
    return {
        "holds": Hold.objects.count(),
        "ledger": list(LedgerEntry.objects.order_by("pk").values_list("outcome", "credits")),
        "grant": (grant.credits_used, grant.credits_held),
        "key": (key.credits_used, key.credits_held),
        "months": (
            list(KeyMonthCounter.objects.values_list("used", "held")),
            list(MemberMonthCounter.objects.values_list("used", "held")),
        ),
        "slots": asyncio.run(_stats(model)),
    }


async def _stats(model: str) -> dict:
    try:
        return await slot_stats(model)
    finally:
        await slots_close()


def test_a_key_revoked_since_its_last_request_is_refused_and_leaves_nothing(setup, bob_key, holds):
    key, secret = bob_key
    served(secret)
    before = accounts(key)
    api_key_revoke(key=key)

    error = refused(secret)
    assert (error.status, error.code) == (401, "invalid_api_key")
    assert error.message == "This API key has been revoked."
    assert holds == [key.id, key.id]  # its hold was placed while the key was read again
    assert accounts(key) == before

    assert refused(secret).message == "This API key has been revoked."
    assert holds == [key.id, key.id]  # known refused now: no hold placed at all
    assert accounts(key) == before


def test_an_owner_who_turned_commercial_is_refused_a_non_commercial_model_at_once(
    setup, world, bob_key, holds
):
    key, secret = bob_key
    world.chat_model.tags = ["non-commercial"]
    world.chat_model.save()
    served(secret)
    before = accounts(key)
    world.bob.affiliation = "commercial"
    world.bob.save()

    error = refused(secret)
    assert (error.status, error.code) == (403, "model_not_allowed")
    assert "non-commercial" in error.message
    assert len(holds) == 2  # placed early, then withdrawn
    assert accounts(key) == before


def test_a_deactivated_owners_key_is_refused_at_once_and_leaves_nothing(
    setup, world, bob_key, holds
):
    # The process's copy of the key still carries the owner as active: the early hold and
    # slot are taken, the fresh read refuses, both are given back.
    key, secret = bob_key
    served(secret)
    before = accounts(key)
    world.bob.is_active = False
    world.bob.save()

    error = refused(secret)
    assert (error.status, error.code) == (401, "account_disabled")
    assert holds == [key.id, key.id]
    assert accounts(key) == before
    assert refused(secret).code == "account_disabled"
    assert holds == [key.id, key.id]  # known refused now: no hold placed at all

    world.bob.is_active = True
    world.bob.save()
    served(secret)  # not revoked: admitted again
    assert holds == [key.id, key.id, key.id]


def test_a_wrong_secret_of_a_known_key_never_places_a_hold(setup, bob_key, holds):
    key, secret = bob_key
    served(secret)
    before = accounts(key)
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    error = refused(wrong)
    assert (error.status, error.message) == (401, "Invalid API key.")
    assert holds == [key.id]  # the first request's only
    assert accounts(key) == before
    served(secret)  # the key itself still works
    assert holds == [key.id, key.id]


def test_a_revoked_key_hears_401_though_its_budget_is_spent_too(setup, world, bob_key, holds):
    key, secret = bob_key
    served(secret)
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=0)
    api_key_revoke(key=key)
    before = accounts(key)

    error = refused(secret)  # the early hold was refused (429): the key comes first
    assert (error.status, error.message) == (401, "This API key has been revoked.")
    assert len(holds) == 2
    assert accounts(key) == before


def test_an_accepted_key_is_admitted_with_its_fresh_row(setup, bob_key, holds):
    key, secret = bob_key
    served(secret)
    ApiKey.objects.filter(pk=key.pk).update(name="renamed")
    api_key_change_limits(key=key, monthly_limit=None, total_limit=None)  # drops the entry

    admitting = admit(secret)

    async def scenario():
        admitted = await admitting
        await aabandon(admitted)
        return admitted.key

    assert run(scenario).name == "renamed"
    assert holds == [key.id, key.id]


class Slow:
    """``real`` that waits ``seconds`` first (a slow key cache, a slow database)."""

    def __init__(self, real, seconds: float) -> None:
        self.real, self.seconds = real, seconds

    async def __call__(self, **kwargs):
        await asyncio.sleep(self.seconds)
        return await self.real(**kwargs)


@pytest.mark.parametrize("slow", ["read", "hold"])
def test_a_client_that_leaves_before_the_hold_is_in_hand_leaves_nothing(
    setup, bob_key, holds, monkeypatch, slow
):
    # The client disconnects (Django cancels the request's task) while the key is read again
    # or while its hold is being placed: the hold is placed all the same, then withdrawn.
    key, secret = bob_key
    served(secret)
    before = accounts(key)
    if slow == "read":
        slowed = Slow(admission.aapi_key_authenticate, 0.3)
        monkeypatch.setattr(admission, "aapi_key_authenticate", slowed)
    else:
        monkeypatch.setattr(admission, "ahold_place", Slow(admission.ahold_place, 0.3))

    admitting = admit(secret)

    async def scenario():
        request = asyncio.ensure_future(admitting)
        await asyncio.sleep(0.1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request

    run(scenario)
    assert len(holds) == 2
    assert accounts(key) == before


def test_a_client_that_leaves_while_queued_gives_back_its_place_and_its_hold(
    setup, world, bob_key, holds
):
    # After its hold is in hand a request is admitted like any other: leaving the queue
    # releases the hold at no charge with the request's ledger row, as before.
    key, secret = bob_key
    served(secret)
    world.chat_model.max_concurrency = 1
    world.chat_model.save()
    before = accounts(key)
    admitting = admit(secret)

    async def scenario():
        async with model_slot(model="chat-small", max_concurrency=1, queue_size=10):
            request = asyncio.ensure_future(admitting)
            await asyncio.sleep(0.3)  # queued behind the slot held here
            assert (await slot_stats("chat-small"))["queued"] == 1
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request

    run(scenario)
    after = accounts(key)
    assert after["ledger"] == [*before["ledger"], (Outcome.CLIENT_DISCONNECTED, 0)]
    assert {**after, "ledger": None} == {**before, "ledger": None}


def test_the_key_read_and_the_slot_script_go_out_in_one_write(setup, settings, bob_key):
    # What makes the key's read free: it rides with the slot's script (``lib.resp``).
    _, secret = bob_key
    served(secret)
    first, second = admit(secret), admit(secret)

    async def scenario():
        await aabandon(await first)  # connected
        transport = resp.client(settings.REDIS_URL)._protocol.transport
        writes, write = [], transport.write
        transport.write = lambda data: (writes.append(commands(data)), write(data))
        admitted = await second
        transport.write = write
        await aabandon(admitted)
        return writes

    assert run(scenario)[0] == [b"GET", b"EVALSHA"]


def commands(data: bytes) -> list[bytes]:
    reader = hiredis.Reader()
    reader.feed(data)
    found = []
    while (command := reader.gets()) is not False:
        found.append(command[0])
    return found
