"""Writes of team memberships. Every way people join or leave a team (the Django admin,
``seed_demo``) goes through here, because both change more than the membership row:

- joining gives the newcomer the collective monthly limit of each of the team's grants
  (``apps.limits.services.member_limit_apply_collective``);
- leaving revokes the person's API keys in the team's grants at once (their cache entries
  become tombstones, each revocation is in the grant's audit log).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from apps.core.exceptions import ApplicationError, Conflict
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_revoke
from apps.limits.services import member_limit_apply_collective
from apps.teams.models import Membership, Role, Team


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ApplicationError(f"A role is one of: {', '.join(Role.values)}.", param="role")


def membership_create(*, team: Team, user, role: str = Role.MEMBER, actor=None) -> Membership:
    """Add ``user`` to ``team``; ``actor`` is who did it (None: the system)."""
    _check_role(role)
    membership = Membership(team=team, user=user, role=role)
    try:
        with transaction.atomic():
            membership.save(force_insert=True)
            # Locked in a fixed order: a collective limit set meanwhile either sees this
            # membership or is read here (member_limits_change_all locks the grant too).
            for grant in Grant.objects.select_for_update().filter(team=team).order_by("pk"):
                member_limit_apply_collective(grant=grant, user=user, changed_by=actor)
    except IntegrityError:
        raise Conflict(f"{user} is already in team {team}.", param="user") from None
    return membership


def membership_role_change(*, membership: Membership, role: str) -> Membership:
    _check_role(role)
    Membership.objects.filter(pk=membership.pk).update(role=role)
    membership.role = role
    return membership


def membership_delete(*, membership: Membership, actor=None) -> list[ApiKey]:
    """Remove the person from the team and revoke their API keys in the team's grants; returns
    the keys revoked now."""
    team, user = membership.team, membership.user
    reason = f"{user.get_username()} left team {team.name}"
    with transaction.atomic():
        # The membership row's lock orders this against a key being created for the person
        # (api_key_create locks it too): that key is either seen here or refused there.
        locked = Membership.objects.select_for_update().filter(pk=membership.pk).first()
        keys = list(
            ApiKey.objects.filter(owner=user, grant__team=team, revoked_at__isnull=True)
            .select_related("grant", "owner")
            .order_by("pk")
        )
        for key in keys:
            api_key_revoke(key=key, actor=actor, reason=reason)
        if locked is not None:
            locked.delete()
    return keys
