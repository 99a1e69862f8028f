from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.api import caller_model_entitlement
from apikeys.urls import portal_urlpatterns as portal_key_urls
from metering.urls import portal_urlpatterns as portal_usage_urls
from ops import metrics as ops_metrics
from ops import views as ops_views
from pools.urls import api_urlpatterns as pools_api_urls
from portal import errors, probes

admin.site.site_header = "Cortensor Portal"
admin.site.site_title = "Cortensor Portal admin"
admin.site.index_title = "Operations"

api_v1 = [
    path("", include("accounts.urls")),
    path("", include("apikeys.urls")),
    path("", include("metering.urls")),
    path("", include(pools_api_urls(entitlement=caller_model_entitlement))),
]

urlpatterns = [
    path("", include("gateway.urls")),
    path("admin/ops/dashboard/", admin.site.admin_view(ops_views.dashboard), name="ops-dashboard"),
    path("admin/", admin.site.urls),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", ops_metrics.metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("portal/", include(portal_key_urls)),
    path("portal/", include(portal_usage_urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Last: anything else under the API prefixes is a JSON 404, DEBUG or not (/v1/ has its
    # own in gateway.urls, for the Anthropic shape under /v1/messages).
    re_path(r"^(?:api|portal)/", errors.unknown_url, name="unknown-url"),
]

handler400 = "portal.errors.handler400"
handler403 = "portal.errors.handler403"
handler404 = "portal.errors.handler404"
handler500 = "portal.errors.handler500"
