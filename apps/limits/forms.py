from __future__ import annotations

from django import forms

from apps.core.forms import CreditsField
from apps.grants.models import CREDIT_DIGITS


class MemberLimitForm(forms.Form):
    monthly_limit = CreditsField(
        label="Monthly credit limit",
        required=False,
        min_value=0,
        **CREDIT_DIGITS,
        help_text="Credits per calendar month, for all of the member's keys in this grant "
        "together. Leave empty for no limit. It replaces the previous limit.",
        widget=forms.NumberInput(attrs={"step": "any", "min": "0"}),
    )
