"""Server-side SVG charts for the ops dashboard: no JavaScript, no CDN.

Every piece of text is escaped here, so the returned markup is safe to render as is.
"""

from __future__ import annotations

from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 440, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 26, 24


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def timeseries(
    *, title: str, points: list[tuple[datetime, float]], color: str = "#417690", unit: str = ""
) -> SafeString:
    """A per-minute area chart with a y axis, gridlines and HH:MM ticks every 15 minutes."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max((y for _, y in points), default=0))
    n = max(len(points) - 1, 1)

    def x(i: int) -> float:
        return LEFT + plot_w * i / n

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    total = sum(value for _, value in points)
    parts = [
        (
            f'<svg class="ops-chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
            f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">'
        ),
        f"<title>{escape(title)}</title>",
        (
            f'<text x="{LEFT}" y="16" class="ops-chart-title">{escape(title)}'
            f" (last {len(points)} min, total {escape(_label(total))}{escape(unit)})</text>"
        ),
    ]
    for step in range(5):
        value = top * step / 4
        level = f"{y(value):.1f}"
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{level}" y2="{level}" class="ops-grid"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="ops-axis">'
            f"{escape(_label(value))}</text>"
        )
    for i, (at, _) in enumerate(points):
        if at.minute % 15 == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="middle" class="ops-axis">'
                f"{at:%H:%M}</text>"
            )
    if points:
        line = " ".join(f"{x(i):.1f},{y(value):.1f}" for i, (_, value) in enumerate(points))
        area = f"{x(0):.1f},{y(0):.1f} {line} {x(len(points) - 1):.1f},{y(0):.1f}"
        parts.append(f'<polygon points="{area}" fill="{escape(color)}" fill-opacity="0.18"/>')
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{escape(color)}" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text is escaped above


def meter(*, fraction: float | None, width: int = 120, color: str = "#417690") -> SafeString:
    """A small horizontal bar for a 0..1 share (top orgs, error rates)."""
    fraction = min(max(fraction or 0.0, 0.0), 1.0)
    return mark_safe(  # numbers and an escaped color only
        f'<svg width="{width}" height="10" viewBox="0 0 {width} 10" xmlns="http://www.w3.org/2000/svg">'
        f'<rect width="{width}" height="10" fill="#eee"/>'
        f'<rect width="{width * fraction:.1f}" height="10" fill="{escape(color)}"/></svg>'
    )
