"""Forms check the shape of input; the rules (future expiry, unique names) are the services'."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.utils import timezone

from apps.core.forms import CreditsField
from apps.grants.models import CREDIT_DIGITS
from apps.grants.selectors import grants_for_user
from apps.keys.services import default_expiry

LOCAL_MINUTE = "%Y-%m-%dT%H:%M"


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs) -> None:
        super().__init__(format=LOCAL_MINUTE, **kwargs)


def default_expiry_local() -> dt.datetime:
    return timezone.localtime(default_expiry()).replace(second=0, microsecond=0)


def limit_field(label: str) -> forms.DecimalField:
    return CreditsField(
        label=label,
        required=False,
        min_value=0,
        **CREDIT_DIGITS,
        help_text="Credits. Leave empty for no limit.",
        widget=forms.NumberInput(attrs={"step": "any", "min": "0"}),
    )


class ApiKeyCreateForm(forms.Form):
    grant = forms.ModelChoiceField(queryset=None, to_field_name="public_id", empty_label=None)
    name = forms.CharField(max_length=100, help_text="Unique among the grant's keys.")
    comment = forms.CharField(max_length=500, required=False)
    expires_at = forms.DateTimeField(
        label="Expiration",
        widget=LocalDateTimeInput(),
        help_text=f"{settings.TIME_ZONE} time. It can not be changed after the key is created.",
    )
    monthly_limit = limit_field("Monthly credit limit")
    total_limit = limit_field("Total credit limit")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["grant"].queryset = grants_for_user(user=user)
        self.fields["expires_at"].initial = default_expiry_local


class ApiKeyLimitsForm(forms.Form):
    """Only the limits: the expiration date is not a field, so it can not change here."""

    monthly_limit = limit_field("Monthly credit limit")
    total_limit = limit_field("Total credit limit")


class ManagementKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    expires_at = forms.DateTimeField(
        label="Expiration",
        widget=LocalDateTimeInput(),
        help_text=f"{settings.TIME_ZONE} time. After this moment the key is refused.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expires_at"].initial = default_expiry_local
