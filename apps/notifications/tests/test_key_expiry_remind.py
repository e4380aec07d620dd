"""An API key's owner hears about its expiry 7 days before, once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.notifications.expiry import key_expiry_remind
from apps.notifications.tasks import remind_expiring_keys
from apps.notifications.tests.conftest import make_key

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def test_it_reminds_the_owner_once_seven_days_before(world, mailoutbox):
    key = make_key(world, expires_in=6 * DAY, lived=24 * DAY)
    assert remind_expiring_keys() == 1
    assert remind_expiring_keys() == 0
    [mail] = mailoutbox
    assert mail.to == ["bob@example.org"]
    assert key.name in mail.subject
    expires = timezone.localtime(key.expires_at)
    assert f"{expires:%Y-%m-%d}" in mail.subject
    assert key.display_prefix in mail.body and "alice-grant" in mail.body


def test_it_waits_until_the_last_seven_days(world, mailoutbox):
    key = make_key(world, expires_in=8 * DAY, lived=22 * DAY)
    assert key_expiry_remind() == 0
    assert key_expiry_remind(now=timezone.now() + 2 * DAY) == 1
    assert key_expiry_remind(now=timezone.now() + 3 * DAY) == 0
    assert [m.to for m in mailoutbox] == [[key.owner.email]]


def test_it_leaves_revoked_expired_and_short_lived_keys_alone(world, mailoutbox):
    make_key(world, expires_in=3 * DAY, lived=20 * DAY, revoked_at=timezone.now())
    make_key(world, expires_in=3 * DAY, lived=20 * DAY, archived_at=timezone.now())
    make_key(world, expires_in=-DAY, lived=20 * DAY)  # expired already: its status says so
    make_key(world, expires_in=3 * DAY, lived=DAY)  # made to live four days
    assert key_expiry_remind() == 0
    assert mailoutbox == []
