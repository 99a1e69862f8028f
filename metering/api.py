"""Dashboard endpoints for plans, usage, request logs, the ledger and billing periods.

Every org endpoint goes through `get_membership_or_404`: another org's id is 404.
Members read all of them, CSV exports included.
"""

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, OpenApiTypes, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import active_subscription, get_membership_or_404, personal_membership
from accounts.serializers import PlanSerializer
from infra.pagination import Pagination, paginate
from metering import exports, selectors
from metering.allowance import org_allowance, usage_summary
from metering.serializers import (
    BillingPeriodSerializer,
    LedgerEntrySerializer,
    LedgerQuerySerializer,
    RequestLogQuerySerializer,
    RequestLogSerializer,
    UsageExportQuerySerializer,
    UsageQuerySerializer,
    UsageReportSerializer,
    UsageSummarySerializer,
)


class RequestLogPagination(CursorPagination):
    """Newest first, `?cursor=` from the previous page's `next`; stable while new requests arrive."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: "Invalid cursor."}) from None


def _query(serializer_class, request, **context) -> dict:
    query = serializer_class(data=request.query_params, context=context)
    query.is_valid(raise_exception=True)
    return query.validated_data


class OrgPlanView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, operation_id="orgs_plan_retrieve")
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        plan = active_subscription(org=membership.org).plan
        return Response(
            {
                "plan": PlanSerializer(plan).data,
                **org_allowance(org=membership.org, now=timezone.now()),
            }
        )


class UsageView(APIView):
    @extend_schema(
        parameters=[UsageQuerySerializer],
        responses=UsageReportSerializer,
        operation_id="orgs_usage_retrieve",
    )
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        query = _query(UsageQuerySerializer, request, now=timezone.now())
        report = selectors.org_usage_report(org=membership.org, **query)
        return Response(UsageReportSerializer(report).data)


class RequestLogListView(APIView):
    pagination_class = RequestLogPagination

    @extend_schema(
        parameters=[RequestLogQuerySerializer],
        responses=RequestLogSerializer(many=True),
        operation_id="orgs_requests_list",
    )
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        logs = selectors.org_request_logs(
            org=membership.org, **_query(RequestLogQuerySerializer, request)
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(logs, request, view=self)
        return paginator.get_paginated_response(RequestLogSerializer(page, many=True).data)


# --- CSV exports ------------------------------------------------------------------------------------


class JsonErrorsNegotiation(BaseContentNegotiation):
    """A CSV view answers CSV, or an error in the stable JSON shape, whatever `Accept` says."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


def _csv_response(lines, *, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _stamp(at) -> str:
    return at.strftime("%Y%m%dT%H%MZ")


CSV_RESPONSE = {
    (200, "text/csv"): OpenApiResponse(
        OpenApiTypes.STR, description="CSV with a header row, streamed; amounts in micro-USD."
    )
}


class UsageExportView(APIView):
    content_negotiation_class = JsonErrorsNegotiation

    @extend_schema(
        parameters=[UsageExportQuerySerializer],
        responses=CSV_RESPONSE,
        operation_id="orgs_usage_csv",
        description=(
            "The usage of `/usage` as CSV, one row per (bucket, model, key): "
            + ", ".join(exports.USAGE_COLUMNS)
            + ". Same range rules; its rows sum to `/usage`'s totals."
        ),
    )
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        query = _query(UsageExportQuerySerializer, request, now=timezone.now())
        org = membership.org
        rows = exports.usage_rows(org=org, **query)
        name = f"usage-{org.slug}-{_stamp(query['start'])}-{_stamp(query['end'])}.csv"
        return _csv_response(exports.csv_lines(exports.USAGE_COLUMNS, rows), filename=name)


class RequestLogExportView(APIView):
    content_negotiation_class = JsonErrorsNegotiation

    @extend_schema(
        parameters=[RequestLogQuerySerializer],
        responses=CSV_RESPONSE,
        operation_id="orgs_requests_csv",
        description=(
            "Every request log matching `/requests`' filters as CSV, newest first (no pages): "
            + ", ".join(exports.REQUEST_COLUMNS)
            + "."
        ),
    )
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        org = membership.org
        logs = selectors.org_request_logs(org=org, **_query(RequestLogQuerySerializer, request))
        rows = exports.request_rows(logs)
        name = f"requests-{org.slug}-{_stamp(timezone.now())}.csv"
        return _csv_response(exports.csv_lines(exports.REQUEST_COLUMNS, rows), filename=name)


class LedgerListView(APIView):
    pagination_class = Pagination

    @extend_schema(
        parameters=[LedgerQuerySerializer],
        responses=LedgerEntrySerializer(many=True),
        operation_id="orgs_ledger_list",
    )
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        entries = selectors.org_ledger_entries(
            org=membership.org, **_query(LedgerQuerySerializer, request)
        )
        return paginate(
            request=request,
            view=self,
            queryset=entries,
            serialize=lambda rows: LedgerEntrySerializer(rows, many=True).data,
        )


class BillingPeriodListView(APIView):
    pagination_class = Pagination

    @extend_schema(
        responses=BillingPeriodSerializer(many=True), operation_id="orgs_billing_periods_list"
    )
    def get(self, request, org_id):
        membership = get_membership_or_404(user=request.user, org_id=org_id)
        return paginate(
            request=request,
            view=self,
            queryset=selectors.org_billing_periods(org=membership.org),
            serialize=lambda rows: (
                BillingPeriodSerializer(selectors.with_running_totals(list(rows)), many=True).data
            ),
        )


class PortalUsageSummaryView(APIView):
    """Web-app compatibility: the allowance of the caller's personal org."""

    @extend_schema(responses=UsageSummarySerializer, operation_id="portal_usage_summary")
    def get(self, request):
        membership = personal_membership(user=request.user)
        return Response(
            UsageSummarySerializer(usage_summary(org=membership.org, now=timezone.now())).data
        )
