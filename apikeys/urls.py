from django.urls import path

from apikeys import api

urlpatterns = [
    path("orgs/<str:org_id>/keys", api.KeyListView.as_view(), name="keys"),
    path("orgs/<str:org_id>/keys/<str:key_id>", api.KeyDetailView.as_view(), name="key-detail"),
    path(
        "orgs/<str:org_id>/keys/<str:key_id>/rotate", api.KeyRotateView.as_view(), name="key-rotate"
    ),
]

portal_urlpatterns = [
    path("api-keys", api.PortalKeyListView.as_view(), name="portal-keys"),
    path("api-keys/<str:key_id>", api.PortalKeyDetailView.as_view(), name="portal-key-detail"),
]
