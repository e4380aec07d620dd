"""Writes of team memberships. Every way people join or leave a team (the Django admin,
``seed_demo``) goes through here, because both change more than the membership row. The apps
above teams do their part on the signals of ``apps.teams.signals``, in the same transaction:

- joining gives the newcomer the collective monthly limit of each of the team's grants
  (``apps.limits.services.member_limits_apply_collective``);
- leaving revokes the person's API keys in the team's grants at once (their cache entries
  become tombstones, each revocation is in the grant's audit log;
  ``apps.keys.services.api_keys_revoke_in_team``).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from apps.core.exceptions import ApplicationError, Conflict
from apps.teams.models import Membership, Role, Team
from apps.teams.signals import member_joined, member_leaving


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
            member_joined.send(sender=Membership, membership=membership, actor=actor)
    except IntegrityError:
        raise Conflict(f"{user} is already in team {team}.", param="user") from None
    return membership


def membership_role_change(*, membership: Membership, role: str) -> Membership:
    _check_role(role)
    Membership.objects.filter(pk=membership.pk).update(role=role)
    membership.role = role
    return membership


def membership_delete(*, membership: Membership, actor=None) -> None:
    """Remove the person from the team; the receivers of ``member_leaving`` revoke their API
    keys in the team's grants in the same transaction."""
    with transaction.atomic():
        # The membership row's lock orders this against a key being created for the person
        # (api_key_create locks it too): that key is either seen by the receivers or refused.
        locked = Membership.objects.select_for_update().filter(pk=membership.pk).first()
        member_leaving.send(sender=Membership, membership=membership, actor=actor)
        if locked is not None:
            locked.delete()
