from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from apps.grants.selectors import grant_members, grants_for_user
from apps.teams.access import grant_for_member


@login_required
def grant_list(request):
    return render(request, "grants/grant_list.html", {"grants": grants_for_user(user=request.user)})


@login_required
def grant_detail(request, public_id):
    grant, membership = grant_for_member(user=request.user, public_id=public_id)
    context = {
        "grant": grant,
        "membership": membership,
        "models": grant.allowed_models.order_by("name"),
        "members": grant_members(grant=grant),
    }
    return render(request, "grants/grant_detail.html", context)
