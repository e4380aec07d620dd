"""The pages that show consumption: My usage (the signed-in person's, in a month across their
grants and keys), a grant's page (its members, limits and consumption) and an API key's page
(its four limits and consumption). Each table downloads as CSV from the same URL."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.consumption.pages import grant_consumption, key_consumption, my_consumption
from apps.consumption.periods import period_from
from apps.core.tables import table_csv_response
from apps.keys.access import api_key_for_owner
from apps.keys.examples import examples_context
from apps.teams.access import grant_for_member
from apps.usage.selectors import key_request_find


@login_required
@require_GET
def my_usage(request):
    period = period_from(request)
    consumption = my_consumption(user=request.user, period=period)
    csv = table_csv_response(request, consumption.tables, prefix=f"my-usage-{period}")
    context = {**consumption.context, "tables": consumption.tables}
    return csv or render(request, "consumption/my_usage.html", context)


@login_required
@require_GET
def grant_detail(request, public_id):
    grant, membership = grant_for_member(user=request.user, public_id=public_id)
    consumption = grant_consumption(grant=grant, membership=membership, period=period_from(request))
    csv = table_csv_response(request, consumption.tables, prefix=grant.identifier)
    context = {
        "grant": grant,
        "membership": membership,
        "models": grant.allowed_models.order_by("name"),
        "can_audit": membership.can_manage_members or request.user.is_staff,
        **consumption.context,
    }
    return csv or render(request, "consumption/grant_detail.html", context)


@login_required
@require_GET
def api_key_detail(request, public_id):
    key = api_key_for_owner(user=request.user, public_id=public_id)
    consumption = key_consumption(key=key, period=period_from(request))
    csv = table_csv_response(request, consumption.tables, prefix=f"key-{key.name}")
    asked = request.GET.get("request_id", "")
    context = {
        "key": key,
        "request_asked": asked.strip()[:128],
        "request_found": key_request_find(api_key_id=key.id, request_id=asked) if asked else None,
        **consumption.context,
        "tables": consumption.tables,
        **examples_context(request=request, grants=[key.grant]),
    }
    return csv or render(request, "consumption/api_key_detail.html", context)
