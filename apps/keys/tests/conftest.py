from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone

from apps.keys.services import api_key_create, management_key_create


@pytest.fixture
def alice_key(world):
    """Alice's API key in her grant and its secret."""
    return api_key_create(grant=world.grant, owner=world.alice, name="alice-key")


@pytest.fixture
def alice_management_key(world):
    return management_key_create(owner=world.alice, name="alice-automation")


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Run transaction.on_commit callbacks as if the test's transaction had committed."""
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        yield callbacks


def past() -> dt.datetime:
    return timezone.now() - dt.timedelta(minutes=1)


def tables_containing(text: str) -> list[str]:
    """Every table and column (any type, cast to text) whose value contains ``text``."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                found += [
                    f"{table}.{c}" for c, v in zip(columns, row, strict=True) if text in str(v)
                ]
    # Session data is encoded, so a plain scan would miss a secret kept in a session.
    for session in Session.objects.all():
        if text in str(session.get_decoded()):
            found.append(f"session {session.session_key}")
    return found
