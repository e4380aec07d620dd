from __future__ import annotations

from django.urls import path

from apps.statements import views

app_name = "statements"
urlpatterns = [
    path("", views.statement_list, name="list"),
    path("<uuid:public_id>.csv", views.statement_csv_download, name="csv"),
    path("<uuid:public_id>.json", views.statement_json_download, name="json"),
]
