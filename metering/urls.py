from django.urls import path

from metering import api

urlpatterns = [
    path("orgs/<str:org_id>/plan", api.OrgPlanView.as_view(), name="org-plan"),
    path("orgs/<str:org_id>/usage", api.UsageView.as_view(), name="org-usage"),
    path("orgs/<str:org_id>/usage.csv", api.UsageExportView.as_view(), name="org-usage-csv"),
    path("orgs/<str:org_id>/requests", api.RequestLogListView.as_view(), name="org-requests"),
    path(
        "orgs/<str:org_id>/requests.csv",
        api.RequestLogExportView.as_view(),
        name="org-requests-csv",
    ),
    path("orgs/<str:org_id>/ledger", api.LedgerListView.as_view(), name="org-ledger"),
    path(
        "orgs/<str:org_id>/billing-periods",
        api.BillingPeriodListView.as_view(),
        name="org-billing-periods",
    ),
]

portal_urlpatterns = [
    path("usage-summary", api.PortalUsageSummaryView.as_view(), name="portal-usage-summary"),
]
