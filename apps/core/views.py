"""The portal's error pages: in its layout, with the reason when the code that refused gave
one (the access module's message, e.g. "Only the team's managers can do this.") and a way
back. Django calls these for 400, 403, 404 and 500 (``handler…`` in ``portal/urls.py``)."""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseServerError
from django.shortcuts import render
from django.template.loader import render_to_string

TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Page not found",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}
DEFAULT_REASONS = {
    400: "The request could not be understood.",
    403: "You do not have permission to open this page.",
    404: "There is nothing at this address, or it is not yours to see.",
    500: "Anvil hit an error on its side. It has been logged; please try again in a while.",
}


def reason_of(exception: BaseException | None) -> str | None:
    """The exception's own message when it is a sentence meant for people (Django's
    Resolver404 carries a dict, CSRF failures a code: those are not shown)."""
    message = exception.args[0] if exception is not None and exception.args else None
    if isinstance(message, str) and message and " " in message:
        return message
    return None


def _error(request, status: int, exception: BaseException | None):
    context = {
        "status": status,
        "title": TITLES[status],
        "reason": reason_of(exception) or DEFAULT_REASONS[status],
    }
    return render(request, "core/error.html", context, status=status)


def bad_request(request, exception):
    return _error(request, 400, exception)


def permission_denied(request, exception):
    return _error(request, 403, exception)


def page_not_found(request, exception):
    return _error(request, 404, exception)


def service_unavailable(request, reason: str):
    """503: a service the page needs can not be reached (``ServiceUnavailable``); ``reason``
    says what was (not) done. Without the request's context processors: they may need it."""
    context = {"status": 503, "title": TITLES[503], "reason": reason}
    return HttpResponse(render_to_string("core/error.html", context), status=503)


def server_error(request):
    """Without the request's context processors: they may be what failed."""
    context = {"status": 500, "title": TITLES[500], "reason": DEFAULT_REASONS[500]}
    return HttpResponseServerError(render_to_string("core/error.html", context))
