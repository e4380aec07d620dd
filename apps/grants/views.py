from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.consumption.pages import grant_consumption
from apps.consumption.periods import period_from
from apps.core.tables import table_csv_response
from apps.grants.selectors import grants_for_user
from apps.teams.access import grant_for_member


@login_required
def grant_list(request):
    return render(request, "grants/grant_list.html", {"grants": grants_for_user(user=request.user)})


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
    return csv or render(request, "grants/grant_detail.html", context)
