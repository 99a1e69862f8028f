from django.urls import path

from metering import api

urlpatterns = [
    path("orgs/<str:org_id>/plan", api.OrgPlanView.as_view(), name="org-plan"),
]
