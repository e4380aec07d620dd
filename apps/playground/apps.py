from __future__ import annotations

from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    """Try a model: a page that sends chat requests with one of the person's keys through the
    gateway's admission (``apps.gateway.views.serve``), streamed back; nothing is stored."""

    name = "apps.playground"
    label = "playground"
