from __future__ import annotations

from django.urls import path

from apps.gateway import views

app_name = "gateway"
urlpatterns = [
    path("v1/chat/completions", views.chat_completions, name="chat-completions"),
    path("v1/completions", views.completions, name="completions"),
    path("v1/embeddings", views.embeddings, name="embeddings"),
    path("v1/responses", views.create_response, name="responses"),
    path("v1/models", views.model_list, name="models"),
    path("v1/models/<path:model>", views.model_retrieve, name="model"),
    path("v1/models-plgrid-format", views.model_list_plgrid, name="models-plgrid"),
    path("health", views.health, name="health"),
]
