"""The API's answer to an address it does not have: under ``/api/`` the error shape every API
client reads (``{"error": {...}}``), elsewhere the portal's page."""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import Resolver404

from apps.api.errors import error_body
from apps.core.views import page_not_found


def not_found(request, exception):
    """Django's handler404: 404 ``unknown_url`` naming the method and path for an address no
    URL matches, ``not_found`` with the view's reason for anything else it could not find."""
    if not request.path.startswith("/api/"):
        return page_not_found(request, exception)
    if isinstance(exception, Resolver404) or not str(exception):
        message, code = f"Unknown URL: {request.method} {request.path}.", "unknown_url"
    else:
        message, code = str(exception), "not_found"
    return JsonResponse(error_body(status=404, message=message, code=code), status=404)
