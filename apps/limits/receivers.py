"""How limits reacts to changes made in the apps below it: a newcomer to a team gets the
collective monthly limits of its grants."""

from __future__ import annotations

from django.dispatch import receiver

from apps.limits.services import member_limits_apply_collective
from apps.teams.signals import member_joined


@receiver(member_joined, dispatch_uid="limits_apply_collective_to_newcomer")
def _member_joined(sender, membership, actor=None, **kwargs) -> None:
    member_limits_apply_collective(team=membership.team, user=membership.user, changed_by=actor)
