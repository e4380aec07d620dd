"""E-mail an API key's owner 7 days before the key expires, once per key.

A key's expiry date can not change, so "once per key" is once per (key, expiry date). Keys
that live 7 days or less from their creation get no reminder (their owner chose a short life),
nor do revoked or archived ones.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import F
from django.utils import timezone

from apps.keys.models import ApiKey
from apps.notifications.models import NotificationKind
from apps.notifications.services import Subject, notification_send

REMIND_DAYS = 7


def _message(key: ApiKey) -> tuple[str, str]:
    expires = timezone.localtime(key.expires_at)
    when = f"{expires:%Y-%m-%d %H:%M} ({expires.tzname()})"
    title = f'Your API key "{key.name}" expires on {expires:%Y-%m-%d}'
    body = (
        f"Hello {key.owner.get_username()},\n\n"
        f'your API key "{key.name}" ({key.display_prefix}…) of grant {key.grant.identifier} '
        f"expires on {when}. From then on requests with it are refused.\n\n"
        "An expiration date can not be changed: create a new key on the API keys page before "
        "then and switch your programs to it.\n\n— Anvil\n"
    )
    return title, body


def key_expiry_remind(*, now: dt.datetime | None = None) -> int:
    """Remind the owners of keys expiring within 7 days; returns how many mails were sent."""
    now = now or timezone.now()
    window = dt.timedelta(days=REMIND_DAYS)
    keys = ApiKey.objects.filter(
        revoked_at__isnull=True,
        archived_at__isnull=True,
        expires_at__gt=now,
        expires_at__lte=now + window,
        created__lt=F("expires_at") - window,
    ).select_related("owner", "grant")
    return sum(_key_remind(key) for key in keys.order_by("expires_at"))


def _key_remind(key: ApiKey) -> bool:
    subject = Subject(
        kind=NotificationKind.KEY_EXPIRING,
        target=f"api_key:{key.public_id}",
        period=timezone.localdate(key.expires_at).isoformat(),
    )
    sent = notification_send(
        subject=subject,
        thresholds=[REMIND_DAYS],
        recipients=[key.owner.email],
        message=lambda _days: _message(key),
    )
    return sent is not None
