"""Admin actions that ask staff for a reason before they call a service.

The first POST (the action picked on the change list) renders a confirmation page
listing the selected objects with a form (at least a required reason); submitting it
calls `apply(obj=..., actor=request.user, now=..., **form.cleaned_data)` once per
object. The service does the work, audit row included: the admin only collects input.

    pause_orgs = reason_action(
        name="pause_orgs",
        description="Pause selected organizations",
        done="paused",
        apply=lambda *, obj, actor, now, reason: org_pause(org=obj, actor=actor, now=now, reason=reason),
    )
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ImproperlyConfigured
from django.template.response import TemplateResponse
from django.utils import timezone

from portal.errors import PortalError

CONFIRM_TEMPLATE = "admin/confirm_with_reason.html"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services only (audit, derived or financial rows): listed and shown in
    the admin, never added, edited or deleted by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=1000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Why: recorded in the audit log with your name.",
    )


def reason_action(
    *,
    name: str,
    description: str,
    done: str,
    apply: Callable[..., object],
    form_class: type[forms.Form] = ReasonForm,
    permission: str = "change",
    warning: str = "",
) -> Callable:
    """A ModelAdmin action (`actions = [...]`) that confirms with `form_class` first."""

    def action(modeladmin, request, queryset):
        opts = modeladmin.model._meta
        if request.POST.get("confirm") == "yes":
            form = form_class(request.POST)
            if form.is_valid():
                now = timezone.now()
                count, failures = 0, []
                for obj in queryset:
                    try:
                        apply(obj=obj, actor=request.user, now=now, **form.cleaned_data)
                        count += 1
                    except PortalError as err:
                        failures.append(f"{obj}: {err.message}")
                noun = opts.verbose_name if count == 1 else opts.verbose_name_plural
                modeladmin.message_user(request, f"{count} {noun} {done}.", messages.SUCCESS)
                for failure in failures:
                    modeladmin.message_user(request, failure, messages.ERROR)
                return None  # back to the change list
        else:
            form = form_class()
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": description,
            "subtitle": None,
            "description": description,
            "warning": warning,
            "form": form,
            "objects": list(queryset),
            "opts": opts,
            "action_name": name,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": modeladmin.media + form.media,
        }
        request.current_app = modeladmin.admin_site.name
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)

    action.__name__ = name
    return admin.action(description=description, permissions=[permission])(action)


# --- admin features provided by another app -----------------------------------------------
#
# An app's admin may offer a control or a column whose code lives in an app it may not
# import (DESIGN's import rules): pools' admin offers "Drain selected pools", which ops
# audits. The admin names what it needs (`provided_control(service="pool_drain", ...)`,
# `provided("annotate_org_period_usage")`); the providing app registers it with
# `provide()` in its AppConfig.ready(), before any request.

_provided: dict[str, Callable[..., object]] = {}


def provide(**features: Callable[..., object]) -> None:
    _provided.update(features)


def provided(name: str) -> Callable[..., object]:
    try:
        return _provided[name]
    except KeyError:
        raise ImproperlyConfigured(
            f"No installed app provides the admin feature {name!r}."
        ) from None


def provided_control(
    *, name: str, description: str, done: str, service: str, target: str, warning: str = ""
) -> Callable:
    """A reason-asking action calling the provided `service(<target>=obj, actor=..., reason=..., now=...)`."""
    return reason_action(
        name=name,
        description=description,
        done=done,
        warning=warning,
        apply=lambda *, obj, actor, now, reason: provided(service)(
            **{target: obj}, actor=actor, reason=reason, now=now
        ),
    )
