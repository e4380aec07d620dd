"""How the audit log hears of changes made in the apps below it: a grant's credit pool
allocated or changed in the admin."""

from __future__ import annotations

from django.dispatch import receiver

from apps.audit.services import audit_credits_allocated
from apps.grants.signals import grant_saved


@receiver(grant_saved, dispatch_uid="audit_credits_allocated")
def _grant_saved(sender, grant, actor, before=None, **kwargs) -> None:
    allocated_before = None if before is None else before["credits_allocated"]
    audit_credits_allocated(grant=grant, actor=actor, before=allocated_before)
