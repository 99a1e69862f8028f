"""The accounts admin: customer users, organizations (their states, members and plan),
subscriptions and the audit log. Every status, role and plan change goes through an audited
service; plans are in accounts/adminplans.py, the forms in accounts/adminforms.py."""

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import limits, privileges, selectors, services
from accounts.adminforms import (
    AuditReasonForm,
    ChangePlanForm,
    LimitOverrideForm,
    OrganizationAddForm,
    SubscriptionForm,
)
from accounts.adminplans import ModelAccessPolicyAdmin, PlanAdmin  # noqa: F401 (registers them)
from accounts.invalidation import org_changed_on_commit
from accounts.models import (
    AuditEvent,
    Organization,
    OrganizationMember,
    PlanSubscription,
    User,
)
from infra.adminactions import ReadOnlyAdmin, provided, reason_action


class MembershipInline(admin.TabularInline):
    """Saved through the audited membership services (OrganizationAdmin.save_formset)."""

    model = OrganizationMember
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]


class SubscriptionInline(admin.TabularInline):
    """Read-only: plan changes go through the audited "Change plan" action."""

    model = PlanSubscription
    extra = 0
    fields = ["plan", "status", "current_period_start", "current_period_end", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["email", "display_name", "auth_provider", "status", "created_at"]
    list_filter = ["auth_provider", "status"]
    search_fields = ["email", "display_name", "subject", "id"]
    # Status changes go through the audited disable / enable actions (accounts.privileges:
    # a disabled user's keys are refused too).
    readonly_fields = ["id", "auth_provider", "subject", "status", "created_at", "updated_at"]
    actions = ["disable_users", "enable_users"]

    def has_add_permission(self, request):
        return False  # customers sign up through the auth provider

    def has_delete_permission(self, request, obj=None):
        return False  # disable instead: the audit log and their keys' creator stay

    _disable_users = reason_action(
        name="disable_users",
        description="Disable selected customer users",
        done="disabled",
        warning="Their dashboard sign-ins and every API key they created are refused "
        "from the next request, until enabled. Keys other members created keep working, "
        "also in organizations these users were the only owner of (listed after).",
        apply=lambda *, obj, actor, now, reason: privileges.user_disable(
            user=obj, actor=actor, now=now, reason=reason
        ),
    )

    @admin.action(description="Disable selected customer users", permissions=["change"])
    def disable_users(self, request, queryset):
        response = self._disable_users(request, queryset)
        if response is None:  # confirmed and applied: say what the rule leaves behind
            for user in queryset.filter(status=User.Status.DISABLED):
                self._warn_ownerless(request, user)
        return response

    def _warn_ownerless(self, request, user: User) -> None:
        orgs = privileges.orgs_without_active_owner(user)
        if not orgs:
            return
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:accounts_organization_change", args=[o.pk]), o.name) for o in orgs),
        )
        message = format_html(
            "{} was the only active owner of: {}. The keys this user created there are "
            "refused; keys other members created keep working. Add an owner, or disable "
            "the organization to stop its keys.",
            user,
            links,
        )
        self.message_user(request, message, messages.WARNING)

    enable_users = reason_action(
        name="enable_users",
        description="Enable selected customer users",
        done="enabled",
        apply=lambda *, obj, actor, now, reason: privileges.user_enable(
            user=obj, actor=actor, now=now, reason=reason
        ),
    )


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "status",
        "plan_name",
        "period_requests",
        "period_tokens",
        "keys_link",
        "created_at",
    ]
    list_filter = ["status"]
    search_fields = ["name", "slug", "id", "personal_for__email"]
    readonly_fields = ["id", "created_at", "updated_at"]
    autocomplete_fields = ["personal_for"]
    inlines = [MembershipInline, SubscriptionInline]
    actions = [
        "pause_orgs",
        "resume_orgs",
        "disable_orgs",
        "enable_orgs",
        "change_plan",
        "override_limits",
        "reset_allowance",
    ]

    add_form = OrganizationAddForm
    add_fieldsets = [(None, {"fields": ["name", "slug", "plan", "reason"]})]

    def has_delete_permission(self, request, obj=None):
        return False  # disable instead: its audit log, usage and ledger stay

    def get_readonly_fields(self, request, obj=None):
        # Status changes go through the audited pause / resume / disable / enable actions,
        # limit overrides and allowance resets through their audited services (accounts.limits).
        if obj is None:
            return self.readonly_fields
        return [
            *self.readonly_fields,
            "status",
            *limits.OVERRIDABLE.values(),
            "allowance_reset_at",
        ]

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_inlines(self, request, obj):
        # A new org's subscription comes from the service; members may be added with it.
        return self.inlines if obj is not None else [MembershipInline]

    def get_queryset(self, request):
        active = selectors.active_subscriptions().filter(org=OuterRef("pk"))
        queryset = (
            super()
            .get_queryset(request)
            .annotate(plan_name=Subquery(active.values("plan__name")[:1]))
        )
        # Usage is metering's; ops provides the annotation (accounts imports no other app).
        return provided("annotate_org_period_usage")(queryset, now=timezone.now())

    @admin.display(description="plan", ordering="plan_name")
    def plan_name(self, obj: Organization) -> str:
        return obj.plan_name or "-"

    @admin.display(description="requests this period", ordering="period_requests")
    def period_requests(self, obj: Organization) -> int:
        return obj.period_requests

    @admin.display(description="tokens this period", ordering="period_tokens")
    def period_tokens(self, obj: Organization) -> int:
        return obj.period_tokens

    @admin.display(description="API keys")
    def keys_link(self, obj: Organization) -> str:
        url = reverse("admin:apikeys_apikey_changelist") + f"?org={obj.pk}"
        return format_html('<a href="{}">keys</a>', url)

    def save_model(self, request, obj, form, change):
        if not change:
            org = services.org_create(
                name=form.cleaned_data["name"],
                slug=form.cleaned_data["slug"],
                plan=form.cleaned_data["plan"],
                actor=request.user,
                now=timezone.now(),
                reason=form.cleaned_data["reason"],
            )
            # The admin goes on with `obj` (membership rows, log entry, redirect): make it that row.
            for field in Organization._meta.concrete_fields:
                setattr(obj, field.attname, getattr(org, field.attname))
            obj._state.adding, obj._state.db = False, org._state.db
            return
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        org_changed_on_commit(obj.pk)  # status and plan take effect on the next gateway request

    def save_formset(self, request, form, formset, change):
        if formset.model is not OrganizationMember:
            return super().save_formset(request, form, formset, change)
        # Memberships (roles are privileges) go through the audited services.
        now, reason = timezone.now(), form.cleaned_data.get("reason", "")
        for member in formset.save(commit=False):
            privileges.org_member_save(member=member, actor=request.user, now=now, reason=reason)
        for member in formset.deleted_objects:
            privileges.org_member_remove(member=member, actor=request.user, now=now, reason=reason)
        return None

    pause_orgs = reason_action(
        name="pause_orgs",
        description="Pause selected organizations",
        done="paused",
        warning="Every API key of these organizations gets 403 account_paused until resumed.",
        apply=lambda *, obj, actor, now, reason: services.org_pause(
            org=obj, actor=actor, now=now, reason=reason
        ),
    )
    resume_orgs = reason_action(
        name="resume_orgs",
        description="Resume selected organizations",
        done="resumed",
        apply=lambda *, obj, actor, now, reason: services.org_resume(
            org=obj, actor=actor, now=now, reason=reason
        ),
    )
    disable_orgs = reason_action(
        name="disable_orgs",
        description="Disable selected organizations",
        done="disabled",
        warning="Every API key of these organizations gets 403 account_disabled from the next "
        "request, until enabled; their members can still read the dashboard.",
        apply=lambda *, obj, actor, now, reason: services.org_disable(
            org=obj, actor=actor, now=now, reason=reason
        ),
    )
    enable_orgs = reason_action(
        name="enable_orgs",
        description="Enable selected disabled organizations",
        done="enabled",
        apply=lambda *, obj, actor, now, reason: services.org_enable(
            org=obj, actor=actor, now=now, reason=reason
        ),
    )
    change_plan = reason_action(
        name="change_plan",
        description="Change the plan of selected organizations",
        done="moved to the new plan",
        form_class=ChangePlanForm,
        apply=lambda *, obj, actor, now, plan, reason: services.org_change_plan(
            org=obj, plan=plan, actor=actor, now=now, reason=reason
        ),
    )
    override_limits = reason_action(
        name="override_limits",
        description="Override the plan's limits for selected organizations",
        done="given their own limits",
        form_class=LimitOverrideForm,
        warning="Each value replaces the plan's for these organizations from the next request; "
        "a blank value goes back to the plan's. Keys' own limits stay at most these.",
        apply=lambda *, obj, actor, now, reason, **values: limits.org_set_limit_override(
            org=obj, actor=actor, now=now, reason=reason, **values
        ),
    )
    reset_allowance = reason_action(
        name="reset_allowance",
        description="Reset the allowance of selected organizations",
        done="given a fresh allowance",
        warning="Usage so far no longer counts against this period's allowance (from the next "
        "request). Billing is unchanged: every request served stays billed.",
        apply=lambda *, obj, actor, now, reason: limits.org_reset_allowance(
            org=obj, actor=actor, now=now, reason=reason
        ),
    )


@admin.register(OrganizationMember)
class OrganizationMemberAdmin(admin.ModelAdmin):
    """Adding, changing and removing memberships is audited (accounts.privileges)."""

    form = AuditReasonForm
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "org__name", "org__slug"]
    autocomplete_fields = ["user", "org"]
    readonly_fields = ["created_at"]  # set on save

    def save_model(self, request, obj, form, change):
        privileges.org_member_save(
            member=obj, actor=request.user, now=timezone.now(), reason=form.cleaned_data["reason"]
        )

    def delete_model(self, request, obj):
        privileges.org_member_remove(member=obj, actor=request.user, now=timezone.now())

    def delete_queryset(self, request, queryset):
        now = timezone.now()
        for member in queryset.select_related("org", "user"):
            privileges.org_member_remove(member=member, actor=request.user, now=now)


@admin.register(PlanSubscription)
class PlanSubscriptionAdmin(admin.ModelAdmin):
    """Only the allowance period is edited here, audited (accounts.privileges)."""

    form = SubscriptionForm
    list_display = ["org", "plan", "status", "current_period_start", "current_period_end"]
    list_filter = ["status", "plan"]
    search_fields = ["org__name", "org__slug", "org__id"]
    autocomplete_fields = ["org"]

    def get_readonly_fields(self, request, obj=None):
        # An org's plan changes through the audited "Change plan" action on organizations.
        return ["org", "plan", "status", "created_at"] if obj is not None else []

    def has_add_permission(self, request):
        return False  # the "Change plan" action on organizations, audited

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        privileges.subscription_save(
            subscription=obj,
            actor=request.user,
            now=timezone.now(),
            reason=form.cleaned_data.get("reason", ""),
        )


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: rows are written by services only."""

    list_display = [
        "created_at",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "org",
        "reason",
    ]
    list_filter = ["action", "actor_type", "target_type"]
    search_fields = ["actor_label", "target_id", "reason", "org__name"]
    date_hierarchy = "created_at"
