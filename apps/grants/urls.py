from __future__ import annotations

from django.urls import path

from apps.grants import views

app_name = "grants"
urlpatterns = [
    path("", views.grant_list, name="list"),
    path("<uuid:public_id>/", views.grant_detail, name="detail"),
]
