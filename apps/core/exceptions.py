"""Domain exceptions raised by services. The REST handler, the gateway and HTML views each map
them to their own error shape."""

from __future__ import annotations


class ApplicationError(Exception):
    """A rule of the domain refused the operation; the message is safe to show to the user."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class NotFound(ApplicationError):
    status = 404
    code = "not_found"


class PermissionDenied(ApplicationError):
    status = 403
    code = "permission_denied"


class Conflict(ApplicationError):
    status = 409
    code = "conflict"


class ServiceUnavailable(ApplicationError):
    """Something the operation needs can not be reached; nothing was changed (503)."""

    status = 503
    code = "service_unavailable"
