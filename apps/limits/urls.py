from __future__ import annotations

from django.urls import path

from apps.limits import views

# Mounted under /grants/ next to the grant pages.
app_name = "limits"
urlpatterns = [
    path(
        "<uuid:public_id>/members/<uuid:user_public_id>/limit/",
        views.member_limit_change_view,
        name="member",
    ),
    path("<uuid:public_id>/limit/", views.member_limits_change_all_view, name="all_members"),
]
