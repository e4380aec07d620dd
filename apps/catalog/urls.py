from __future__ import annotations

from django.urls import path

from apps.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.model_list, name="models"),
]
