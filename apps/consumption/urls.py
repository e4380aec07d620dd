from __future__ import annotations

from django.urls import path

from apps.consumption import views

app_name = "consumption"
urlpatterns = [
    path("", views.my_usage, name="mine"),
]
