from django.urls import path, re_path

from gateway import views

urlpatterns = [
    path("v1/chat/completions", views.ChatCompletionsView.as_view(), name="v1-chat"),
    path("v1/completions", views.CompletionsView.as_view(), name="v1-completions"),
    path("v1/messages", views.MessagesView.as_view(), name="v1-messages"),
    path("v1/responses", views.ResponsesView.as_view(), name="v1-responses"),
    re_path(
        r"^v1/responses/(?P<response_id>(?!input_tokens$)[^/]+)(?:/cancel|/input_items)?$",
        views.stored_response,
        name="v1-stored-response",
    ),
    path(
        "v1/messages/count_tokens", views.CountTokensView.as_view(), name="v1-messages-count-tokens"
    ),
    path("v1/models", views.ModelsView.as_view(), name="v1-models"),
    path("v1/models/<str:model_id>", views.ModelView.as_view(), name="v1-model"),
    path("health", views.HealthView.as_view(), name="health"),
    re_path(r"^v1/", views.unknown_url, name="v1-unknown"),  # last: every other /v1/ path
]
