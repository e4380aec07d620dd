"""The playground: a page, and the endpoint its script posts chat requests to.

The endpoint is the gateway's own chat completion (``serve``: parse, admission, relay) with
one difference — the key is not a bearer secret (its owner never sends it again) but one of
the signed-in person's keys, picked by public id and passed on by id, as a job's is
(``Ask.key_id``: judged as if its secret had been sent). Session and CSRF authenticate the person;
the admission then judges the key, places the hold, takes the slot and settles exactly as for
any client, so a playground request is charged, limited and refused like an API call. Neither
the prompt nor the answer is stored: they pass through, as every gateway request's do.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.catalog.selectors import catalog_for_user
from apps.gateway.errors import GatewayError
from apps.gateway.views import CHAT, serve
from apps.keys.models import ApiKey
from apps.keys.selectors import api_keys_for_owner


@login_required
@require_GET
def playground(request):
    keys = [key for key in api_keys_for_owner(owner=request.user) if key.status == "active"]
    models = [
        row.model
        for row in catalog_for_user(user=request.user)
        if row.accessible and row.model.available and row.model.kind == "chat"
    ]
    return render(request, "playground/playground.html", {"keys": keys, "models": models})


def _refusal(status: int, message: str, code: str) -> HttpResponse:
    return GatewayError(status, message, code=code).response()


async def chat(request, public_id):
    """POST a chat completion body; the answer streams back as from /api/v1/chat/completions.
    CSRF is checked by the middleware (this view is not exempt)."""
    user = await request.auser()
    if not user.is_authenticated:
        return _refusal(401, "Sign in to use the playground.", "not_signed_in")
    if request.method != "POST":
        return _refusal(405, "The playground takes POST requests.", "method_not_allowed")
    key_id = await _own_key_id(public_id=public_id, owner_id=user.pk)
    if key_id is None:  # someone else's key, or none: as the API answers an unknown secret
        return _refusal(401, "Invalid API key.", "invalid_api_key")
    return await serve(request, CHAT, key_id=key_id)


async def _own_key_id(*, public_id, owner_id: int) -> int | None:
    """The id of the owner's API key with this public id (the gateway judges it then)."""
    keys = ApiKey.objects.filter(public_id=public_id, owner_id=owner_id)
    query = keys.values_list("pk", flat=True)
    return await sync_to_async(query.first, thread_sensitive=False)()
