"""My usage: the signed-in person's consumption in a month across their grants and keys."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.consumption.pages import my_consumption
from apps.consumption.periods import period_from
from apps.core.tables import table_csv_response


@login_required
@require_GET
def my_usage(request):
    period = period_from(request)
    consumption = my_consumption(user=request.user, period=period)
    csv = table_csv_response(request, consumption.tables, prefix=f"my-usage-{period}")
    context = {**consumption.context, "tables": consumption.tables}
    return csv or render(request, "consumption/my_usage.html", context)
