from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.statements.access import statement_for_viewer
from apps.statements.exports import (
    credits_text,
    statement_csv,
    statement_document,
    statement_filename,
)
from apps.statements.selectors import statement_lines, statements_visible
from apps.teams.access import grant_for_member


@login_required
@require_GET
def statement_list(request):
    grant = None
    if request.GET.get("grant"):
        grant, _ = grant_for_member(user=request.user, public_id=request.GET["grant"])
    statements = statements_visible(user=request.user, grant=grant)
    rows = [(s, credits_text(s.credits)) for s in statements]
    return render(request, "statements/statement_list.html", {"grant": grant, "rows": rows})


def _attachment(response: HttpResponse, filename: str) -> HttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_GET
def statement_csv_download(request, public_id):
    statement = statement_for_viewer(user=request.user, public_id=public_id)
    body = statement_csv(statement, statement_lines(statement=statement))
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    return _attachment(response, statement_filename(statement, "csv"))


@login_required
@require_GET
def statement_json_download(request, public_id):
    statement = statement_for_viewer(user=request.user, public_id=public_id)
    document = statement_document(statement, statement_lines(statement=statement))
    response = JsonResponse(document, json_dumps_params={"indent": 2})
    return _attachment(response, statement_filename(statement, "json"))
