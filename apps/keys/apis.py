"""The REST API of keys: the management-key endpoint that creates API keys, and the signed-in
user's own API keys (list, create, revoke, archive, change limits)."""

from __future__ import annotations

from contextlib import contextmanager

from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.serializers import (
    DateTimeField,
    ErrorOutput,
    NotBlankCharField,
    StrictInputSerializer,
    credit_field,
)
from apps.core.exceptions import ApplicationError, NotFound
from apps.keys.access import api_key_for_owner
from apps.keys.authentication import ManagementKeyAuthentication, SessionOnlyAuthentication
from apps.keys.permissions import HasManagementKey
from apps.keys.selectors import api_keys_for_owner
from apps.keys.services import (
    api_key_archive,
    api_key_change_limits,
    api_key_create,
    api_key_revoke,
    management_key_touch,
)
from apps.teams.access import grant_for_member_by_reference

# Service (model) field names → the names clients send.
API_PARAMS = {
    "monthly_limit": "monthly_credits_quota",
    "total_limit": "total_credits_quota",
    "grant": "grant_id",
}
JSON = "application/json"  # what the document offers (DRF's form parsers work too)
QUOTA_HELP = "Credits; null or absent means no limit."
GRANT_HELP = "The grant's ID (shown on its page) or its identifier, e.g. plgexample-gpu."
EXPIRY_HELP = (
    "ISO 8601, in the future; without a time zone it is read in the service's time zone. "
    "Default: 30 days from now. It can not be changed later."
)


def errors(**descriptions: str) -> dict:
    """Error answers for the OpenAPI document, in the API's error shape: ``e400="..."``."""
    return {
        int(status[1:]): OpenApiResponse(ErrorOutput, description=text)
        for status, text in descriptions.items()
    }


INVALID = (
    "A field is missing, of the wrong type, out of range or not allowed here; `param` names "
    "it (`required`, `invalid`, `blank`, `max_length`, `min_value`, `unknown_field`, "
    "`invalid_request`, …)."
)
# The portal's own API: a signed-in session, never a key.
SESSION_ERRORS = errors(
    e403="Not signed in (`not_authenticated`), the CSRF check failed (`permission_denied`), "
    "or a key was sent (`wrong_key_kind`): these operations take the portal's session only."
)
NO_SUCH_KEY = errors(e404="No such API key among yours (`not_found`).")
CREATE_ERRORS = errors(
    e400=INVALID,
    e404="No such grant among your teams' grants (`not_found`, param `grant_id`).",
    e409="You already have a key of this name in the grant (`conflict`).",
)


@contextmanager
def api_params():
    """Report service errors under the field names of the API."""
    try:
        yield
    except ApplicationError as exc:
        exc.param = API_PARAMS.get(exc.param, exc.param)
        raise


def grant_of(*, user, reference: str):
    try:
        return grant_for_member_by_reference(user=user, reference=reference)
    except Http404:
        raise NotFound("No such grant among your teams' grants.", param="grant_id") from None


class KeyCreateInput(StrictInputSerializer):
    name = NotBlankCharField(max_length=100)
    grant_id = NotBlankCharField(max_length=100, help_text=GRANT_HELP)
    comment = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    expires_at = DateTimeField(required=False, allow_null=True, default=None, help_text=EXPIRY_HELP)
    monthly_credits_quota = credit_field(required=False, allow_null=True, help_text=QUOTA_HELP)
    total_credits_quota = credit_field(required=False, allow_null=True, help_text=QUOTA_HELP)


def create_key(*, owner, data) -> tuple:
    grant = grant_of(user=owner, reference=data["grant_id"])
    with api_params():
        return api_key_create(
            grant=grant,
            owner=owner,
            name=data["name"],
            comment=data["comment"],
            expires_at=data["expires_at"],
            monthly_limit=data.get("monthly_credits_quota"),
            total_limit=data.get("total_credits_quota"),
        )


class ManagementApiKeyCreateApi(APIView):
    authentication_classes = [ManagementKeyAuthentication]
    permission_classes = [HasManagementKey]

    InputSerializer = KeyCreateInput

    @extend_schema_serializer(component_name="ManagementApiKeyCreateOutput")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField(source="public_id")
        name = serializers.CharField()
        key = serializers.CharField(source="secret", help_text="The secret, shown only now.")
        grant_id = serializers.UUIDField(source="grant.public_id")
        expires_at = serializers.DateTimeField()
        monthly_credits_quota = credit_field(source="monthly_limit", allow_null=True)
        total_credits_quota = credit_field(source="total_limit", allow_null=True)

    @extend_schema(
        operation_id="management_api_keys_create",
        summary="Create an API key with a management key",
        description="For grants of the management key owner's teams. The key's secret is in "
        "the answer, once: it is stored only as a hash.",
        request={JSON: InputSerializer},
        responses={
            201: OutputSerializer,
            **CREATE_ERRORS,
            **errors(
                e401="No key, an unknown, expired or revoked one (`invalid_api_key`), or the "
                "key of a deactivated account (`account_disabled`).",
                e403="An API key instead of a management key (`wrong_key_kind`).",
            ),
        },
        tags=["Management"],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, secret = create_key(owner=request.user, data=serializer.validated_data)
        key.secret = secret
        management_key_touch(key=request.auth)
        return Response(self.OutputSerializer(key).data, status=status.HTTP_201_CREATED)


class ApiKeyOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    comment = serializers.CharField()
    grant_id = serializers.UUIDField(source="grant.public_id")
    grant = serializers.CharField(source="grant.identifier")
    prefix = serializers.CharField(source="display_prefix", help_text="Start of the secret.")
    status = serializers.ChoiceField(choices=["active", "expired", "revoked"])
    created = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    last_used = serializers.DateTimeField(
        allow_null=True, help_text="The newest request's time, at most about a minute behind."
    )
    request_count = serializers.IntegerField(help_text="Requests so far, as of last_used.")
    monthly_credits_quota = credit_field(source="monthly_limit", allow_null=True)
    total_credits_quota = credit_field(source="total_limit", allow_null=True)
    credits_used = credit_field()
    revoked_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)


class OwnKeysApi(APIView):
    """The signed-in user's own keys: session authentication only."""

    authentication_classes = [SessionOnlyAuthentication]
    permission_classes = [IsAuthenticated]


class ApiKeyListApi(OwnKeysApi):
    OutputSerializer = ApiKeyOutput

    @extend_schema(
        operation_id="api_keys_list",
        summary="Your API keys",
        parameters=[OpenApiParameter("archived", bool, description="true: the Archived keys tab")],
        responses={200: OutputSerializer(many=True), **SESSION_ERRORS},
        tags=["API keys"],
    )
    def get(self, request):
        archived = request.query_params.get("archived", "").lower() in {"1", "true", "yes"}
        keys = api_keys_for_owner(owner=request.user, archived=archived)
        return Response(self.OutputSerializer(keys, many=True).data)


class ApiKeyDetailApi(OwnKeysApi):
    OutputSerializer = ApiKeyOutput

    @extend_schema(
        operation_id="api_keys_retrieve",
        summary="One of your API keys",
        responses={200: OutputSerializer, **SESSION_ERRORS, **NO_SUCH_KEY},
        tags=["API keys"],
    )
    def get(self, request, public_id):
        key = api_key_for_owner(user=request.user, public_id=public_id)
        return Response(self.OutputSerializer(key).data)


class ApiKeyCreateApi(OwnKeysApi):
    InputSerializer = KeyCreateInput

    @extend_schema_serializer(component_name="ApiKeyCreateOutput")
    class OutputSerializer(ApiKeyOutput):
        key = serializers.CharField(source="secret", help_text="The secret, shown only now.")

    @extend_schema(
        operation_id="api_keys_create",
        summary="Create an API key",
        description="The secret is in the answer, once: it is stored only as a hash.",
        request={JSON: InputSerializer},
        responses={201: OutputSerializer, **CREATE_ERRORS, **SESSION_ERRORS},
        tags=["API keys"],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, secret = create_key(owner=request.user, data=serializer.validated_data)
        key.secret = secret
        return Response(self.OutputSerializer(key).data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(OwnKeysApi):
    OutputSerializer = ApiKeyOutput

    @extend_schema(
        operation_id="api_keys_revoke",
        summary="Revoke an API key",
        description="Requests with the key are refused from the next one on.",
        request=None,
        responses={200: OutputSerializer, **SESSION_ERRORS, **NO_SUCH_KEY},
        tags=["API keys"],
    )
    def post(self, request, public_id):
        key = api_key_for_owner(user=request.user, public_id=public_id)
        return Response(self.OutputSerializer(api_key_revoke(key=key, actor=request.user)).data)


class ApiKeyArchiveApi(OwnKeysApi):
    OutputSerializer = ApiKeyOutput

    @extend_schema(
        operation_id="api_keys_archive",
        summary="Archive an API key",
        description="Revokes it at once, moves it to the archived keys and frees its name.",
        request=None,
        responses={200: OutputSerializer, **SESSION_ERRORS, **NO_SUCH_KEY},
        tags=["API keys"],
    )
    def post(self, request, public_id):
        key = api_key_for_owner(user=request.user, public_id=public_id)
        return Response(self.OutputSerializer(api_key_archive(key=key, actor=request.user)).data)


class ApiKeyChangeLimitsApi(OwnKeysApi):
    @extend_schema_serializer(component_name="ApiKeyChangeLimitsInput")
    class InputSerializer(StrictInputSerializer):
        refused_fields = {"expires_at": "The expiration date can not change after creation."}

        monthly_credits_quota = credit_field(required=False, allow_null=True, help_text=QUOTA_HELP)
        total_credits_quota = credit_field(required=False, allow_null=True, help_text=QUOTA_HELP)

    OutputSerializer = ApiKeyOutput

    @extend_schema(
        operation_id="api_keys_change_limits",
        summary="Change an API key's credit limits",
        description="A field left out keeps its value; null removes the limit. The expiration "
        "date can not change.",
        request={JSON: InputSerializer},
        responses={
            200: OutputSerializer,
            **errors(e400=f"{INVALID} Or the key is revoked or archived (`invalid_request`)."),
            **SESSION_ERRORS,
            **NO_SUCH_KEY,
        },
        tags=["API keys"],
    )
    def post(self, request, public_id):
        key = api_key_for_owner(user=request.user, public_id=public_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with api_params():
            key = api_key_change_limits(
                key=key,
                actor=request.user,
                monthly_limit=data.get("monthly_credits_quota", key.monthly_limit),
                total_limit=data.get("total_credits_quota", key.total_limit),
            )
        return Response(self.OutputSerializer(key).data)
