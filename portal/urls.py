from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from apps.core.api_docs import ApiDocsView
from apps.keys.urls import management_urls

# The admin's login is allauth's, with its rate limits and its second factor
# (apps.accounts.middleware asks staff for one before any admin page).
admin.site.login = secure_admin_login(admin.site.login)

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.api.views.not_found"  # JSON under /api/, the portal's page elsewhere
handler500 = "apps.core.views.server_error"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="catalog:models", permanent=False)),
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("accounts/", include("apps.accounts.urls")),  # before allauth's: some of its pages
    path("accounts/", include("allauth.urls")),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("models/", include("apps.catalog.urls")),
    path("grants/", include("apps.grants.urls")),
    path("grants/", include("apps.limits.urls")),
    path("", include("apps.consumption.urls")),  # My usage, the grant and key pages
    path("audit/", include("apps.audit.urls")),
    path("statements/", include("apps.statements.urls")),
    path("keys/", include("apps.keys.urls")),
    path("playground/", include("apps.playground.urls")),
    path("jobs/", include("apps.jobs.urls")),
    path("management-keys/", include(management_urls)),
    path("api/", include("apps.gateway.urls")),
    path("api/v1/", include("portal.api_urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
]
