from __future__ import annotations

from apps.grants.models import Grant
from apps.teams.models import Membership


def grants_for_user(*, user):
    """The grants of every team the user belongs to."""
    return (
        Grant.objects.filter(team__memberships__user=user)
        .select_related("team")
        .order_by("identifier")
    )


def grant_members(*, grant: Grant):
    return (
        Membership.objects.filter(team=grant.team).select_related("user").order_by("user__username")
    )
