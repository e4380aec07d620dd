"""HTML pages of API keys and management keys. A person only ever reaches their own keys:
anyone else's key by URL is a 404 (``apps.keys.access``). A key's own page, with its limits
and consumption, is in ``apps.consumption`` (``consumption:api_key``)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.exceptions import ApplicationError
from apps.grants.selectors import grants_for_user
from apps.keys.access import api_key_for_owner, management_key_for_owner
from apps.keys.examples import examples_context
from apps.keys.forms import ApiKeyCreateForm, ApiKeyLimitsForm, ManagementKeyCreateForm
from apps.keys.handover import secret_forget, secret_hand_over, secret_take
from apps.keys.selectors import api_keys_for_owner, management_keys_for_owner
from apps.keys.services import (
    api_key_archive,
    api_key_change_limits,
    api_key_create,
    api_key_revoke,
    management_key_archive,
    management_key_create,
    management_key_revoke,
)

SHOWN_ONCE = "The secret was shown once, when the key was created, and can not be shown again."


def form_error(form, exc: ApplicationError) -> None:
    form.add_error(exc.param if exc.param in form.fields else None, exc.message)


@login_required
@require_GET
def api_key_list(request):
    keys = api_keys_for_owner(owner=request.user)
    return render(request, "keys/api_key_list.html", {"keys": keys, "tab": "active"})


@login_required
@require_GET
def api_key_archived_list(request):
    keys = api_keys_for_owner(owner=request.user, archived=True)
    return render(request, "keys/api_key_list.html", {"keys": keys, "tab": "archived"})


@login_required
@require_http_methods(["GET", "POST"])
def api_key_create_view(request):
    form = ApiKeyCreateForm(
        request.POST or None, user=request.user, initial={"grant": request.GET.get("grant")}
    )
    if request.method == "POST" and form.is_valid():
        try:
            key, secret = api_key_create(owner=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            form_error(form, exc)
        else:
            url = reverse("keys:created", args=[key.public_id])
            response = redirect(url)
            secret_hand_over(response, path=url, public_id=key.public_id, secret=secret)
            return response
    return render(request, "keys/api_key_create.html", {"form": form})


@login_required
@require_GET
def api_key_created(request, public_id):
    key = api_key_for_owner(user=request.user, public_id=public_id)
    secret = secret_take(request, public_id=key.public_id)
    if secret is None:
        messages.info(request, SHOWN_ONCE)
        response = redirect("consumption:api_key", key.public_id)
    else:
        context = {
            "key": key, "secret": secret, "kind": "API key", "next": "keys:list",
            **examples_context(request=request, grants=[key.grant]),
        }  # fmt: skip
        response = render(request, "keys/secret_created.html", context)
    return secret_forget(response, path=request.path)


@login_required
@require_http_methods(["GET", "POST"])
def api_key_change_limits_view(request, public_id):
    key = api_key_for_owner(user=request.user, public_id=public_id)
    initial = {"monthly_limit": key.monthly_limit, "total_limit": key.total_limit}
    form = ApiKeyLimitsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            api_key_change_limits(key=key, actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"New limits for {key.name} apply from the next request.")
            return redirect("consumption:api_key", key.public_id)
    return render(request, "keys/api_key_limits.html", {"key": key, "form": form})


def _confirm(request, key, *, action: str, explanation: str, cancel_url: str):
    context = {"key": key, "action": action, "explanation": explanation, "cancel": cancel_url}
    return render(request, "keys/confirm.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def api_key_revoke_view(request, public_id):
    key = api_key_for_owner(user=request.user, public_id=public_id)
    if request.method == "GET":
        explanation = "Requests with this key are refused from the next one on. It can't be undone."
        return _confirm(
            request,
            key,
            action="Revoke",
            explanation=explanation,
            cancel_url=reverse("consumption:api_key", args=[key.public_id]),
        )
    api_key_revoke(key=key, actor=request.user)
    messages.success(request, f"API key {key.name} is revoked.")
    return redirect("keys:list")


@login_required
@require_http_methods(["GET", "POST"])
def api_key_archive_view(request, public_id):
    key = api_key_for_owner(user=request.user, public_id=public_id)
    if request.method == "GET":
        explanation = (
            "The key is revoked at once and moves to Archived keys; its name becomes free "
            "for a new key. It can't be undone."
        )
        return _confirm(
            request,
            key,
            action="Archive",
            explanation=explanation,
            cancel_url=reverse("consumption:api_key", args=[key.public_id]),
        )
    api_key_archive(key=key, actor=request.user)
    messages.success(request, f"API key {key.name} is archived and revoked.")
    return redirect("keys:archived")


@login_required
@require_GET
def management_key_list(request):
    context = {
        "keys": management_keys_for_owner(owner=request.user),
        "form": ManagementKeyCreateForm(),
    }
    return render(request, "keys/management_key_list.html", context)


@login_required
@require_POST
def management_key_create_view(request):
    form = ManagementKeyCreateForm(request.POST)
    if form.is_valid():
        try:
            key, secret = management_key_create(owner=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            form_error(form, exc)
        else:
            url = reverse("management_keys:created", args=[key.public_id])
            response = redirect(url)
            secret_hand_over(response, path=url, public_id=key.public_id, secret=secret)
            return response
    context = {"keys": management_keys_for_owner(owner=request.user), "form": form}
    return render(request, "keys/management_key_list.html", context)


@login_required
@require_GET
def management_key_created(request, public_id):
    key = management_key_for_owner(user=request.user, public_id=public_id)
    secret = secret_take(request, public_id=key.public_id)
    if secret is None:
        messages.info(request, SHOWN_ONCE)
        response = redirect("management_keys:list")
    else:
        context = {
            "key": key,
            "secret": secret,
            "kind": "management key",
            "next": "management_keys:list",
        }
        response = render(request, "keys/secret_created.html", context)
    return secret_forget(response, path=request.path)


@login_required
@require_http_methods(["GET", "POST"])
def management_key_revoke_view(request, public_id):
    key = management_key_for_owner(user=request.user, public_id=public_id)
    if request.method == "GET":
        explanation = "Key creation with this management key stops at once. It can't be undone."
        return _confirm(
            request,
            key,
            action="Revoke",
            explanation=explanation,
            cancel_url=reverse("management_keys:list"),
        )
    management_key_revoke(key=key)
    messages.success(request, f"Management key {key.name} is revoked.")
    return redirect("management_keys:list")


@login_required
@require_http_methods(["GET", "POST"])
def management_key_archive_view(request, public_id):
    key = management_key_for_owner(user=request.user, public_id=public_id)
    if request.method == "GET":
        explanation = "The key is revoked at once and leaves this list. It can't be undone."
        return _confirm(
            request,
            key,
            action="Archive",
            explanation=explanation,
            cancel_url=reverse("management_keys:list"),
        )
    management_key_archive(key=key)
    messages.success(request, f"Management key {key.name} is archived.")
    return redirect("management_keys:list")


@login_required
@require_GET
def quickstart(request):
    """How to go from an account to a first answer: a grant, a key, the examples."""
    grants = list(grants_for_user(user=request.user))
    context = {"grants": grants, **examples_context(request=request, grants=grants)}
    return render(request, "keys/quickstart.html", context)
