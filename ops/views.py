"""The ops dashboard (staff only, inside the admin)."""

from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.template.response import TemplateResponse
from django.utils import timezone

from ops import charts
from ops.dashboard import dashboard_build


@permission_required("ops.view_dashboard", raise_exception=True)
def dashboard(request):
    """Wrapped by `admin.site.admin_view` in portal/urls.py: staff only, never cached; and
    only staff with the `ops.view_dashboard` permission (403 for the others)."""
    board = dashboard_build(now=timezone.now())
    per_minute = [(m.at, m.requests) for m in board.minutes]
    context = {
        **admin.site.each_context(request),
        "title": "Ops dashboard",
        "board": board,
        "requests_chart": charts.timeseries(title="Requests per minute", points=per_minute),
        "tokens_chart": charts.timeseries(
            title="Tokens per minute",
            points=[(m.at, m.tokens) for m in board.minutes],
            color="#2b8a3e",
        ),
        "errors_chart": charts.timeseries(
            title="5xx answers per minute",
            points=[(m.at, m.errors) for m in board.minutes],
            color="#c92a2a",
        ),
        "top_tokens": max((org.tokens for org in board.top_orgs), default=0),
    }
    return TemplateResponse(request, "admin/ops/dashboard.html", context)
