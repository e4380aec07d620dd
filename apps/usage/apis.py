"""The billing status over the REST API: ``GET /api/v1/usage`` with an API key."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.serializers import ErrorOutput, credit_field
from apps.keys.authentication import ApiKeyAuthentication
from apps.keys.permissions import HasApiKey
from apps.usage.exceptions import Limit
from apps.usage.selectors import BudgetStatus, budget_status

CREDITS = "Credits, as a decimal string (exact; never a float)."
LIMIT = "Credits as a decimal string; null means no limit."
LEFT = "What is left under the limit (limit - used - held, never below 0); null: no limit."
DESCRIPTION = """Where the calling API key stands against the four budgets a request must fit in
(the grant's pool, the key's total and monthly limits, the member's monthly limit in the grant)
in the current month of the service's time zone.

Every amount is a decimal string. `used_*` count settled requests; `grant.held` is reserved by
requests in flight, and every budget's room excludes what is held: `grant.left`,
`key.total_left`, `key.monthly_left` and `member.monthly_left` (null where there is no limit).
`remaining` is the least room left under any of the four budgets — what the next request can
spend — and `limited_by` names that budget (on a tie the first of grant, key_total, key_monthly,
member_monthly). The grant's pool is always finite, so there always is a binding budget and
`limited_by` is never null today; it is nullable for clients to be ready for unlimited
grants."""


class KeyStatusOutput(serializers.Serializer):
    used_month = credit_field(help_text=CREDITS)
    used_total = credit_field(help_text=CREDITS)
    monthly_limit = credit_field(allow_null=True, help_text=LIMIT)
    total_limit = credit_field(allow_null=True, help_text=LIMIT)
    monthly_left = credit_field(allow_null=True, help_text=LEFT)
    total_left = credit_field(allow_null=True, help_text=LEFT)


class MemberStatusOutput(serializers.Serializer):
    used_month = credit_field(help_text=CREDITS)
    monthly_limit = credit_field(allow_null=True, help_text=LIMIT)
    monthly_left = credit_field(allow_null=True, help_text=LEFT)


class GrantStatusOutput(serializers.Serializer):
    allocated = credit_field(help_text=CREDITS)
    used = credit_field(help_text=CREDITS)
    held = credit_field(help_text="Credits held by requests in flight, as a decimal string.")
    left = credit_field(help_text="allocated - used - held, never below 0; a decimal string.")


def status_data(status: BudgetStatus) -> dict:
    grant, key_total = status.grant, status.key_total
    key_monthly, member = status.key_monthly, status.member_monthly
    return {
        "period": status.period,
        "key": {
            "used_month": key_monthly.used,
            "used_total": key_total.used,
            "monthly_limit": key_monthly.limit,
            "total_limit": key_total.limit,
            "monthly_left": key_monthly.left,
            "total_left": key_total.left,
        },
        "member": {
            "used_month": member.used,
            "monthly_limit": member.limit,
            "monthly_left": member.left,
        },
        "grant": {
            "allocated": grant.limit,
            "used": grant.used,
            "held": grant.held,
            "left": grant.left,
        },
        "remaining": status.remaining,
        "limited_by": status.limited_by,
    }


class UsageStatusApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]

    @extend_schema_serializer(component_name="UsageStatus")
    class OutputSerializer(serializers.Serializer):
        period = serializers.CharField(help_text='The month reported, "YYYY-MM".')
        key = KeyStatusOutput()
        member = MemberStatusOutput(help_text="The key's owner in the key's grant.")
        grant = GrantStatusOutput()
        remaining = credit_field(help_text="The least room left under the four budgets.")
        limited_by = serializers.ChoiceField(
            choices=Limit.values, allow_null=True, help_text="The budget `remaining` is of."
        )

    @extend_schema(
        operation_id="usage_retrieve",
        summary="Billing status of this API key",
        description=DESCRIPTION,
        responses={
            200: OutputSerializer,
            401: OpenApiResponse(
                ErrorOutput,
                description=(
                    "No key, or an unknown, expired, revoked or archived one, or one whose "
                    "owner is deactivated."
                ),
            ),
            403: OpenApiResponse(
                ErrorOutput,
                description="A management key, or a key whose grant is outside its validity "
                "dates (code `grant_not_valid`).",
            ),
        },
        tags=["Usage"],
    )
    def get(self, request):
        key = request.auth
        status = budget_status(api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id)
        return Response(self.OutputSerializer(status_data(status)).data)
