from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo team, its users, grant and keys (``manage.py seed_demo``, run by ``make run``).
    The demo catalog it serves is the YAML in the top-level ``demo/`` folder."""

    name = "apps.demo"
    label = "demo"
