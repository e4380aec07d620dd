"""Serializer building blocks shared by the apps' APIs."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from rest_framework import serializers

from apps.grants.models import CREDIT_DIGITS


class StrictInputSerializer(serializers.Serializer):
    """Refuses fields it does not know (a mistyped limit must not pass silently as "none").
    ``refused_fields`` maps a field name to the message explaining why it can't be sent."""

    refused_fields: dict[str, str] = {}

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            for name in data:
                if name not in self.fields:
                    message = self.refused_fields.get(name, "Unknown field.")
                    raise serializers.ValidationError({name: [message]}, code="unknown_field")
        return super().to_internal_value(data)


class DateTimeField(serializers.DateTimeField):
    """DRF's DateTimeField, which fails with OverflowError (a 500) on a time without an offset
    that the server's time zone moves out of the calendar ("0001-01-01T00:00:00"): such a time
    is refused like any other invalid one."""

    def enforce_timezone(self, value):
        try:
            return super().enforce_timezone(value)
        except OverflowError:
            self.fail("invalid", format="YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]")


class CreditField(serializers.DecimalField):
    """DRF's DecimalField, stricter with strings: a blank one is refused (DRF reads "" as null,
    and a null limit means no limit: a form field left empty by mistake must not make a key
    unlimited), and so are digits grouped with underscores ("1_000", which Decimal accepts)."""

    def validate_empty_values(self, data):
        if isinstance(data, str) and not data.strip():
            self.fail("invalid")
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if isinstance(data, str) and "_" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


class NotBlankCharField(serializers.CharField):
    """A required text: DRF's CharField, which trims it and refuses a blank one (the OpenAPI
    document says so too: apps.api.schema)."""


def credit_field(**kwargs) -> serializers.DecimalField:
    """Credits as exact decimals: a JSON number or a string in, a string out; null (where
    allowed) is the only way to say "no limit"."""
    return CreditField(**CREDIT_DIGITS, min_value=Decimal(0), normalize_output=True, **kwargs)


class ErrorDetail(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class ErrorOutput(serializers.Serializer):
    """Every error of the REST API (``apps.api.errors``), for the OpenAPI document."""

    error = ErrorDetail()
