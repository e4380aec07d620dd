from __future__ import annotations

from django.apps import AppConfig


class ConsumptionConfig(AppConfig):
    """Consumption pages and their building blocks: tables that render as HTML, as a chart
    and as CSV from the same rows, so the three always show the same numbers."""

    name = "apps.consumption"
    label = "consumption"
