"""Writes of team memberships. Every way people join or leave a team (the Django admin,
``seed_demo``) goes through here, because both change more than the membership row. The apps
above teams do their part on the signals of ``apps.teams.signals``, in the same transaction:

- joining gives the newcomer the collective monthly limit of each of the team's grants
  (``apps.limits.services.member_limits_apply_collective``);
- leaving revokes the person's API keys in the team's grants at once (their cache entries
  become tombstones, each revocation is in the grant's audit log;
  ``apps.keys.services.api_keys_revoke_in_team``);
- every join, leave and role change is in the audit log of each of the team's grants
  (``apps.audit.receivers``).

An identity provider's teams claim goes through ``memberships_sync`` at each sign-in.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction

from apps.core.exceptions import ApplicationError, Conflict
from apps.teams.models import Membership, Role, Team
from apps.teams.signals import member_joined, member_leaving, member_role_changed

logger = logging.getLogger(__name__)

VIA_PROVIDER = "identity provider"


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ApplicationError(f"A role is one of: {', '.join(Role.values)}.", param="role")


def membership_create(
    *,
    team: Team,
    user,
    role: str = Role.MEMBER,
    actor=None,
    provider_managed: bool = False,
    via: str = "",
) -> Membership:
    """Add ``user`` to ``team``; ``actor`` is who did it (None: the system)."""
    _check_role(role)
    membership = Membership(team=team, user=user, role=role, provider_managed=provider_managed)
    try:
        with transaction.atomic():
            membership.save(force_insert=True)
            member_joined.send(sender=Membership, membership=membership, actor=actor, via=via)
    except IntegrityError:
        raise Conflict(f"{user} is already in team {team}.", param="user") from None
    return membership


def membership_role_change(
    *, membership: Membership, role: str, actor=None, via: str = ""
) -> Membership:
    """Give the member another role; nothing happens when it is the role they have."""
    _check_role(role)
    with transaction.atomic():
        before = (
            Membership.objects.select_for_update()
            .filter(pk=membership.pk)
            .values_list("role", flat=True)
            .first()
        )
        membership.role = role
        if before is None or before == role:
            return membership
        Membership.objects.filter(pk=membership.pk).update(role=role)
        member_role_changed.send(
            sender=Membership, membership=membership, actor=actor, via=via, before=before
        )
    return membership


def membership_delete(*, membership: Membership, actor=None, via: str = "") -> None:
    """Remove the person from the team; the receivers of ``member_leaving`` revoke their API
    keys in the team's grants in the same transaction."""
    with transaction.atomic():
        # The membership row's lock orders this against a key being created for the person
        # (api_key_create locks it too): that key is either seen by the receivers or refused.
        locked = Membership.objects.select_for_update().filter(pk=membership.pk).first()
        member_leaving.send(sender=Membership, membership=membership, actor=actor, via=via)
        if locked is not None:
            locked.delete()


def memberships_sync(*, user, roles: dict[str, str]) -> None:
    """Make the person's teams what the identity provider's teams claim says (team name →
    role), at a sign-in: teams it names are joined (created when new) or get the named role,
    and the teams it named before but no longer does are left, through the services above, so
    leaving takes the person's keys in those teams' grants out of use. Memberships given by
    hand (``provider_managed`` off) stay unless the claim names their team."""
    with transaction.atomic():
        current = {
            membership.team.name: membership
            for membership in Membership.objects.select_related("team").filter(user=user)
        }
        for name, role in sorted(roles.items()):
            membership = current.get(name)
            if membership is None:
                team = _team_named(name)
                if team is not None:
                    membership_create(
                        team=team, user=user, role=role, provider_managed=True, via=VIA_PROVIDER
                    )
                continue
            membership_role_change(membership=membership, role=role, via=VIA_PROVIDER)
            if not membership.provider_managed:
                Membership.objects.filter(pk=membership.pk).update(provider_managed=True)
        for name, membership in sorted(current.items()):
            if membership.provider_managed and name not in roles:
                membership_delete(membership=membership, via=VIA_PROVIDER)


def _team_named(name: str) -> Team | None:
    """The team with this name, created when there is none yet; None for a name that can not
    be a team's (it is logged and skipped)."""
    try:
        validate_slug(name)
    except ValidationError:
        logger.warning("Teams claim names %r, which is not a team name; skipped", name)
        return None
    if len(name) > Team._meta.get_field("name").max_length:
        logger.warning("Teams claim names %r, which is too long for a team name; skipped", name)
        return None
    team, _ = Team.objects.get_or_create(name=name)
    return team
