"""The official openai package against Anvil: the keys of a person deactivated (as the Django
admin does it) are refused from the very next request on with 401 ``account_disabled``,
although this process accepted the key a moment ago, and the refusal leaves nothing behind:
no hold is placed for it. Reactivated, the same key works again. A request admitted before the
deactivation is served to its end and billed: the check is made when a request is admitted."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from apps.keys.models import ApiKey
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]
MESSAGE = (
    "The owner of this API key is deactivated; their keys do not work until the account is "
    "active again."
)


def set_active(user, active: bool) -> None:
    user.is_active = active
    user.save()


def chat(client: openai.OpenAI, **options):
    return client.chat.completions.create(
        model="chat-small", messages=HELLO, max_tokens=5, **options
    )


def accounts(key: ApiKey) -> dict:
    """Everything a request may leave: holds, ledger rows, counters."""
    wait_for_settlements()
    key = ApiKey.objects.select_related("grant").get(pk=key.pk)
    return {
        "holds": Hold.objects.count(),
        "ledger": LedgerEntry.objects.count(),
        "grant": (key.grant.credits_used, key.grant.credits_held),
        "key": (key.credits_used, key.credits_held),
        "months": (
            list(KeyMonthCounter.objects.values_list("used", "held")),
            list(MemberMonthCounter.objects.values_list("used", "held")),
        ),
    }


def assert_disabled(info) -> None:
    assert info.value.status_code == 401
    assert info.value.body == {
        "message": MESSAGE,
        "type": "authentication_error",
        "param": None,
        "code": "account_disabled",
    }


def test_a_deactivated_owners_key_is_refused_at_once_and_leaves_nothing(gateway, holds):
    client, key = gateway.client(), gateway.key
    chat(client)  # the process now knows the key
    before = accounts(key)
    set_active(gateway.world.bob, False)

    with pytest.raises(openai.AuthenticationError) as info:
        chat(client)
    assert_disabled(info)
    assert holds == [key.id]  # the first request's only: none for the refused one
    assert accounts(key) == before  # no hold, no ledger row, no counter changed

    with pytest.raises(openai.AuthenticationError) as info:
        chat(client, stream=True)
    assert_disabled(info)
    assert holds == [key.id]
    assert accounts(key) == before

    set_active(gateway.world.bob, True)
    assert chat(client).choices[0].message.content  # not revoked: it works again
    assert accounts(key)["ledger"] == before["ledger"] + 1


def test_every_endpoint_refuses_a_deactivated_owners_key(gateway, holds):
    client = gateway.client()
    set_active(gateway.world.bob, False)
    calls = [
        lambda: client.models.list(),
        lambda: client.embeddings.create(model="embed-small", input="x"),
        lambda: client.completions.create(model="chat-small", prompt="Hi", max_tokens=5),
    ]
    for call in calls:
        with pytest.raises(openai.AuthenticationError) as info:
            call()
        assert_disabled(info)
    response = httpx.get(
        f"{gateway.url}/models-plgrid-format",
        headers={"Authorization": f"Bearer {gateway.secret}"},
        timeout=10,
    )
    assert (response.status_code, response.json()["error"]["code"]) == (401, "account_disabled")
    assert holds == []
    assert not LedgerEntry.objects.exists()


def test_a_request_admitted_before_the_deactivation_is_served_to_its_end(gateway, holds):
    client = gateway.client()
    stream = chat(client, stream=True, stream_options={"include_usage": True})
    chunks = [next(stream)]  # admitted and answering
    set_active(gateway.world.bob, False)
    chunks += list(stream)
    assert chunks[-1].usage.completion_tokens > 0
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert (entry.outcome, entry.credits > Decimal(0)) == ("ok", True)

    with pytest.raises(openai.AuthenticationError) as info:  # the next one is refused
        chat(client)
    assert_disabled(info)
