from django.contrib import admin

from metering.models import RequestLog, UsageEvent


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = [
        "request_id",
        "org",
        "model_name",
        "prompt_tokens",
        "completion_tokens",
        "estimated",
        "cost",
        "created_at",
    ]
    list_filter = ["estimated", "model_name"]
    search_fields = ["request_id", "org__name", "org__slug"]
    date_hierarchy = "created_at"
    list_select_related = ["org"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "request_id",
        "org",
        "endpoint",
        "model_name",
        "status_code",
        "error_code",
        "latency_ms",
        "ttfb_ms",
        "streamed",
    ]
    list_filter = ["status_code", "endpoint", "streamed", "error_code"]
    search_fields = ["request_id", "org__name", "org__slug", "model_name"]
    date_hierarchy = "created_at"
    list_select_related = ["org"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
