"""Prompts and completions pass through Anvil and are kept nowhere."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.apps import apps
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def every_row_as_text() -> str:
    rows = []
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            cursor.execute(f'SELECT * FROM "{model._meta.db_table}"')  # noqa: S608
            rows.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(rows)


def test_it_stores_and_logs_no_prompt_or_completion_text(gateway, caplog):
    marker = f"MARKER-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    client = gateway.client()
    answer = client.chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": f"ECHO: {marker}"}]
    )
    assert marker in answer.choices[0].message.content  # it really travelled both ways
    streamed = client.chat.completions.create(
        model="chat-small",
        stream=True,
        messages=[{"role": "user", "content": f"ECHO: {marker}"}],
    )
    assert marker in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    client.embeddings.create(model="embed-small", input=marker)

    assert marker not in every_row_as_text()
    assert marker not in caplog.text
