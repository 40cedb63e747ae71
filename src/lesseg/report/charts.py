"""Inline SVG charts for the report: per-class IoU bars and training curves. Plain strings, no scripts."""

from __future__ import annotations

import math
from html import escape

ACCENT = "#3b6ea8"
MUTED = "#8a8f98"
GRID = "#e3e6ea"
TEXT = "#2b2f36"


def fmt_percent(v: float | None, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage without the sign ("63.2"); None as "n/a"."""
    return "n/a" if v is None else f"{100.0 * v:.{digits}f}"


def fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:,.0f}" if abs(v) >= 1000 and float(v).is_integer() else f"{v:.4g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (1, 2, 2.5, 5 x 10^k apart) that cover [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(n, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    start, stop = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(start, stop + 1)]


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        f'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="11">'
        + "".join(body)
        + "</svg>"
    )


def _short(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def bar_chart_svg(values: dict[str, float | None], mean: float | None = None, width: int = 440) -> str:
    """Horizontal bars of per-class IoU in [0, 1]; None (class absent from the ground truth) reads "n/a".
    ``mean`` draws a dashed line at the mIoU."""
    label_w, value_w, row_h, top, bottom = 132, 44, 18, 6, 24
    plot_w = width - label_w - value_w - 8
    height = top + row_h * max(len(values), 1) + bottom
    x0 = label_w + 4
    body = []
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = x0 + t * plot_w
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle" fill="{MUTED}">'
            f"{int(t * 100)}</text>"
        )
    for i, (name, v) in enumerate(values.items()):
        y = top + i * row_h
        cy = y + row_h / 2 + 4
        absent = v is None
        color = MUTED if absent else TEXT
        body.append(
            f'<text x="{label_w}" y="{cy:.1f}" text-anchor="end" fill="{color}"><title>{escape(name)}</title>'
            f"{escape(_short(name, 20))}</text>"
        )
        if not absent:
            w = max(0.0, min(1.0, float(v))) * plot_w
            body.append(
                f'<rect x="{x0}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" rx="2" fill="{ACCENT}">'
                f"<title>{escape(name)}: {fmt_percent(v)}</title></rect>"
            )
        body.append(
            f'<text x="{width - 4}" y="{cy:.1f}" text-anchor="end" fill="{color}">{fmt_percent(v)}</text>'
        )
    if mean is not None and math.isfinite(mean):
        x = x0 + max(0.0, min(1.0, mean)) * plot_w
        body.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#d0504f" '
            f'stroke-width="1.5" stroke-dasharray="4 3"><title>mIoU {fmt_percent(mean)}</title></line>'
        )
    return _svg(width, height, body, "per-class IoU (%)")


def _downsample(points: list[tuple[float, float]], max_points: int) -> list[tuple[float, float]]:
    if len(points) <= max_points:
        return points
    stride = len(points) / (max_points - 1)
    picked = [points[int(i * stride)] for i in range(max_points - 1)]
    return picked + [points[-1]]


#: colours of further series in one chart (the first is ACCENT)
SERIES = (ACCENT, "#c0392b", "#2e8b57", "#8e44ad", "#d68910")


def line_chart_svg(
    points: list[tuple[float, float]] | dict[str, list[tuple[float, float]]], width: int = 560, height: int = 220,
    x_label: str = "step",
) -> str:  # fmt: skip
    """A line chart of (x, y) points sorted by x, or of several named series (a dict: one colour each, a
    legend, a dot per point); non-finite values are left out."""
    named = points if isinstance(points, dict) else {"": points}
    series = {k: _downsample(sorted((float(x), float(y)) for x, y in v if math.isfinite(x) and math.isfinite(y)), 800)
              for k, v in named.items()}  # fmt: skip
    pts = [p for v in series.values() for p in v]
    left, right, top, bottom = 58, 26, 10, 36
    pw, ph = width - left - right, height - top - bottom
    if not pts:
        body = [f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{MUTED}">no data</text>']
        return _svg(width, height, body, "empty chart")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xt, yt = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    xlo, xhi, ylo, yhi = xt[0], xt[-1], yt[0], yt[-1]

    def sx(x: float) -> float:
        return left + (x - xlo) / (xhi - xlo) * pw

    def sy(y: float) -> float:
        return top + ph - (y - ylo) / (yhi - ylo) * ph

    body = []
    for t in yt:
        y = sy(t)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{fmt_tick(t)}</text>'
        )
    for t in xt:
        x = sx(t)
        body.append(f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="{MUTED}"/>')
        body.append(
            f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" fill="{MUTED}">{fmt_tick(t)}</text>'
        )
    body.append(
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{MUTED}"/>'
        f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" fill="{MUTED}">'
        f"{escape(x_label)}</text>"
    )
    for k, (name, line) in enumerate(series.items()):
        colour = SERIES[k % len(SERIES)]
        if len(line) == 1 or (name and len(line) < 30):
            body += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in line]
        if len(line) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
            body.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.6" '
                f'stroke-linejoin="round"/>'
            )
        if name:
            y = top + 12 + 14 * k
            body.append(f'<rect x="{left + 8}" y="{y - 8}" width="10" height="3" fill="{colour}"/>'
                        f'<text x="{left + 22}" y="{y - 3}" fill="{TEXT}">{escape(name)}</text>')  # fmt: skip
    return _svg(width, height, body, "line chart")
