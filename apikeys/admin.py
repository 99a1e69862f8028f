from django.contrib import admin

from apikeys import services
from apikeys.models import ApiKey
from infra.adminactions import reason_action


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "masked",
        "org",
        "status",
        "provider",
        "last_used_at",
        "expires_at",
        "created_at",
    ]
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

    def has_delete_permission(self, request, obj=None):
        # Revoke instead: immediate on every process, audited with a reason, and the key's
        # usage history keeps its name. (A key deleted any other way, e.g. with its org, is
        # still refused on the next request: apikeys.apps.)
        return False

    # Each control asks for a reason, which the service writes to the audit log.
    revoke_keys = reason_action(
        name="revoke_keys",
        description="Revoke selected keys",
        done="revoked",
        warning="Revocation is permanent: a revoked key never works again.",
        apply=lambda *, obj, actor, now, reason: services.api_key_revoke(
            key=obj, actor=actor, now=now, reason=reason
        ),
    )
    disable_keys = reason_action(
        name="disable_keys",
        description="Disable selected keys",
        done="disabled",
        apply=lambda *, obj, actor, now, reason: services.api_key_disable(
            key=obj, actor=actor, now=now, reason=reason
        ),
    )
    enable_keys = reason_action(
        name="enable_keys",
        description="Enable selected keys",
        done="enabled",
        apply=lambda *, obj, actor, now, reason: services.api_key_enable(
            key=obj, actor=actor, now=now, reason=reason
        ),
    )
