"""Grant admins change members' monthly limits: one member (Change limit in the Members
table) or all members at once (a grant action). Each is its own URL and view."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.core.exceptions import ApplicationError
from apps.core.formats import format_credits
from apps.limits.forms import MemberLimitForm
from apps.limits.selectors import member_limit_current
from apps.limits.services import member_limit_change, member_limits_change_all
from apps.teams.access import grant_for_manager, grant_member


def _said(limit) -> str:
    return "no limit" if limit is None else f"{format_credits(limit)} credits"


def _form_page(request, form, **context):
    return render(request, "limits/member_limit_form.html", {"form": form, **context})


@login_required
@require_http_methods(["GET", "POST"])
def member_limit_change_view(request, public_id, user_public_id):
    grant, _ = grant_for_manager(user=request.user, public_id=public_id)
    member = grant_member(grant=grant, user_public_id=user_public_id).user
    initial = {"monthly_limit": member_limit_current(grant=grant, user=member)}
    form = MemberLimitForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            change = member_limit_change(
                grant=grant, user=member, changed_by=request.user, **form.cleaned_data
            )
        except ApplicationError as exc:
            form.add_error("monthly_limit", exc.message)
        else:
            messages.success(
                request, f"{member.get_username()}'s monthly limit is now {_said(change.after)}."
            )
            return redirect("consumption:grant", grant.public_id)
    return _form_page(request, form, grant=grant, member=member)


@login_required
@require_http_methods(["GET", "POST"])
def member_limits_change_all_view(request, public_id):
    grant, _ = grant_for_manager(user=request.user, public_id=public_id)
    form = MemberLimitForm(
        request.POST or None, initial={"monthly_limit": grant.collective_monthly_limit}
    )
    if request.method == "POST" and form.is_valid():
        try:
            changes = member_limits_change_all(
                grant=grant, changed_by=request.user, **form.cleaned_data
            )
        except ApplicationError as exc:
            form.add_error("monthly_limit", exc.message)
        else:
            limit = form.cleaned_data["monthly_limit"]
            messages.success(
                request, f"The monthly limit of all {len(changes)} members is now {_said(limit)}."
            )
            return redirect("consumption:grant", grant.public_id)
    return _form_page(request, form, grant=grant, member=None)
