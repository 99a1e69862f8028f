"""Catalog reads."""

from django.db.models import QuerySet

from pools.models import Model


def catalog_models() -> QuerySet[Model]:
    return Model.objects.prefetch_related("aliases").order_by("name")
