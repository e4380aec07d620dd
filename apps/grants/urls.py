from __future__ import annotations

from django.urls import path

from apps.grants import views

# A grant's own page is in apps.consumption (consumption:grant), at /grants/<id>/.
app_name = "grants"
urlpatterns = [
    path("", views.grant_list, name="list"),
]
