"""Joining or leaving while a grant admin or the person acts at the same moment: the locks
order the two, so no newcomer misses a collective limit and no key outlives its owner's
membership."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, transaction

from apps.keys import services as key_services
from apps.keys.models import ApiKey
from apps.limits.services import member_limits_change_all
from apps.teams.models import Membership
from apps.teams.services import membership_create, membership_delete
from tests.waiting import eventually
from tests.world import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(function):
    def run():
        try:
            return function()
        finally:
            connection.close()

    return run


def a_session_waits_for_a_lock() -> bool:
    """Whether another session of the test database waits for a lock (a row's, here)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def until_blocked(second: Future, what: str) -> None:
    """Wait until the second thread has run into the first one's lock (or, were nothing
    locked, has finished: the test's own assertions then judge the outcome)."""
    eventually(lambda: second.done() or a_session_waits_for_a_lock(), what=what)


def test_a_newcomer_joining_during_a_collective_change_gets_the_new_limit(world):
    dave = make_user("dave")
    locked, release = threading.Event(), threading.Event()

    def change_all():
        with transaction.atomic():
            member_limits_change_all(
                grant=world.grant, monthly_limit=Decimal("4"), changed_by=world.alice
            )
            locked.set()
            release.wait(timeout=10)

    def join():
        locked.wait(timeout=10)
        membership_create(team=world.team, user=dave)

    with ThreadPoolExecutor(2) as pool:
        changing, joining = pool.submit(in_thread(change_all)), pool.submit(in_thread(join))
        until_blocked(joining, what="the join waiting for the collective change's lock")
        release.set()
        changing.result(timeout=10), joining.result(timeout=10)
    assert world.grant.member_limits.get(user=dave).monthly_limit == Decimal("4")


def test_a_key_created_while_its_owner_is_removed_is_revoked(world):
    locked, release = threading.Event(), threading.Event()
    insert = key_services._insert_with_secret

    def slow_insert(key, **kwargs):
        locked.set()  # the membership row is locked by now
        release.wait(timeout=10)
        return insert(key, **kwargs)

    def create():
        with mock.patch.object(key_services, "_insert_with_secret", slow_insert):
            return key_services.api_key_create(grant=world.grant, owner=world.bob, name="late")

    def remove():
        locked.wait(timeout=10)
        membership_delete(membership=Membership.objects.get(user=world.bob, team=world.team))

    with ThreadPoolExecutor(2) as pool:
        creating, removing = pool.submit(in_thread(create)), pool.submit(in_thread(remove))
        until_blocked(removing, what="the removal waiting for the key creation's lock")
        release.set()
        creating.result(timeout=10), removing.result(timeout=10)
    assert ApiKey.objects.get(name="late").revoked_at is not None
