from __future__ import annotations

from django.urls import path

from apps.keys import views

# A key's own page is in apps.consumption (consumption:api_key), at /keys/<id>/.
app_name = "keys"
urlpatterns = [
    path("", views.api_key_list, name="list"),
    path("quickstart/", views.quickstart, name="quickstart"),
    path("archived/", views.api_key_archived_list, name="archived"),
    path("new/", views.api_key_create_view, name="create"),
    path("<uuid:public_id>/created/", views.api_key_created, name="created"),
    path("<uuid:public_id>/limits/", views.api_key_change_limits_view, name="change_limits"),
    path("<uuid:public_id>/revoke/", views.api_key_revoke_view, name="revoke"),
    path("<uuid:public_id>/archive/", views.api_key_archive_view, name="archive"),
]

# Mounted at /management-keys/ under the namespace "management_keys".
management_urls = (
    [
        path("", views.management_key_list, name="list"),
        path("new/", views.management_key_create_view, name="create"),
        path("<uuid:public_id>/created/", views.management_key_created, name="created"),
        path("<uuid:public_id>/revoke/", views.management_key_revoke_view, name="revoke"),
        path("<uuid:public_id>/archive/", views.management_key_archive_view, name="archive"),
    ],
    "management_keys",
)
