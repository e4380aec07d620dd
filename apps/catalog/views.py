from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from apps.catalog.selectors import catalog_for_user, filter_tags, tag_legend


@login_required
def model_list(request):
    tag = request.GET.get("tag") or None
    if tag not in filter_tags():
        tag = None
    rows = catalog_for_user(user=request.user, tag=tag)
    return render(
        request,
        "catalog/model_list.html",
        {
            "rows": rows,
            "tags": filter_tags(),
            "selected_tag": tag,
            "legend": tag_legend(),
            "helpdesk_url": settings.HELPDESK_URL,
        },
    )
