from __future__ import annotations

from django.urls import path

from apps.consumption import views

# Mounted at the site's root: the grant and key pages sit at /grants/<id>/ and /keys/<id>/, next
# to the grants' and keys' own pages.
app_name = "consumption"
urlpatterns = [
    path("usage/", views.my_usage, name="mine"),
    path("grants/<uuid:public_id>/", views.grant_detail, name="grant"),
    path("keys/<uuid:public_id>/", views.api_key_detail, name="api_key"),
]
