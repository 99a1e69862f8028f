"""The accounts admin's forms: each collects what an audited service needs (a reason, a plan)."""

import contextlib

from django import forms

from accounts import services
from accounts.models import Organization, Plan
from portal.errors import PortalError


class AuditReasonForm(forms.ModelForm):
    """A change form whose save writes an audit row (a service call): an optional reason."""

    reason = forms.CharField(
        max_length=1000,
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 70}),
        help_text="Why: recorded in the audit log with your name and the changed fields.",
    )


class ChangePlanForm(forms.Form):
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.order_by("code"), help_text="Limits apply on the next request."
    )
    reason = forms.CharField(
        max_length=1000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Why: recorded in the audit log with your name.",
    )


class LimitOverrideForm(forms.Form):
    """An organization's own limits in place of its plan's (blank: the plan's)."""

    requests_per_minute = forms.IntegerField(min_value=1, required=False)
    tokens_per_minute = forms.IntegerField(min_value=1, required=False)
    weekly_requests = forms.IntegerField(
        min_value=1, required=False, help_text="The period's request allowance."
    )
    weekly_tokens = forms.IntegerField(
        min_value=1, required=False, help_text="The period's token allowance."
    )
    reason = forms.CharField(
        max_length=1000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Why: recorded in the audit log with your name. Applies on the next request.",
    )


class OrganizationAddForm(forms.ModelForm):
    """Name, optional slug, starting plan and reason: `services.org_create` sets everything else."""

    plan = forms.ModelChoiceField(
        queryset=Plan.objects.order_by("code"), help_text="The plan the organization starts on."
    )
    reason = forms.CharField(
        max_length=1000,
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Why: recorded in the audit log with your name.",
    )

    class Meta:
        model = Organization
        fields = ["name", "slug"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["slug"].required = False
        self.fields["slug"].help_text = "Leave blank to make one from the name."
        with contextlib.suppress(PortalError):  # no default plan configured: staff pick one
            self.fields["plan"].initial = services.default_plan()


class PlanForm(AuditReasonForm):
    class Meta:
        model = Plan
        fields = "__all__"


class SubscriptionForm(AuditReasonForm):
    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("current_period_start"), cleaned.get("current_period_end")
        if start and end and end <= start:
            self.add_error("current_period_end", "The period must end after it starts.")
        return cleaned
