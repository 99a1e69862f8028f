"""Staff controls and views that need more than one app, added to the other apps' admins.

Each admin class here extends the owning app's class (so its behaviour stays) and is
registered in its place: `ops` comes last in INSTALLED_APPS. Every control is a
reason-asking action that calls a service; the service audits and takes effect on the
next gateway request in every process.
"""

from __future__ import annotations

import redis
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.admin import OrganizationAdmin
from accounts.models import Organization
from accounts.services import period_containing
from metering.models import UsageEvent
from ops import services
from ops.models import AccessPause
from pools.admin import ModelAdmin as CatalogModelAdmin
from pools.admin import RouterAdmin, RouterPoolAdmin
from pools.models import Model, Router, RouterPool
from portal import faststate
from portal.adminactions import ReasonForm, reason_action


def _control(name: str, description: str, done: str, service, target: str, warning: str = ""):
    """A reason-asking action calling `service(<target>=obj, actor=..., reason=..., now=...)`."""
    return reason_action(
        name=name,
        description=description,
        done=done,
        warning=warning,
        apply=lambda *, obj, actor, now, reason: service(
            **{target: obj}, actor=actor, reason=reason, now=now
        ),
    )


# --- organizations: plan and usage this period -------------------------------------------


admin.site.unregister(Organization)


@admin.register(Organization)
class OpsOrganizationAdmin(OrganizationAdmin):
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

    def get_queryset(self, request):
        start, end = period_containing(now=timezone.now())
        usage = (
            UsageEvent.objects.filter(org=OuterRef("pk"), created_at__gte=start, created_at__lt=end)
            .order_by()
            .values("org")
        )
        zero = Value(0, output_field=IntegerField())
        return (
            super()
            .get_queryset(request)
            .annotate(
                period_requests=Coalesce(
                    Subquery(usage.annotate(n=Count("id")).values("n")[:1]), zero
                ),
                period_tokens=Coalesce(
                    Subquery(
                        usage.annotate(t=Sum(F("prompt_tokens") + F("completion_tokens"))).values(
                            "t"
                        )[:1]
                    ),
                    zero,
                ),
            )
        )

    @admin.display(description="requests this period", ordering="period_requests")
    def period_requests(self, obj: Organization) -> int:
        return obj.period_requests

    @admin.display(description="tokens this period", ordering="period_tokens")
    def period_tokens(self, obj: Organization) -> int:
        return obj.period_tokens


# --- catalog controls ----------------------------------------------------------------------


admin.site.unregister(Model)


@admin.register(Model)
class OpsModelAdmin(CatalogModelAdmin):
    actions = ["disable_models", "enable_models"]
    disable_models = _control(
        "disable_models",
        "Disable selected models",
        "disabled",
        services.model_disable,
        "model",
        warning="Requests for these models get 403 model_disabled until enabled.",
    )
    enable_models = _control(
        "enable_models", "Enable selected models", "enabled", services.model_enable, "model"
    )


admin.site.unregister(RouterPool)


@admin.register(RouterPool)
class OpsRouterPoolAdmin(RouterPoolAdmin):
    actions = ["drain_pools", "activate_pools", "disable_pools"]
    drain_pools = _control(
        "drain_pools",
        "Drain selected pools",
        "draining",
        services.pool_drain,
        "pool",
        warning="No new requests go to these pools; requests in flight finish.",
    )
    activate_pools = _control(
        "activate_pools",
        "Undrain / enable selected pools",
        "active",
        services.pool_activate,
        "pool",
    )
    disable_pools = _control(
        "disable_pools",
        "Disable selected pools",
        "disabled",
        services.pool_disable,
        "pool",
        warning="No new requests go to these pools; requests in flight finish.",
    )


admin.site.unregister(Router)


@admin.register(Router)
class OpsRouterAdmin(RouterAdmin):
    actions = ["disable_routers", "enable_routers", "reset_breakers"]
    disable_routers = _control(
        "disable_routers",
        "Disable selected routers",
        "disabled",
        services.router_disable,
        "router",
        warning="No new requests go to these routers; requests in flight finish.",
    )
    enable_routers = _control(
        "enable_routers", "Enable selected routers", "enabled", services.router_enable, "router"
    )
    reset_breakers = _control(
        "reset_breakers",
        "Close the circuit breaker of selected routers",
        "reset",
        services.router_reset_breaker,
        "router",
    )


# --- the global access pause ------------------------------------------------------------------


class PauseForm(ReasonForm):
    message = forms.CharField(
        max_length=500,
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Shown to customers in the 503 error body; empty means “Access is paused.”",
    )
    field_order = ["message", "reason"]


@admin.register(AccessPause)
class AccessPauseAdmin(admin.ModelAdmin):
    """One page: the switch's state and the form that flips it (pause needs a message and a reason)."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:ops_accesspause_changelist"))

    def changelist_view(self, request, extra_context=None):
        if not self.has_change_permission(request):
            raise PermissionDenied
        pause = services.access_pause_get()
        op = (
            request.POST.get("op")
            if request.method == "POST"
            else ("resume" if pause.active else "pause")
        )
        form_class = PauseForm if op == "pause" else ReasonForm
        form = form_class(request.POST if request.method == "POST" else None)
        if request.method == "POST" and op in ("pause", "resume") and form.is_valid():
            now = timezone.now()
            if op == "pause":
                services.access_pause(
                    message=form.cleaned_data["message"],
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    now=now,
                )
                self.message_user(
                    request,
                    "All access is paused: /v1 answers 503 access_paused.",
                    messages.WARNING,
                )
            else:
                services.access_resume(
                    actor=request.user, reason=form.cleaned_data["reason"], now=now
                )
                self.message_user(request, "Access resumed.", messages.SUCCESS)
            return HttpResponseRedirect(request.path)
        try:
            in_sync = faststate.get_client().exists(services.pause_key()) == int(pause.active)
        except redis.RedisError:
            in_sync = False  # the page still works; the template says fast state lags
        context = {
            **self.admin_site.each_context(request),
            "title": "Global access pause",
            "opts": self.model._meta,
            "pause": pause,
            "form": form,
            "in_sync": in_sync,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/ops/access_pause.html", context)
