from django.contrib import admin

from accounts.invalidation import org_changed_on_commit, plan_changed_on_commit
from accounts.models import (
    AuditEvent,
    ModelAccessPolicy,
    Organization,
    OrganizationMember,
    Plan,
    PlanSubscription,
    User,
)


class MembershipInline(admin.TabularInline):
    model = OrganizationMember
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]


class SubscriptionInline(admin.TabularInline):
    model = PlanSubscription
    extra = 0
    readonly_fields = ["created_at"]


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["email", "display_name", "auth_provider", "status", "created_at"]
    list_filter = ["auth_provider", "status"]
    search_fields = ["email", "display_name", "subject", "id"]
    readonly_fields = ["id", "auth_provider", "subject", "created_at", "updated_at"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "status", "personal_for", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "slug", "id", "personal_for__email"]
    readonly_fields = ["id", "created_at", "updated_at"]
    autocomplete_fields = ["personal_for"]
    inlines = [MembershipInline, SubscriptionInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        org_changed_on_commit(obj.pk)  # status and plan take effect on the next gateway request


@admin.register(OrganizationMember)
class OrganizationMemberAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "org__name", "org__slug"]
    autocomplete_fields = ["user", "org"]


class ModelAccessPolicyInline(admin.TabularInline):
    model = ModelAccessPolicy
    extra = 0


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "requests_per_minute",
        "tokens_per_minute",
        "window_requests",
        "weekly_requests",
        "weekly_tokens",
        "max_active_keys",
        "all_models",
        "is_default",
    ]
    list_filter = ["all_models", "is_default"]
    search_fields = ["code", "name"]
    inlines = [ModelAccessPolicyInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        plan_changed_on_commit(obj.pk)  # limits and entitlements apply on the next request


@admin.register(ModelAccessPolicy)
class ModelAccessPolicyAdmin(admin.ModelAdmin):
    list_display = ["plan", "model_name"]
    list_filter = ["plan"]
    search_fields = ["model_name", "plan__code"]


@admin.register(PlanSubscription)
class PlanSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["org", "plan", "status", "current_period_start", "current_period_end"]
    list_filter = ["status", "plan"]
    search_fields = ["org__name", "org__slug", "org__id"]
    autocomplete_fields = ["org"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        org_changed_on_commit(obj.org_id)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_label", "action", "target_type", "target_id", "org"]
    list_filter = ["action", "actor_type", "target_type"]
    search_fields = ["actor_label", "target_id", "reason", "org__name"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
