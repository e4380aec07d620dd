"""One exception handler for the whole REST API: every error leaves as
``{"error": {"message", "type", "param", "code"}}`` (OpenAI's shape) with its status."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from apps.core.exceptions import ApplicationError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(*, status: int, message: str, code: str | None, param: str | None = None) -> dict:
    error_type = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _first_field_error(detail, path: str = "") -> tuple[str | None, str, str]:
    """(param, message, code) of the first error in a nested ValidationError detail."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        name = None if field == "non_field_errors" else str(field)
        return _first_field_error(value, f"{path}.{name}" if path and name else name or path)
    if isinstance(detail, list):
        return _first_field_error(detail[0], path) if detail else (path or None, "Invalid.", "")
    return path or None, str(detail), getattr(detail, "code", "invalid")


def _validation_body(exc: exceptions.ValidationError) -> dict:
    param, message, code = _first_field_error(exc.detail)
    if param:
        message = f"{param}: {message}"
    return error_body(status=400, message=message, code=code or "invalid", param=param)


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        body = error_body(status=exc.status, message=exc.message, code=exc.code, param=exc.param)
        return Response(body, status=exc.status)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(exc)
        return response
    if isinstance(exc, Http404):
        message, code = str(exc) or "Not found.", "not_found"
    elif isinstance(exc, DjangoPermissionDenied):
        message, code = str(exc) or "Permission denied.", "permission_denied"
    else:
        message, code = str(exc.detail), exc.get_codes()
    response.data = error_body(status=response.status_code, message=message, code=str(code))
    return response
