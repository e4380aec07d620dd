"""Grant admins set members' monthly limits: for one member, or for all members at once.

Both write through ``member_limit_set``, so there is one limit per member and whichever change
came last counts, in either order. Each member's old and new value is kept in
``MemberLimitChange`` and each action is one audit log entry.

The collective limit is also kept on the grant, so people who join the team later get it
(``member_limits_apply_collective``, on ``apps.teams.signals.member_joined``) — unless their
own limit in the grant was set after it (someone who left and came back).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.core.exceptions import ApplicationError
from apps.grants.models import Grant
from apps.keys.services import api_keys_forget_member
from apps.limits.models import LimitScope, MemberLimit, MemberLimitChange
from apps.teams.models import Membership


def _check(monthly_limit: Decimal | None) -> None:
    if monthly_limit is not None and (not monthly_limit.is_finite() or monthly_limit < 0):
        raise ApplicationError("A monthly limit is 0 or more credits.", param="monthly_limit")


def member_limit_set(
    *, grant: Grant, user, monthly_limit: Decimal | None, changed_by
) -> MemberLimit:
    """Set (or with None, lift) a member's monthly credit limit in a grant. Who may do it is
    the caller's access check; this refuses people outside the grant's team."""
    if not Membership.objects.filter(team_id=grant.team_id, user=user).exists():
        raise ApplicationError(f"{user} is not a member of {grant}'s team.", param="user")
    with transaction.atomic():
        member_limit, _ = MemberLimit.objects.select_for_update().get_or_create(
            grant=grant, user=user
        )
        member_limit.monthly_limit = monthly_limit
        member_limit.changed_by = changed_by
        member_limit.changed_at = timezone.now()
        try:
            member_limit.full_clean()
        except ValidationError as exc:
            message = " ".join(exc.message_dict.get("monthly_limit", exc.messages))
            raise ApplicationError(message, param="monthly_limit") from None
        member_limit.save()
        api_keys_forget_member(grant=grant, user=user)
    return member_limit


def _set_one(*, grant, user, monthly_limit, changed_by, scope: str, now) -> MemberLimitChange:
    current = MemberLimit.objects.select_for_update().filter(grant=grant, user=user).first()
    before = current.monthly_limit if current else None
    saved = member_limit_set(
        grant=grant, user=user, monthly_limit=monthly_limit, changed_by=changed_by
    )
    return MemberLimitChange.objects.create(
        grant=grant,
        user=user,
        before=before,
        after=saved.monthly_limit,
        scope=scope,
        changed_by=changed_by,
        created=now,
    )


def member_limit_change(
    *, grant: Grant, user, monthly_limit: Decimal | None, changed_by
) -> MemberLimitChange:
    """Set one member's monthly limit (None: no limit), overwriting whatever was set before —
    individually or for all members."""
    _check(monthly_limit)
    with transaction.atomic():
        change = _set_one(
            grant=grant,
            user=user,
            monthly_limit=monthly_limit,
            changed_by=changed_by,
            scope=LimitScope.INDIVIDUAL,
            now=timezone.now(),
        )
        audit_record(
            actor=changed_by,
            action=AuditAction.MEMBER_LIMIT_CHANGED,
            grant=grant,
            target=f"member {user.get_username()}",
            before={"monthly_limit": change.before},
            after={"monthly_limit": change.after},
        )
    return change


def member_limits_change_all(
    *, grant: Grant, monthly_limit: Decimal | None, changed_by
) -> list[MemberLimitChange]:
    """Set the same monthly limit for every member of the grant's team (the collective
    limit), overwriting each member's previous limit, individual or collective."""
    _check(monthly_limit)
    now = timezone.now()
    memberships = (
        Membership.objects.filter(team_id=grant.team_id).select_related("user").order_by("user_id")
    )
    with transaction.atomic():
        # The UPDATE locks the grant row until commit, which orders this against people joining
        # meanwhile: they either are in ``memberships`` or, locking the row in membership_create,
        # read the new collective limit.
        Grant.objects.filter(pk=grant.pk).update(
            collective_monthly_limit=monthly_limit, collective_limit_set_at=now
        )
        grant.collective_monthly_limit, grant.collective_limit_set_at = monthly_limit, now
        changes = [
            _set_one(
                grant=grant,
                user=membership.user,
                monthly_limit=monthly_limit,
                changed_by=changed_by,
                scope=LimitScope.COLLECTIVE,
                now=now,
            )
            for membership in memberships
        ]
        audit_record(
            actor=changed_by,
            action=AuditAction.MEMBER_LIMITS_CHANGED_ALL,
            grant=grant,
            target=f"all {len(changes)} members",
            before={change.user.get_username(): change.before for change in changes},
            after={"monthly_limit": monthly_limit},
        )
    return changes


def member_limits_apply_collective(*, team, user, changed_by=None) -> None:
    """Give a person who has just joined ``team`` the collective limit of each of its grants
    (``member_limit_apply_collective``), inside the membership's transaction."""
    # Locked in a fixed order: a collective limit set meanwhile either sees the new
    # membership or is read here (member_limits_change_all locks the grant too).
    for grant in Grant.objects.select_for_update().filter(team=team).order_by("pk"):
        member_limit_apply_collective(grant=grant, user=user, changed_by=changed_by)


def member_limit_apply_collective(
    *, grant: Grant, user, changed_by=None
) -> MemberLimitChange | None:
    """Give a new member of the grant's team the grant's collective limit, if one was set and
    it is newer than the member's own limit there (latest wins). Returns the change made, or
    None. The caller holds the grant row's lock (``select_for_update``)."""
    if grant.collective_limit_set_at is None:
        return None
    current = MemberLimit.objects.filter(grant=grant, user=user).first()
    if current is not None and current.changed_at >= grant.collective_limit_set_at:
        return None
    if (current.monthly_limit if current else None) == grant.collective_monthly_limit:
        return None  # nothing would change
    with transaction.atomic():
        change = _set_one(
            grant=grant,
            user=user,
            monthly_limit=grant.collective_monthly_limit,
            changed_by=changed_by,
            scope=LimitScope.COLLECTIVE,
            now=timezone.now(),
        )
        audit_record(
            actor=changed_by,
            action=AuditAction.MEMBER_LIMIT_CHANGED,
            grant=grant,
            target=f"member {user.get_username()} (joined: the limit for all members)",
            before={"monthly_limit": change.before},
            after={"monthly_limit": change.after},
        )
    return change
