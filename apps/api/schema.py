"""How the REST API's own serializer fields appear in the OpenAPI document, so the schema
allows what the API accepts and no more (schemathesis checks the two agree,
tests/test_api_schema_fuzz.py)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension

from apps.grants.models import CREDIT_DIGITS

WHOLE_DIGITS = CREDIT_DIGITS["max_digits"] - CREDIT_DIGITS["decimal_places"]
# Credits are never negative: digits, at most CREDIT_DIGITS' places after the point.
CREDIT_PATTERN = rf"^\d{{1,{WHOLE_DIGITS}}}(\.\d{{1,{CREDIT_DIGITS['decimal_places']}}})?$"
# Not only whitespace (DRF trims a text and refuses a blank one; Python's whitespace counts
# \x1c-\x1f and \x85, which a JSON Schema's \s does not), and no NUL, which DRF refuses.
NOT_BLANK_PATTERN = r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$"


class CreditFieldSchema(OpenApiSerializerFieldExtension):
    """Credits: a decimal string of no sign (answers and requests), or in requests a whole
    JSON number too."""

    target_class = "apps.api.serializers.CreditField"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        schema["pattern"] = CREDIT_PATTERN
        if direction == "response":
            return schema
        whole = {"type": "integer", "minimum": 0, "maximum": 10**WHOLE_DIGITS - 1}
        return {"oneOf": [schema, whole], "description": schema.pop("description", "")}


class NotBlankCharFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "apps.api.serializers.NotBlankCharField"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "minLength": 1, "pattern": NOT_BLANK_PATTERN}


class StrictInputSerializerSchema(OpenApiSerializerExtension):
    """A strict input (apps.api.serializers.StrictInputSerializer) refuses fields it does not
    know: ``additionalProperties: false``."""

    target_class = "apps.api.serializers.StrictInputSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}
