"""Form fields shared by the apps' forms."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from apps.core.formats import format_credits


class CreditsField(forms.DecimalField):
    """A credit amount; a stored value is shown as people write it (5, not 5.000000)."""

    def prepare_value(self, value):
        if isinstance(value, Decimal):
            return format_credits(value)
        return super().prepare_value(value)
