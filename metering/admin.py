import re

from django.contrib import admin

from metering.models import BillingPeriod, LedgerEntry, RequestLog, UsageEvent, UsageRollup

REQUEST_ID = re.compile(r"req_[0-9A-Za-z]{24}")


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = [
        "request_id",
        "org",
        "model_name",
        "prompt_tokens",
        "completion_tokens",
        "estimated",
        "usage_capped",
        "cost",
        "created_at",
    ]
    list_filter = ["estimated", "usage_capped", "model_name"]
    search_fields = ["request_id", "org__name", "org__slug"]
    date_hierarchy = "created_at"
    list_select_related = ["org"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """Support's view: paste the `x-request-id` a customer quotes. No prompt text is stored."""

    list_display = [
        "created_at",
        "request_id",
        "org",
        "api_key",
        "endpoint",
        "model_name",
        "router_id",
        "status_code",
        "error_code",
        "latency_ms",
        "ttfb_ms",
        "streamed",
        "prompt_tokens",
        "completion_tokens",
    ]
    list_filter = ["status_code", "endpoint", "streamed", "usage_capped", "error_code"]
    search_fields = ["request_id", "org__name", "org__slug", "model_name"]
    search_help_text = (
        "A request id (req_…) finds that request exactly; other text searches orgs and models."
    )
    date_hierarchy = "created_at"
    list_select_related = ["org", "api_key"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if REQUEST_ID.fullmatch(term):
            return queryset.filter(request_id=term), False  # the unique index, not a LIKE scan
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived or financial rows: written by services (tasks, commands), never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = [
        "bucket_start",
        "granularity",
        "org",
        "model_name",
        "api_key_id",
        "requests",
        "cost",
        "updated_at",
    ]
    list_filter = ["granularity", "model_name"]
    search_fields = ["org__name", "org__slug", "=api_key_id"]
    date_hierarchy = "bucket_start"
    list_select_related = ["org"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "org",
        "kind",
        "amount",
        "usage_hour",
        "requests",
        "billing_period",
        "idempotency_key",
    ]
    list_filter = ["kind"]
    search_fields = ["org__name", "org__slug", "=idempotency_key"]
    date_hierarchy = "created_at"
    list_select_related = ["org", "billing_period"]


@admin.register(BillingPeriod)
class BillingPeriodAdmin(ReadOnlyAdmin):
    list_display = [
        "org",
        "start",
        "end",
        "status",
        "plan",
        "requests",
        "cost",
        "balance",
        "closed_at",
    ]
    list_filter = ["status"]
    search_fields = ["org__name", "org__slug"]
    date_hierarchy = "start"
    list_select_related = ["org", "plan"]
