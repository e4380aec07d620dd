"""My usage: the signed-in person's consumption this month across their grants and keys."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.consumption.builders import member_budgets_table
from apps.consumption.periods import period_from, periods_between
from apps.consumption.tables import table_csv_response
from apps.limits.selectors import member_budgets_for_user


@login_required
@require_GET
def my_usage(request):
    period = period_from(request)
    budgets = member_budgets_for_user(user=request.user, period=period)
    tables = [member_budgets_table(budgets=budgets, period=period)]
    csv = table_csv_response(request, tables, prefix=f"my-usage-{period}")
    today = timezone.localdate()
    context = {
        "period": period,
        "periods": periods_between(request.user.date_joined.date(), today),
        "tables": tables,
    }
    return csv or render(request, "consumption/my_usage.html", context)
