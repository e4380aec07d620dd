"""Who may see and change a key: only its owner. Anyone else's key, even a teammate's, is a
404, the same as a key that does not exist."""

from __future__ import annotations

from django.http import Http404

from apps.keys.models import ApiKey, ManagementKey


def api_key_for_owner(*, user, public_id) -> ApiKey:
    """One of the user's own API keys; anyone else's (even a teammate's) is a 404."""
    key = ApiKey.objects.select_related("grant").filter(public_id=public_id).first()
    if key is None or not user.is_authenticated or key.owner_id != user.pk:
        raise Http404("No such API key.")
    return key


def management_key_for_owner(*, user, public_id) -> ManagementKey:
    key = ManagementKey.objects.filter(public_id=public_id).first()
    if key is None or not user.is_authenticated or key.owner_id != user.pk:
        raise Http404("No such management key.")
    return key
