from django.urls import path

from gateway import views

urlpatterns = [
    path("v1/chat/completions", views.ChatCompletionsView.as_view(), name="v1-chat"),
    path("v1/completions", views.CompletionsView.as_view(), name="v1-completions"),
    path("v1/messages", views.MessagesView.as_view(), name="v1-messages"),
    path("v1/models", views.ModelsView.as_view(), name="v1-models"),
    path("health", views.HealthView.as_view(), name="health"),
]
