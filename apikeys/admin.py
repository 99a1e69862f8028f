from django.contrib import admin, messages
from django.utils import timezone

from apikeys import services
from apikeys.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "masked", "org", "status", "provider", "last_used_at", "expires_at", "created_at"]
    list_filter = ["status", "provider"]
    search_fields = ["name", "prefix", "last_four", "id", "external_id", "org__name", "org__slug"]
    list_select_related = ["org"]
    # The HMAC never appears; keys are created through the dashboard so the plaintext is shown once.
    fields = [
        "id",
        "org",
        "name",
        "status",
        "provider",
        "external_id",
        "prefix",
        "last_four",
        "allowed_models",
        "expires_at",
        "last_used_at",
        "created_by",
        "created_at",
        "revoked_at",
        "replaced_by",
    ]
    readonly_fields = [f for f in fields if f not in ("name",)]
    actions = ["revoke_keys", "disable_keys", "enable_keys"]

    def has_add_permission(self, request):
        return False

    def _apply(self, request, queryset, service, verb):
        now = timezone.now()
        for key in queryset:
            service(key=key, actor=request.user, now=now, reason=f"{verb} in admin")
        self.message_user(request, f"{queryset.count()} key(s) {verb}.", messages.SUCCESS)

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        self._apply(request, queryset, services.api_key_revoke, "revoked")

    @admin.action(description="Disable selected keys")
    def disable_keys(self, request, queryset):
        self._apply(request, queryset, services.api_key_disable, "disabled")

    @admin.action(description="Enable selected keys")
    def enable_keys(self, request, queryset):
        self._apply(request, queryset, services.api_key_enable, "enabled")
