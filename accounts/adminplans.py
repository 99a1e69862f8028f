"""The admin of plans and their model access policies: limits and entitlements are
privileges, so each save or delete writes one audit row and applies from the next gateway
request (accounts.privileges). Registered by importing it from accounts/admin.py."""

from django import forms
from django.contrib import admin
from django.db import transaction
from django.utils import timezone

from accounts import privileges
from accounts.adminforms import PlanForm
from accounts.models import ModelAccessPolicy, Plan
from infra.adminactions import ReadOnlyAdmin, provided


class ModelAccessPolicyForm(forms.ModelForm):
    def clean_model_name(self) -> str:
        """A canonical model name: the gateway checks the name an alias resolves to, so a
        policy naming an alias would never grant anything. (A model not added yet is fine.)"""
        name = self.cleaned_data["model_name"]
        target = provided("model_alias_target")(name)
        if target is not None:
            raise forms.ValidationError(f"{name} is an alias of {target}: name {target}.")
        return name


class ModelAccessPolicyInline(admin.TabularInline):
    model = ModelAccessPolicy
    form = ModelAccessPolicyForm
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
    form = PlanForm

    # Limits and entitlements are privileges: the save (plan and model list) writes one audit
    # row with the changed fields, and applies them on the next request (accounts.privileges).
    def save_model(self, request, obj, form, change):
        request.plan_before = (
            privileges.plan_snapshot(Plan.objects.get(pk=obj.pk)) if change else None
        )
        super().save_model(request, obj, form, change)

    def get_deleted_objects(self, objs, request):
        # A plan's model list goes with it (recorded in the plan's audit row), although
        # model access policies cannot be deleted on their own.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(ModelAccessPolicy._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        privileges.plan_delete(plan=obj, actor=request.user, now=timezone.now())

    @transaction.atomic
    def delete_queryset(self, request, queryset):  # "Delete selected plans"
        now = timezone.now()
        for plan in queryset:
            privileges.plan_delete(plan=plan, actor=request.user, now=now)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        privileges.plan_record_change(
            plan=form.instance,
            before=getattr(request, "plan_before", None),
            actor=request.user,
            now=timezone.now(),
            reason=form.cleaned_data.get("reason", ""),
        )


@admin.register(ModelAccessPolicy)
class ModelAccessPolicyAdmin(ReadOnlyAdmin):
    """Read-only: a plan's models are edited on the plan's page, where the change is audited."""

    list_display = ["plan", "model_name"]
    list_filter = ["plan"]
    search_fields = ["model_name", "plan__code"]
