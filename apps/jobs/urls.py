from __future__ import annotations

from django.urls import path

from apps.jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("<uuid:public_id>/", views.job_detail, name="detail"),
    path("<uuid:public_id>/state/", views.job_state, name="state"),
    path("<uuid:public_id>/cancel/", views.job_cancel, name="cancel"),
    path("<uuid:public_id>/delete/", views.job_delete, name="delete"),
]
