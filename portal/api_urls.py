"""The REST API under /api/v1/, gathered from the apps' ``apis.py`` (the gateway's
OpenAI-compatible routes live in apps.gateway)."""

from __future__ import annotations

from django.urls import path

from apps.jobs import apis as jobs
from apps.keys import apis as keys
from apps.usage import apis as usage

app_name = "api"
urlpatterns = [
    path(
        "management/api_keys/create",
        keys.ManagementApiKeyCreateApi.as_view(),
        name="management-api-keys-create",
    ),
    path("usage", usage.UsageStatusApi.as_view(), name="usage"),
    path("jobs", jobs.JobsApi.as_view(), name="jobs"),
    path("jobs/<str:ids>", jobs.JobDetailApi.as_view(), name="jobs-detail"),
    path("api_keys", keys.ApiKeyListApi.as_view(), name="api-keys-list"),
    path("api_keys/create", keys.ApiKeyCreateApi.as_view(), name="api-keys-create"),
    path("api_keys/<uuid:public_id>", keys.ApiKeyDetailApi.as_view(), name="api-keys-detail"),
    path(
        "api_keys/<uuid:public_id>/revoke", keys.ApiKeyRevokeApi.as_view(), name="api-keys-revoke"
    ),
    path(
        "api_keys/<uuid:public_id>/archive",
        keys.ApiKeyArchiveApi.as_view(),
        name="api-keys-archive",
    ),
    path(
        "api_keys/<uuid:public_id>/limits",
        keys.ApiKeyChangeLimitsApi.as_view(),
        name="api-keys-change-limits",
    ),
]
