"""A dependency-free SVG bar chart of the router's added latency.

matplotlib would be the usual choice, but it (with its image and font stack)
is a large install for one chart; a few SVG rectangles say the same and open
in any browser or Markdown viewer.
"""

from __future__ import annotations

from html import escape

_LINE_COLORS = ("#79706e", "#000000", "#e45756", "#f58518", "#54a24b", "#4c78a8")
_COLORS = ("#4c78a8", "#9ecae9", "#f58518", "#ffbf79", "#bab0ac", "#79706e")


def bar_chart(
    title: str,
    groups: list[tuple[str, list[tuple[str, float]]]],
    unit: str = "ms",
    width: int = 760,
    height: int = 360,
) -> str:
    """Grouped bars: ``groups`` is [(group label, [(series label, value), ...]), ...]."""
    top, bottom, left, right = 40, 70, 60, 20
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for _, series in groups for _, v in series), default=1.0) or 1.0
    series_names: list[str] = []
    for _, series in groups:
        for name, _ in series:
            if name not in series_names:
                series_names.append(name)
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.8 / max(1, len(series_names))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#333"/>',
    ]
    for gi, (label, series) in enumerate(groups):
        x0 = left + gi * group_w + group_w * 0.1
        for name, value in series:
            si = series_names.index(name)
            h = plot_h * value / peak
            x = x0 + si * bar_w
            y = top + plot_h - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{h:.1f}" fill="{_COLORS[si % len(_COLORS)]}"/>'
            )
            parts.append(
                f'<text x="{x + bar_w * 0.45:.1f}" y="{y - 4:.1f}" '
                f'text-anchor="middle">{value:.1f}</text>'
            )
        parts.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{top + plot_h + 18}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    for si, name in enumerate(series_names):  # legend: three entries per row
        x = left + (si % 3) * 230
        y = height - 34 + (si // 3) * 16
        parts.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{_COLORS[si % len(_COLORS)]}"/>'
        )
        parts.append(f'<text x="{x + 16}" y="{y + 10}">{escape(name)} ({unit})</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def line_chart(
    title: str,
    series: list[tuple[str, list[tuple[float, float]]]],
    x_label: str,
    y_label: str,
    width: int = 760,
    height: int = 420,
    x_max: float = 1.0,
) -> str:
    """Lines over [0, x_max] x [0, 1]: ``series`` is [(label, [(x, y), ...]), ...].

    The x axis is a share (ticks in percent) unless ``x_max`` says otherwise (ticks
    as numbers: requests, say).
    """
    top, bottom, left, right = 40, 80, 60, 20
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float, y: float) -> str:
        y = min(1.0, max(0.0, y))
        return f"{left + x / x_max * plot_w:.1f},{top + plot_h - y * plot_h:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#333"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, y = left + tick * plot_w, top + plot_h - tick * plot_h
        label = f"{tick:.0%}" if x_max == 1.0 else f"{tick * x_max:g}"
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{label}</text>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.0%}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">{escape(y_label)}</text>'
    )
    for si, (name, points) in enumerate(series):
        color = _LINE_COLORS[si % len(_LINE_COLORS)]
        path = " ".join(px(x, y) for x, y in points)
        parts.append(
            f'<polyline class="line" points="{path}" fill="none" stroke="{color}" '
            'stroke-width="2"/>'
        )
        lx = left + (si % 3) * 230
        ly = height - 30 + (si // 3) * 16
        parts.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{lx + 16}" y="{ly + 10}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
