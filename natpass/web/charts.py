"""Small inline SVG charts (no script, no external file): a line chart and a grouped bar chart.

Both scale with the page (``viewBox``, width 100 %) and carry a <title> and a text summary, so a
screen reader or a text browser still gets the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

W, H = 600, 180
PAD_L, PAD_R, PAD_T, PAD_B = 62, 10, 12, 26
COLOURS = ("#1f6feb", "#d9480f", "#2f9e44", "#7048e8", "#868e96")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 1.0
    while exp * 10 <= value:
        exp *= 10
    while exp > value:
        exp /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def _frame(title: str, y_max: float, fmt: Callable[[float], str]) -> list[str]:
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i in range(5):
        y = PAD_T + (H - PAD_T - PAD_B) * i / 4
        value = y_max * (4 - i) / 4
        parts.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
                     f'{escape(fmt(value))}</text>')
    return parts


def _legend(names: Sequence[str]) -> str:
    items = "".join(f'<li><span class="swatch s{i % len(COLOURS)}"></span>{escape(n)}</li>'
                    for i, n in enumerate(names))  # classes, not style="": the CSP allows no inline style
    return f'<ul class="legend">{items}</ul>'


def line_chart(title: str, xs: Sequence[float], series: Mapping[str, Sequence[float]],
               fmt: Callable[[float], str], x_labels: Sequence[tuple[float, str]] = ()) -> str:
    """Lines over a shared x axis (e.g. seconds); ``x_labels`` are (x, text) ticks."""
    if len(xs) < 2:
        return f'<p class="empty">{escape(title)}: not enough samples yet (one every few seconds).</p>'
    x0, x1 = xs[0], xs[-1]
    span = (x1 - x0) or 1.0
    y_max = _nice_max(max((max(v) for v in series.values() if v), default=0.0))
    parts = _frame(title, y_max, fmt)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    for i, (name, values) in enumerate(series.items()):
        points = " ".join(f"{PAD_L + plot_w * (x - x0) / span:.1f},{PAD_T + plot_h * (1 - v / y_max):.1f}"
                          for x, v in zip(xs, values, strict=False))
        parts.append(f'<polyline fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="2" '
                     f'points="{points}"><title>{escape(name)}</title></polyline>')
    for x, text in x_labels:
        if x0 <= x <= x1:
            px = PAD_L + plot_w * (x - x0) / span
            parts.append(f'<text x="{px:.1f}" y="{H - 8}" text-anchor="middle" class="axis">{escape(text)}</text>')
    parts.append("</svg>")
    return '<figure class="chart-box">' + "".join(parts) + _legend(list(series)) + "</figure>"


def bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]],
              fmt: Callable[[float], str]) -> str:
    """Grouped bars: one group per label (e.g. a day), one bar per series (e.g. a protocol)."""
    if not labels or not series:
        return f'<p class="empty">{escape(title)}: nothing recorded yet.</p>'
    y_max = _nice_max(max((max(v) for v in series.values() if v), default=0.0))
    parts = _frame(title, y_max, fmt)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    group = plot_w / len(labels)
    bar = max(1.0, group * 0.8 / len(series))
    every = max(1, len(labels) // 8)
    for g, label in enumerate(labels):
        gx = PAD_L + g * group + group * 0.1
        for i, (name, values) in enumerate(series.items()):
            v = values[g] if g < len(values) else 0.0
            h = plot_h * v / y_max
            parts.append(f'<rect x="{gx + i * bar:.1f}" y="{PAD_T + plot_h - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{COLOURS[i % len(COLOURS)]}"><title>{escape(name)} '
                         f'{escape(label)}: {escape(fmt(v))}</title></rect>')
        if g % every == 0:
            parts.append(f'<text x="{gx + group * 0.4:.1f}" y="{H - 8}" text-anchor="middle" class="axis">'
                         f'{escape(label)}</text>')
    parts.append("</svg>")
    return '<figure class="chart-box">' + "".join(parts) + _legend(list(series)) + "</figure>"
