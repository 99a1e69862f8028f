"""The ops pages of the admin (the global access pause), and what ops provides to the
other apps' admins (ops/apps.py registers it): the audited controls of ops.services, and
each organization's usage this period."""

from __future__ import annotations

from datetime import datetime

import redis
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization
from accounts.services import period_containing
from infra import faststate
from infra.adminactions import ReasonForm
from metering.models import UsageEvent
from ops import services
from ops.models import AccessPause


def annotate_org_period_usage(
    queryset: QuerySet[Organization], *, now: datetime
) -> QuerySet[Organization]:
    """`period_requests` and `period_tokens`: each org's usage in the period holding `now`."""
    start, end = period_containing(now=now)
    usage = (
        UsageEvent.objects.filter(org=OuterRef("pk"), created_at__gte=start, created_at__lt=end)
        .order_by()
        .values("org")
    )
    zero = Value(0, output_field=IntegerField())
    return queryset.annotate(
        period_requests=Coalesce(Subquery(usage.annotate(n=Count("id")).values("n")[:1]), zero),
        period_tokens=Coalesce(
            Subquery(
                usage.annotate(t=Sum(F("prompt_tokens") + F("completion_tokens"))).values("t")[:1]
            ),
            zero,
        ),
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
