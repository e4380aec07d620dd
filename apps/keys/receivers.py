"""How keys reacts to changes made in the apps below it.

The key cache carries each key's owner row (affiliation, active flag), so a change to a
person must reach it at once: a newly commercial person must not keep using Non-commercial
models for the cache's lifetime, nor a deactivated one their keys; it carries the key's
grant too, so new validity dates and a new allocation must reach it at once (no request may
take a credit hold placed under the old allocation: apps.usage.ready). Someone who leaves a
team loses their API keys in its grants at once.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.grants.signals import grant_saved
from apps.keys.services import api_keys_forget_grant, api_keys_revoke_in_team, keys_forget_owner
from apps.teams.signals import member_leaving

# Saves that change nothing a key's owner row is judged by (a login stamps last_login).
_IRRELEVANT = frozenset({"last_login", "password"})


@receiver(post_save, sender=get_user_model(), dispatch_uid="keys_forget_changed_owner")
def _owner_saved(sender, instance, created, update_fields=None, **kwargs) -> None:
    if created or (update_fields is not None and set(update_fields) <= _IRRELEVANT):
        return
    keys_forget_owner(user=instance)


@receiver(member_leaving, dispatch_uid="keys_revoke_in_team_left")
def _member_leaving(sender, membership, actor=None, **kwargs) -> None:
    api_keys_revoke_in_team(team=membership.team, user=membership.user, actor=actor)


@receiver(grant_saved, dispatch_uid="keys_forget_changed_grant")
def _grant_saved(sender, grant, before=None, **kwargs) -> None:
    if before is None:
        return  # a new grant has no keys yet
    fields = ("valid_from", "valid_until", "credits_allocated")
    if any(before[name] != getattr(grant, name) for name in fields):
        api_keys_forget_grant(grant=grant)
