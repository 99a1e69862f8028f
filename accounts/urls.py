from django.urls import path

from accounts import api

urlpatterns = [
    path("me", api.MeView.as_view(), name="me"),
    path("orgs", api.OrgListView.as_view(), name="orgs"),
    path("orgs/<str:org_id>", api.OrgDetailView.as_view(), name="org-detail"),
]
