from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from apps.grants.selectors import grants_for_user


@login_required
def grant_list(request):
    return render(request, "grants/grant_list.html", {"grants": grants_for_user(user=request.user)})
