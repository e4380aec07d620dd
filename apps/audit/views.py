"""The audit log pages: one grant's (its admins and staff), everything (staff)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.audit.selectors import PAGE_SIZE, audit_entries_all, audit_entries_for_grant
from apps.audit.tables import audit_table
from apps.core.tables import table_csv_response
from apps.teams.access import grant_for_auditor, staff_only


@login_required
@require_GET
def grant_audit(request, public_id):
    grant = grant_for_auditor(user=request.user, public_id=public_id)
    table = audit_table(entries=audit_entries_for_grant(grant=grant), with_grant=False)
    csv = table_csv_response(request, [table], prefix=grant.identifier)
    context = {"grant": grant, "table": table, "page_size": PAGE_SIZE}
    return csv or render(request, "audit/audit_log.html", context)


@login_required
@require_GET
def audit_log(request):
    staff_only(user=request.user)
    table = audit_table(entries=audit_entries_all(), with_grant=True)
    csv = table_csv_response(request, [table], prefix="anvil")
    return csv or render(request, "audit/audit_log.html", {"table": table, "page_size": PAGE_SIZE})
