"""The request log's admin filters, built for a table with a row per gateway request.

None of them lists distinct values from `request_logs` (a scan of the biggest table on
every page load) or every API key: key and model are typed in, status is a fixed list of
classes and common codes.
"""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR

from apikeys.models import ApiKey


class InputFilter(admin.SimpleListFilter):
    """A filter with a text box (`admin/metering/input_filter.html`) instead of a list of values."""

    template = "admin/metering/input_filter.html"
    placeholder = ""

    def lookups(self, request, model_admin):
        return [("", "")]  # one entry, so that the admin shows the filter

    def choices(self, changelist):
        kept = []
        for name, values in changelist.get_filters_params().items():
            if name != self.parameter_name:
                kept += [(name, v) for v in (values if isinstance(values, list) else [values])]
        if changelist.query:
            kept.append((SEARCH_VAR, changelist.query))
        yield {
            "parameter_name": self.parameter_name,
            "value": self.value() or "",
            "placeholder": self.placeholder,
            "hidden": kept,
            "clear_query_string": changelist.get_query_string(remove=[self.parameter_name]),
        }


class KeyFilter(InputFilter):
    """A key by id, or every key whose visible prefix starts with the text (`ctr_live_AbC…`)."""

    title = "API key"
    parameter_name = "key"
    placeholder = "key id or prefix"

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        try:
            return queryset.filter(api_key_id=uuid.UUID(value))
        except ValueError:
            keys = ApiKey.objects.filter(prefix__startswith=value).values("id")
            return queryset.filter(api_key_id__in=keys)


class ModelFilter(InputFilter):
    title = "model"
    parameter_name = "model"
    placeholder = "model name, exact"

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(model_name=value) if value else queryset


STATUS_CHOICES = [
    ("2xx", "2xx success"),
    ("4xx", "4xx client error"),
    ("5xx", "5xx server error"),
    *((str(code), str(code)) for code in (400, 401, 403, 404, 408, 413, 422, 429)),
    *((str(code), str(code)) for code in (500, 502, 503, 504)),
]


class StatusFilter(admin.SimpleListFilter):
    """A status class ("5xx") or code ("429"), as the dashboard's `/requests?status=` takes them."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return STATUS_CHOICES

    def queryset(self, request, queryset):
        value = self.value()
        if value not in dict(STATUS_CHOICES):
            return queryset
        if value.endswith("xx"):
            low = int(value[0]) * 100
            return queryset.filter(status_code__gte=low, status_code__lt=low + 100)
        return queryset.filter(status_code=int(value))
