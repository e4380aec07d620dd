from __future__ import annotations

from django.apps import AppConfig


class ConsumptionConfig(AppConfig):
    """Consumption pages: what people and keys spent, per member, day, month and model, as
    tables (``apps.core.tables``) shown as HTML, as a chart and as CSV from the same rows."""

    name = "apps.consumption"
    label = "consumption"
