"""Template tags for the admin: the global pause banner."""

from django import template
from django.urls import reverse
from django.utils.html import format_html

from ops.services import access_pause_get

register = template.Library()


@register.simple_tag
def access_pause_banner() -> str:
    pause = access_pause_get()
    if not pause.active:
        return ""
    return format_html(
        '<ul class="messagelist"><li class="error">Global access pause is ON: every /v1 request gets '
        '503 access_paused ("{}"). <a href="{}">Manage</a></li></ul>',
        pause.message or "Access is paused.",
        reverse("admin:ops_accesspause_changelist"),
    )


@register.filter
def percent(value) -> str:
    """0.0123 -> "1.2%"; None -> "-"."""
    return "-" if value is None else f"{value * 100:.1f}%"


@register.filter
def ms(value) -> str:
    """A latency in milliseconds, or "-"."""
    return "-" if value is None else f"{value:,.0f} ms"


@register.filter
def usd(micro: int) -> str:
    """Integer micro-USD as dollars, for display only."""
    return f"${(micro or 0) / 1_000_000:,.4f}"


@register.simple_tag
def share(value, total, width=120):
    from ops.charts import meter

    return meter(fraction=(value / total) if total else 0, width=width)
