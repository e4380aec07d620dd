"""Members at 80 % and 100 % of their monthly limit, grants at 80 % and 100 % of their pool:
one mail per threshold and period."""

from __future__ import annotations

import smtplib
import threading
from decimal import Decimal

import pytest
from django.db import connection

from apps.grants.models import Grant
from apps.limits.services import member_limit_set
from apps.notifications.models import NotificationSent
from apps.notifications.tasks import notify_grant_pools, notify_member_limits
from apps.notifications.thresholds import grant_pools_notify, member_limits_notify
from tests.spending import local, spend_at

pytestmark = pytest.mark.django_db

OCTOBER = local(2026, 10, 15, 12)
NOVEMBER = local(2026, 11, 15, 12)
# One request of chat-small (1000 + 1000 tokens) costs 0.002 credits; Bob's limit is five.


@pytest.fixture
def bob_limited(world):
    member_limit_set(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("0.01"), changed_by=world.alice
    )


def spend(world, key, requests, moment=OCTOBER):
    for _ in range(requests):
        spend_at(moment, key=key, model=world.chat_model)


def subjects(mailoutbox) -> list[tuple[list[str], str]]:
    return [(mail.to, mail.subject) for mail in mailoutbox]


def test_it_tells_a_member_at_80_and_at_100_percent_once_each(
    world, bob_key, bob_limited, mailoutbox
):
    spend(world, bob_key, 3)  # 60 %
    assert member_limits_notify(now=OCTOBER) == 0
    spend(world, bob_key, 1)  # 80 %
    assert member_limits_notify(now=OCTOBER) == 1
    assert member_limits_notify(now=OCTOBER) == 0
    spend(world, bob_key, 1)  # 100 %
    assert member_limits_notify(now=OCTOBER) == 1
    assert member_limits_notify(now=OCTOBER) == 0
    assert subjects(mailoutbox) == [
        (["bob@example.org"], "You have used 80 % of your monthly limit in alice-grant"),
        (["bob@example.org"], "You have used 100 % of your monthly limit in alice-grant"),
    ]
    assert "0.008 of your monthly limit of 0.01 credits" in mailoutbox[0].body
    assert "refused" in mailoutbox[1].body


def test_it_tells_a_member_again_in_a_new_month(world, bob_key, bob_limited, mailoutbox):
    spend(world, bob_key, 4)
    member_limits_notify(now=OCTOBER)
    spend(world, bob_key, 4, moment=NOVEMBER)
    assert member_limits_notify(now=NOVEMBER) == 1
    assert NotificationSent.objects.filter(period="2026-11", threshold=80).count() == 1
    assert len(mailoutbox) == 2


def test_it_sends_only_the_highest_threshold_reached_at_once(
    world, bob_key, bob_limited, mailoutbox
):
    spend(world, bob_key, 5)
    assert member_limits_notify(now=OCTOBER) == 1
    assert member_limits_notify(now=OCTOBER) == 0
    assert [m.subject[:19] for m in mailoutbox] == ["You have used 100 %"]
    assert set(NotificationSent.objects.values_list("threshold", flat=True)) == {80, 100}


def test_it_ignores_members_without_a_limit(world, bob_key, mailoutbox):
    spend(world, bob_key, 5)
    assert member_limits_notify(now=OCTOBER) == 0


def test_it_tries_again_when_sending_fails(world, bob_key, bob_limited, mailoutbox, monkeypatch):
    spend(world, bob_key, 4)

    def refuse(*args, **kwargs):
        raise smtplib.SMTPException("server said no")

    monkeypatch.setattr("apps.notifications.services.send_mail", refuse)
    with pytest.raises(smtplib.SMTPException):
        member_limits_notify(now=OCTOBER)
    assert not NotificationSent.objects.exists()
    monkeypatch.undo()
    assert member_limits_notify(now=OCTOBER) == 1


def test_it_tells_the_grant_managers_at_80_and_100_percent_of_the_pool(world, bob_key, mailoutbox):
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=Decimal("0.01"))
    spend(world, bob_key, 4)
    assert notify_grant_pools() == 1
    assert notify_grant_pools() == 0
    spend(world, bob_key, 1)
    assert grant_pools_notify() == 1
    assert grant_pools_notify() == 0
    assert subjects(mailoutbox) == [
        (["alice@example.org"], "Grant alice-grant has used 80 % of its credits"),
        (["alice@example.org"], "Grant alice-grant has used 100 % of its credits"),
    ]


def test_it_tells_the_managers_again_after_a_top_up(world, bob_key, mailoutbox):
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=Decimal("0.01"))
    spend(world, bob_key, 4)
    grant_pools_notify()
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=Decimal("0.02"))
    assert grant_pools_notify() == 0  # 40 % of the new pool
    spend(world, bob_key, 4)
    assert grant_pools_notify() == 1
    assert len(mailoutbox) == 2


def test_it_runs_the_member_task_twice_as_once(world, bob_key, bob_limited, mailoutbox):
    spend(world, bob_key, 4, moment=local(2026, 11, 1, 0, 30))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.utils.timezone.now", lambda: NOVEMBER)
        assert notify_member_limits() == 1
        assert notify_member_limits() == 0
    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
def test_it_sends_once_when_two_workers_race(world, bob_key, bob_limited, mailoutbox):
    spend(world, bob_key, 4)
    barrier, sent = threading.Barrier(2), []

    def work():
        barrier.wait()
        try:
            sent.append(member_limits_notify(now=OCTOBER))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    [t.start() for t in threads], [t.join() for t in threads]
    assert sorted(sent) == [0, 1]
    assert len(mailoutbox) == 1
