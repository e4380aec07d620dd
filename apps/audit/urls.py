from __future__ import annotations

from django.urls import path

from apps.audit import views

app_name = "audit"
urlpatterns = [
    path("", views.audit_log, name="all"),
    path("grants/<uuid:public_id>/", views.grant_audit, name="grant"),
]
