"""The rollup marks keys used: Last used and the request count come from the ledger, so the
gateway writes nothing more per request."""

from __future__ import annotations

import pytest

from apps.keys.models import ApiKey
from apps.usage.rollup import ledger_rollup
from apps.usage.tests.conftest import make_key
from apps.usage.tests.ledger_rows import ledger_row, warsaw

pytestmark = pytest.mark.django_db


def test_it_sets_last_used_and_counts_requests_per_key(world, key):
    other = make_key(world, owner=world.bob)
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 10, 5))
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 11, 7))
    ledger_row(other, model=world.chat_model, created=warsaw(2026, 11, 3, 9, 0))

    ledger_rollup()

    key.refresh_from_db()
    other.refresh_from_db()
    assert (key.last_used, key.request_count) == (warsaw(2026, 11, 3, 11, 7), 2)
    assert (other.last_used, other.request_count) == (warsaw(2026, 11, 3, 9, 0), 1)


def test_it_never_moves_last_used_back_and_counts_each_row_once(world, key):
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 11, 7))
    ledger_rollup()
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 10, 0))  # late row
    ledger_rollup()
    ledger_rollup()  # nothing left: a duplicated beat counts nothing twice

    key.refresh_from_db()
    assert (key.last_used, key.request_count) == (warsaw(2026, 11, 3, 11, 7), 2)


def test_a_save_of_a_stale_instance_keeps_the_marks(world, key):
    stale = ApiKey.objects.get(pk=key.pk)
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 11, 7))
    ledger_rollup()
    stale.comment = "renamed"
    stale.save()

    key.refresh_from_db()
    assert key.request_count == 1 and key.last_used is not None
