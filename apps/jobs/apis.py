"""The jobs API in the reference's shape (../shared/reference/gridrepublic-jobs-api.txt):
``POST /api/v1/jobs`` submits, ``GET /api/v1/jobs/{id,id,...}`` reads, ``DELETE
/api/v1/jobs/{id}`` cancels (``?purge=true`` deletes the job and its output),
``GET /api/v1/jobs?status=&limit=`` lists the key owner's recent jobs."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.serializers import ErrorOutput
from apps.gateway.catalog import current_catalog
from apps.jobs import selectors, services
from apps.jobs.models import Job, Status
from apps.jobs.submissions import InvalidSubmission, submission_parse
from apps.keys.authentication import ApiKeyAuthentication
from apps.keys.permissions import HasApiKey

AUTH_ERRORS = {
    401: OpenApiResponse(ErrorOutput, description="No key, or an unusable one."),
    403: OpenApiResponse(ErrorOutput, description="A management key, or a grant out of dates."),
}


LOOKUP_STATUSES = [*Status.values, "not_found"]


class FailureOutput(serializers.Serializer):
    success = serializers.BooleanField(default=False)
    error = serializers.CharField(help_text="What is wrong, naming the field.")


class StateOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Status.choices)
    log = serializers.CharField(help_text="The output so far; it grows while the job runs.")
    outputFiles = serializers.ListField(child=serializers.CharField())
    commandLine = serializers.CharField()
    app = serializers.CharField()


class UsageOutput(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    credits = serializers.CharField(allow_null=True, help_text="Decimal string; null until ended.")


class JobOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=LOOKUP_STATUSES)
    log = serializers.CharField(required=False)
    states = serializers.DictField(child=StateOutput(), required=False)
    created = serializers.DateTimeField(required=False)
    runtime = serializers.IntegerField(required=False, help_text="Seconds run so far.")
    tag = serializers.CharField(required=False, help_text="The model.")
    usage = UsageOutput(required=False)


def job_data(job: Job | None) -> dict:
    if job is None:
        return {"status": "not_found"}
    state = {
        "status": job.status, "log": job.log, "outputFiles": [],
        "commandLine": job.command_line, "app": job.app,
    }  # fmt: skip
    ended = not job.active
    return {
        "id": job.public_id.hex, "status": job.status, "vmStatus": job.status, "log": job.log,
        "states": {"default": state}, "created": job.created.isoformat(), "copy": 0,
        "tag": job.model_name, "runtime": job.runtime,
        "usage": {
            "prompt_tokens": job.prompt_tokens if ended else None,
            "completion_tokens": job.completion_tokens if ended else None,
            "credits": job.credits_text if ended else None,
        },
    }  # fmt: skip


class JobsApi(APIView):
    """``/api/v1/jobs``: submit (POST), list (GET)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]

    class InputSerializer(serializers.Serializer):
        app = serializers.CharField(required=False, help_text='"gridrepublic:text-inference"')
        commandLine = serializers.CharField(
            required=False,
            help_text='JSON string: {"inputs": ["..."], "max_tokens", "temperature", "top_p", '
            '"stop", "system"}',
        )
        tag = serializers.CharField(required=False, help_text="The model.")
        model = serializers.CharField(required=False, help_text="Native body: the model.")
        inputs = serializers.ListField(child=serializers.CharField(), required=False)
        parameters = serializers.DictField(required=False)

    class SubmitOutput(serializers.Serializer):
        success = serializers.BooleanField()
        ids = serializers.ListField(child=serializers.CharField())

    class ListOutput(serializers.Serializer):
        success = serializers.BooleanField()
        jobs = JobOutput(many=True)

    @extend_schema(
        operation_id="jobs_submit", summary="Submit jobs, one per input", tags=["Jobs"],
        request=InputSerializer,
        responses={200: SubmitOutput, 400: FailureOutput, **AUTH_ERRORS},
    )  # fmt: skip
    def post(self, request):
        key = request.auth
        try:
            # Inference requests: the gateway's limit (portal/asgi.py refuses more before it is
            # read), not DATA_UPLOAD_MAX_MEMORY_SIZE, the forms' limit request.body keeps to.
            limit = settings.GATEWAY_MAX_BODY_BYTES
            raw = request.read(limit + 1)
            if len(raw) > limit:
                raise InvalidSubmission(f"The request body is over {limit} bytes.")
            submission = submission_parse(raw)
            catalog = async_to_sync(current_catalog)()
            jobs = services.jobs_submit(key=key, catalog=catalog, submission=submission)
        except InvalidSubmission as exc:
            return Response({"success": False, "error": str(exc)}, status=400)
        return Response({"success": True, "ids": [job.public_id.hex for job in jobs]})

    @extend_schema(
        operation_id="jobs_list", summary="The key owner's recent jobs", tags=["Jobs"],
        parameters=[
            OpenApiParameter("status", str, enum=Status.values),
            OpenApiParameter("limit", int, description="1 to 100, default 20"),
        ],
        responses={200: ListOutput, 400: FailureOutput, **AUTH_ERRORS},
    )  # fmt: skip
    def get(self, request):
        status = request.query_params.get("status") or None
        if status is not None and status not in Status.values:
            error = f"status: must be one of {', '.join(Status.values)}."
            return Response({"success": False, "error": error}, status=400)
        try:
            limit = int(request.query_params.get("limit") or 20)
        except ValueError:
            return Response({"success": False, "error": "limit: must be a number."}, status=400)
        jobs = selectors.job_list(owner_id=request.user.pk, status=status, limit=limit)
        return Response({"success": True, "jobs": [job_data(job) for job in jobs]})


class JobDetailApi(APIView):
    """``/api/v1/jobs/{ids}``: read (GET, up to 100 comma-separated ids), cancel (DELETE)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]

    class StatusOutput(serializers.Serializer):
        success = serializers.BooleanField()
        jobs = serializers.DictField(child=JobOutput(), help_text="By id; unknown ids too.")

    @extend_schema(
        operation_id="jobs_status", summary="Status and log of jobs", tags=["Jobs"],
        responses={200: StatusOutput, 400: FailureOutput, **AUTH_ERRORS},
    )  # fmt: skip
    def get(self, request, ids: str):
        wanted = [text for text in ids.split(",") if text.strip()]
        if not wanted or len(wanted) > selectors.MAX_IDS:
            error = f"ids: 1 to {selectors.MAX_IDS} comma-separated job ids."
            return Response({"success": False, "error": error}, status=400)
        found = selectors.jobs_by_ids(owner_id=request.user.pk, ids=wanted)
        return Response({"success": True, "jobs": {t: job_data(j) for t, j in found.items()}})

    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a queued or running job (purge=true: delete it and its output)",
        tags=["Jobs"],
        parameters=[OpenApiParameter("purge", bool)],
        responses={200: StatusOutput, 404: FailureOutput, **AUTH_ERRORS},
    )
    def delete(self, request, ids: str):
        public_id = selectors.public_id_parse(ids)
        owner_id = request.user.pk
        purge = request.query_params.get("purge", "").lower() in ("1", "true", "yes")
        if public_id is None:
            return not_found(ids)
        if purge:
            if not services.job_delete(owner_id=owner_id, public_id=public_id):
                return not_found(ids)
            return Response({"success": True, "jobs": {ids: {"status": "deleted"}}})
        job = services.job_cancel(owner_id=owner_id, public_id=public_id)
        if job is None:
            return not_found(ids)
        return Response({"success": True, "jobs": {ids: job_data(job)}})


def not_found(ids: str) -> Response:
    return Response({"success": False, "error": f"ids: no job {ids}."}, status=404)
