"""List pagination for the dashboard API: `?limit=&offset=` with a total count."""

from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200


def paginate(*, request, view, queryset, serialize):
    """One page of `queryset` as a paginated response; `serialize(rows)` gives the items."""
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serialize(page))
