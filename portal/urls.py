from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apikeys.urls import portal_urlpatterns as portal_key_urls
from gateway.catalog_api import CatalogView

api_v1 = [
    path("", include("accounts.urls")),
    path("", include("apikeys.urls")),
    path("", include("metering.urls")),
    path("models", CatalogView.as_view(), name="catalog"),
]

urlpatterns = [
    path("", include("gateway.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("portal/", include(portal_key_urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

handler400 = "portal.errors.handler400"
handler403 = "portal.errors.handler403"
handler404 = "portal.errors.handler404"
handler500 = "portal.errors.handler500"
