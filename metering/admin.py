"""Metering in the admin: read-only usage, request logs (filterable by key, model, status and
time), rollups, billing periods, and the ledger with its one control: post a credit or
adjustment (`metering.adjustments`, audited)."""

import re
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from infra.adminactions import ReadOnlyAdmin
from metering.adjustments import (
    MAX_KEY,
    MAX_REASON,
    AdjustmentError,
    adjustment_post,
    find_org,
    parse_amount,
)
from metering.adminfilters import KeyFilter, ModelFilter, StatusFilter
from metering.models import BillingPeriod, LedgerEntry, RequestLog, UsageEvent, UsageRollup
from metering.periods import period_totals

REQUEST_ID = re.compile(r"req_[0-9A-Za-z]{24}")


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = [
        "request_id",
        "org",
        "model_name",
        "prompt_tokens",
        "completion_tokens",
        "estimated",
        "usage_capped",
        "cost",
        "created_at",
    ]
    list_filter = ["estimated", "usage_capped", "model_name"]
    search_fields = ["request_id", "org__name", "org__slug"]
    date_hierarchy = "created_at"
    list_select_related = ["org"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """Support's view: paste the `x-request-id` a customer quotes. No prompt text is stored."""

    list_display = [
        "created_at",
        "request_id",
        "org",
        "api_key",
        "endpoint",
        "model_name",
        "router_id",
        "status_code",
        "error_code",
        "latency_ms",
        "ttfb_ms",
        "streamed",
        "prompt_tokens",
        "completion_tokens",
    ]
    list_filter = [
        KeyFilter,
        ModelFilter,
        StatusFilter,
        ("created_at", admin.DateFieldListFilter),
        "endpoint",
        "streamed",
        "usage_capped",
    ]
    search_fields = ["request_id", "org__name", "org__slug", "model_name"]
    search_help_text = (
        "A request id (req_…) finds that request exactly; other text searches orgs and models."
    )
    date_hierarchy = "created_at"
    list_select_related = ["org", "api_key"]
    show_full_result_count = False  # no COUNT(*) of the whole table on every filtered page

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if REQUEST_ID.fullmatch(term):
            return queryset.filter(request_id=term), False  # the unique index, not a LIKE scan
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = [
        "bucket_start",
        "granularity",
        "org",
        "model_name",
        "api_key_id",
        "requests",
        "cost",
        "updated_at",
    ]
    list_filter = ["granularity", "model_name"]
    search_fields = ["org__name", "org__slug", "=api_key_id"]
    date_hierarchy = "bucket_start"
    list_select_related = ["org"]


class AdjustmentForm(forms.Form):
    org = forms.CharField(label="Organization", help_text="Its id or slug.")
    kind = forms.ChoiceField(
        choices=[
            ("credit", "Credit: the organization gets the amount back"),
            ("adjustment", "Adjustment: a signed correction (positive charges, negative refunds)"),
        ]
    )
    amount = forms.CharField(
        label="Amount (micro-USD)",
        help_text="A whole number: 1 USD = 1000000. A credit's amount is positive (booked negative).",
    )
    reason = forms.CharField(
        max_length=MAX_REASON,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Why: the organization reads it in its ledger; the audit log records it with your name.",
    )
    idempotency_key = forms.CharField(
        max_length=MAX_KEY,
        help_text="Posts at most once per key and organization; a ticket number works too.",
    )

    def clean_org(self):
        try:
            return find_org(self.cleaned_data["org"])
        except AdjustmentError as err:
            raise forms.ValidationError(err.message) from None

    def clean_amount(self):
        try:
            return parse_amount(self.cleaned_data["amount"])
        except AdjustmentError as err:
            raise forms.ValidationError(err.message) from None


def _new_form_key() -> str:
    return f"admin-{uuid.uuid4().hex}"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "org",
        "kind",
        "amount",
        "usage_hour",
        "requests",
        "billing_period",
        "idempotency_key",
    ]
    list_filter = ["kind"]
    search_fields = ["org__name", "org__slug", "=idempotency_key"]
    date_hierarchy = "created_at"
    list_select_related = ["org", "billing_period"]

    def get_urls(self):
        view = self.admin_site.admin_view(self.post_adjustment_view)
        return [
            path("post-adjustment/", view, name="metering_ledgerentry_post_adjustment"),
            *super().get_urls(),
        ]

    def can_post_adjustment(self, request) -> bool:
        return request.user.has_perm("metering.add_ledgerentry")

    def changelist_view(self, request, extra_context=None):
        extra = {"can_post_adjustment": self.can_post_adjustment(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def post_adjustment_view(self, request):
        """The form; a valid POST posts through `adjustment_post` and shows the entry."""
        if not self.can_post_adjustment(request):
            raise PermissionDenied
        if request.method == "POST":
            form = AdjustmentForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    posted = adjustment_post(
                        org=data["org"],
                        kind=data["kind"],
                        amount=data["amount"],
                        reason=data["reason"],
                        idempotency_key=data["idempotency_key"],
                        actor=request.user,
                        now=timezone.now(),
                        source="manual: admin",
                        audit_extra={"via": "admin"},
                    )
                except AdjustmentError as err:
                    if err.code == "key_conflict":
                        # The form was posted before with other values: a fresh key, on purpose.
                        form = AdjustmentForm(
                            {**request.POST.dict(), "idempotency_key": _new_form_key()}
                        )
                        form.is_valid()
                    form.add_error(err.field if err.field in form.fields else None, err.message)
                else:
                    level = messages.SUCCESS if posted.created else messages.WARNING
                    self.message_user(request, posted.describe(), level)
                    return HttpResponseRedirect(
                        reverse("admin:metering_ledgerentry_change", args=[posted.entry.pk])
                    )
        else:
            form = AdjustmentForm(
                initial={"org": request.GET.get("org", ""), "idempotency_key": _new_form_key()}
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Post a credit or adjustment",
            "opts": self.model._meta,
            "form": form,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/metering/post_adjustment.html", context)


@admin.register(BillingPeriod)
class BillingPeriodAdmin(ReadOnlyAdmin):
    list_display = [
        "org",
        "start",
        "end",
        "status",
        "plan",
        "requests",
        "cost",
        "balance",
        "closed_at",
        "post_credit",
    ]
    list_filter = ["status"]
    search_fields = ["org__name", "org__slug"]
    date_hierarchy = "start"
    list_select_related = ["org", "plan"]

    @admin.display(description="Credit or adjustment")
    def post_credit(self, period: BillingPeriod) -> str:
        url = reverse("admin:metering_ledgerentry_post_adjustment")
        return format_html('<a href="{}?org={}">Post…</a>', url, period.org_id)

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "credits", "adjustments"]

    @admin.display(description="Credits (micro-USD)")
    def credits(self, period: BillingPeriod) -> int:
        return self._manual(period)["credits"]

    @admin.display(description="Adjustments (micro-USD)")
    def adjustments(self, period: BillingPeriod) -> int:
        return self._manual(period)["adjustments"]

    @staticmethod
    def _manual(period: BillingPeriod) -> dict:
        return period_totals(period_ids=[period.pk])[period.pk]
