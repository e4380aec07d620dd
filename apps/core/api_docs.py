"""The interactive API docs (Swagger UI) under the portal's Content-Security-Policy.

drf-spectacular's split view serves the page and, at ``?script``, the script that starts Swagger
UI, so the page needs no inline script. Its stylesheet and bundles are drf-spectacular-sidecar's
static files; Swagger UI draws some icons as data: images, which this page alone allows (its
inline styles are set from script, which the policy does not restrict).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView

SWAGGER_POLICY = {"img-src": ["'self'", "data:"]}


class ApiDocsView(SpectacularSwaggerSplitView):
    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response._csp_replace = SWAGGER_POLICY
        if request.GET.get("script") is not None:
            # The script carries this session's CSRF token: no other site may load it.
            response["Cross-Origin-Resource-Policy"] = "same-origin"
            response["Cache-Control"] = "private, no-store"
        return response
