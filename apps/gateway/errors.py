"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the fitting
HTTP status. The ``openai`` client maps the statuses to its exception classes."""

from __future__ import annotations

import json

from django.http import HttpResponse

from apps.core.exceptions import ApplicationError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "insufficient_quota",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class GatewayError(Exception):
    """Stops a gateway request with an OpenAI-shaped error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    @classmethod
    def from_application_error(cls, exc: ApplicationError) -> GatewayError:
        return cls(exc.status, exc.message, code=exc.code, param=exc.param)

    def body(self) -> dict:
        error_type = ERROR_TYPES.get(self.status, "api_error")
        if self.status == 429 and self.code != "insufficient_quota":
            error_type = "rate_limit_error"
        return {
            "error": {
                "message": self.message,
                "type": error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> HttpResponse:
        response = HttpResponse(
            json.dumps(self.body()), status=self.status, content_type="application/json"
        )
        for name, value in self.headers.items():
            response[name] = value
        return response
