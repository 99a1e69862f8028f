from django.urls import path

from pools import api


def api_urlpatterns(*, entitlement: api.Entitlement) -> list:
    """The dashboard API of pools, given the caller's entitlement (see `CatalogView`)."""
    return [
        path("models", api.CatalogView.as_view(entitlement=entitlement), name="catalog"),
    ]
