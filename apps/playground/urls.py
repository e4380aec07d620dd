from __future__ import annotations

from django.urls import path

from apps.playground import views

app_name = "playground"
urlpatterns = [
    path("", views.playground, name="page"),
    path("keys/<uuid:public_id>/chat", views.chat, name="chat"),
]
