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


def credit_field(**kwargs) -> serializers.DecimalField:
    """Credits as exact decimals: a JSON number or a string in, a string out."""
    return serializers.DecimalField(
        **CREDIT_DIGITS, min_value=Decimal(0), normalize_output=True, **kwargs
    )


class ErrorDetail(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class ErrorOutput(serializers.Serializer):
    """Every error of the REST API (``apps.api.errors``), for the OpenAPI document."""

    error = ErrorDetail()
