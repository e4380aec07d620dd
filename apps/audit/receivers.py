"""How the audit log hears of changes made in the apps below it: a grant's credit pool
allocated or changed in the admin; people joining or leaving a team, or getting another role
in it (by hand or through the identity provider's teams claim)."""

from __future__ import annotations

from django.dispatch import receiver

from apps.audit.models import AuditAction
from apps.audit.services import audit_credits_allocated, audit_membership
from apps.grants.signals import grant_saved
from apps.teams.signals import member_joined, member_leaving, member_role_changed


@receiver(grant_saved, dispatch_uid="audit_credits_allocated")
def _grant_saved(sender, grant, actor, before=None, **kwargs) -> None:
    allocated_before = None if before is None else before["credits_allocated"]
    audit_credits_allocated(grant=grant, actor=actor, before=allocated_before)


@receiver(member_joined, dispatch_uid="audit_member_joined")
def _member_joined(sender, membership, actor=None, via="", **kwargs) -> None:
    audit_membership(
        membership=membership,
        actor=actor,
        action=AuditAction.MEMBER_ADDED,
        after={"role": membership.role},
        via=via,
    )


@receiver(member_leaving, dispatch_uid="audit_member_leaving")
def _member_leaving(sender, membership, actor=None, via="", **kwargs) -> None:
    audit_membership(
        membership=membership,
        actor=actor,
        action=AuditAction.MEMBER_REMOVED,
        before={"role": membership.role},
        via=via,
    )


@receiver(member_role_changed, dispatch_uid="audit_member_role_changed")
def _member_role_changed(sender, membership, before, actor=None, via="", **kwargs) -> None:
    audit_membership(
        membership=membership,
        actor=actor,
        action=AuditAction.MEMBER_ROLE_CHANGED,
        before={"role": before},
        after={"role": membership.role},
        via=via,
    )
