"""``report.html``: one self-contained page (inline CSS and SVG, PNGs as data URIs, no scripts) with a run's
metrics, per-class IoU, a picture gallery, training curves and notes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lesseg.data.imageio import color_palette
from lesseg.io import atomic_write_text
from lesseg.report.charts import bar_chart_svg, fmt_percent, line_chart_svg
from lesseg.report.style import CSS
from lesseg.report.visualize import as_rgb_uint8, data_uri

PANEL_HEIGHT = 150  # display height of gallery pictures, in CSS pixels
_FIRST_COLUMNS = ("miou", "pixel_acc")
_HEADERS = {"miou": "mIoU", "pixel_acc": "pixel acc.", "mean_acc": "mean acc.", "num_pixels": "pixels"}
_FRACTION_WORDS = ("iou", "acc", "coverage", "precision", "recall", "f1", "dice")


@dataclass
class GalleryRow:
    """One picture of the gallery: its id and its panels as (label, RGB uint8 HxWx3 image)."""

    id: str
    panels: list[tuple[str, np.ndarray]] = field(default_factory=list)


def is_fraction_key(key: str) -> bool:
    """Whether a metric of this name is a fraction in [0, 1], shown as a percentage."""
    k = key.lower()
    return k != "num_pixels" and any(w in k for w in _FRACTION_WORDS)


def format_metric(key: str, value: Any) -> str:
    """A metric value as the report's table shows it (fractions as percentages with one decimal)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return fmt_percent(value) if is_fraction_key(key) and 0.0 <= value <= 1.0 else f"{value:.4g}"
    if isinstance(value, str):
        return value
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:59] + "\u2026"


def _per_class(raw: Any, class_names: list[str] | None) -> dict[str, float | None]:
    if isinstance(raw, (list, tuple)):
        names = (
            class_names if class_names and len(class_names) == len(raw) else [str(i) for i in range(len(raw))]
        )
        raw = dict(zip(names, raw))
    values = {str(k): (None if v is None else float(v)) for k, v in raw.items()}
    if not class_names:
        return values
    ordered = {n: values[n] for n in class_names if n in values}
    return {**ordered, **{k: v for k, v in values.items() if k not in ordered}}


def flatten_metrics(metrics: dict, class_names: list[str] | None = None) -> list[dict]:
    """The stages of a nested metrics dict, depth first: [{"path": ("cams", "multi_tag"), "scalars": {..},
    "per_class": {..} or None}]. A dict is a stage when it holds scalar fields or per_class_iou."""
    rows: list[dict] = []

    def walk(d: dict, path: tuple[str, ...]) -> None:
        # lists (a threshold sweep, test scales) would crowd the table; they stay in metrics.json
        scalars = {
            k: v for k, v in d.items() if not isinstance(v, (dict, list, tuple)) and k != "per_class_iou"
        }
        raw = d.get("per_class_iou")
        per_class = _per_class(raw, class_names) if isinstance(raw, (dict, list, tuple)) else None
        if scalars or per_class is not None:
            rows.append({"path": path or ("run",), "scalars": scalars, "per_class": per_class})
        for k, v in d.items():
            if isinstance(v, dict) and k != "per_class_iou":
                walk(v, (*path, str(k)))

    walk(metrics, ())
    return rows


def _stage_label(path: tuple[str, ...]) -> str:
    parents = "".join(f"{escape(p)} / " for p in path[:-1])
    return (f'<span class="parent">{parents}</span>' if parents else "") + escape(path[-1])


def _metrics_table(rows: list[dict]) -> str:
    keys: list[str] = [k for k in _FIRST_COLUMNS if any(k in r["scalars"] for r in rows)]
    for r in rows:
        keys += [k for k in r["scalars"] if k not in keys]
    head = "".join(
        f"<th>{escape(_HEADERS.get(k, k.replace('_', ' ')))}"
        + (' <span class="unit">%</span>' if is_fraction_key(k) else "")
        + "</th>"
        for k in keys
    )
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="{"main" if k == "miou" else ""}">'
            + (escape(format_metric(k, r["scalars"][k])) if k in r["scalars"] else "\u2014")
            + "</td>"
            for k in keys
        )
        body.append(f'<tr><td class="stage">{_stage_label(r["path"])}</td>{cells}</tr>')
    return f'<table class="metrics"><thead><tr><th>stage</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _per_class_section(rows: list[dict]) -> str:
    figs = []
    for r in rows:
        if not r["per_class"]:
            continue
        miou = r["scalars"].get("miou")
        mean = float(miou) if isinstance(miou, (int, float)) and not isinstance(miou, bool) else None
        stat = f'<span class="stat">mIoU {fmt_percent(mean)}</span>' if mean is not None else ""
        title = escape(" / ".join(r["path"]))
        figs.append(
            f'<figure class="chart"><figcaption>{title}{stat}</figcaption>'
            f"{bar_chart_svg(r['per_class'], mean)}</figure>"
        )
    if not figs:
        return ""
    return (
        '<section id="per-class"><h2>Per-class IoU <span class="unit">(%; n/a: class absent from the '
        f'ground truth)</span></h2><div class="charts">{"".join(figs)}</div></section>'
    )


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def _legend(class_names: list[str], palette: np.ndarray | None) -> str:
    pal = np.asarray(color_palette(len(class_names)) if palette is None else palette).reshape(-1, 3)
    items = [
        f'<span><i style="background: rgb({int(r)},{int(g)},{int(b)})"></i>{escape(name)}</span>'
        for name, (r, g, b) in zip(class_names, pal[: len(class_names)])
    ]
    return f'<div class="legend">{"".join(items)}</div>'


def _gallery_section(
    gallery: list[GalleryRow], class_names: list[str] | None, palette: np.ndarray | None, max_side: int
) -> str:
    if not gallery:
        return ""
    rows = []
    for row in gallery:
        figs = []
        for label, image in row.panels:
            img = _fit(as_rgb_uint8(image), max_side)
            h, w = img.shape[:2]
            dw = max(1, round(w * PANEL_HEIGHT / h))
            cls = ' class="px"' if h < PANEL_HEIGHT else ""
            figs.append(
                f'<figure><img{cls} src="{data_uri(img)}" width="{dw}" height="{PANEL_HEIGHT}" '
                f'alt="{escape(label)}"><figcaption>{escape(label)}</figcaption></figure>'
            )
        rows.append(
            f'<div class="grow"><div class="gid">{escape(row.id)}</div><div class="panels">{"".join(figs)}</div></div>'
        )
    legend = _legend(class_names, palette) if class_names else ""
    return f'<section id="gallery"><h2>Pictures</h2>{legend}{"".join(rows)}</section>'


def _curves_section(curves: dict[str, list[tuple[int, float]]] | None) -> str:
    if not curves:
        return ""
    figs = []
    for name, points in curves.items():
        finite = [y for _, y in sorted(points, key=lambda p: p[0]) if math.isfinite(y)]
        stat = ""
        if finite:
            best = f" \u00b7 min {min(finite):.4g}" if "loss" in name else ""
            stat = f'<span class="stat">last {finite[-1]:.4g}{best}</span>'
        figs.append(
            f'<figure class="chart"><figcaption>{escape(name)}{stat}</figcaption>{line_chart_svg(points)}</figure>'
        )
    return f'<section id="curves"><h2>Training curves</h2><div class="charts">{"".join(figs)}</div></section>'


def curves_from_log(log_path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every numeric field of ``log.jsonl`` against ``step``: {"loss": [(step, value), ...], ...}. Event lines
    ({"event": ...}), lines without a step, malformed lines and non-numeric fields are skipped. When the log
    holds several stages, names read "<stage> / <field>"."""
    records = []
    for line in Path(log_path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # blank, or a line cut short by a killed run
        if not isinstance(rec, dict) or "event" in rec:
            continue
        step = rec.get("step")
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            continue
        records.append(rec)
    stages = {str(r.get("stage")) for r in records if "stage" in r}
    curves: dict[str, list[tuple[int, float]]] = {}
    for rec in records:
        prefix = f"{rec.get('stage')} / " if len(stages) > 1 else ""
        for k, v in rec.items():
            if k in ("step", "epoch", "stage") or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isfinite(v):
                curves.setdefault(prefix + k, []).append((int(rec["step"]), float(v)))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in curves.items()}


def render_report(
    title: str,
    metrics: dict,
    gallery: list[GalleryRow],
    curves: dict[str, list[tuple[int, float]]] | None = None,
    notes: list[str] | None = None,
    class_names: list[str] | None = None,
    subtitle: str = "",
    palette: np.ndarray | None = None,
    max_panel_side: int = 384,
    figures: list[tuple[str, str]] | None = None,
    class_marks: dict[str, str] | None = None,
) -> str:
    """The page as a string (see ``write_report``)."""
    rows = flatten_metrics(metrics or {}, class_names)
    if class_marks:  # shown beside the class's name in the per-class bars and the legend
        label = {n: f"{n} ({m})" for n, m in class_marks.items()}
        for r in rows:
            if r["per_class"]:
                r["per_class"] = {label.get(k, k): v for k, v in r["per_class"].items()}
        class_names = [label.get(n, n) for n in class_names] if class_names else class_names
    sections = []
    if notes:
        items = "".join(f"<li>{escape(n)}</li>" for n in notes)
        sections.append(f'<section class="notes" id="notes"><h2>Notes</h2><ul>{items}</ul></section>')
    table = _metrics_table(rows) if rows else '<p class="empty">No metrics recorded.</p>'
    sections.append(f'<section id="metrics"><h2>Metrics</h2>{table}</section>')
    if figures:
        charts = "".join(
            f'<figure class="chart"><figcaption>{escape(c)}</figcaption>{svg}</figure>' for c, svg in figures
        )
        sections.append(f'<section id="figures"><h2>Figures</h2>{charts}</section>')
    sections += [
        _per_class_section(rows),
        _gallery_section(gallery, class_names, palette, max_panel_side),
        _curves_section(curves),
    ]
    sections = [s for s in sections if s]
    nav = "".join(
        f'<a href="#{sid}">{label}</a>'
        for sid, label in [
            ("metrics", "Metrics"),
            ("figures", "Figures"),
            ("per-class", "Per-class IoU"),
            ("gallery", "Pictures"),
            ("curves", "Curves"),
        ]
        if f'id="{sid}"' in "".join(sections)
    )
    sub = f'<div class="sub">{escape(subtitle)}</div>' if subtitle else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>"
        f'<header><div class="wrap"><h1>{escape(title)}</h1>{sub}<nav>{nav}</nav></div></header>\n<main>'
        + "\n".join(sections)
        + "</main></body></html>\n"
    )


def write_report(
    run_dir: str | Path,
    title: str,
    metrics: dict,
    gallery: list[GalleryRow],
    curves: dict[str, list[tuple[int, float]]] | None = None,
    notes: list[str] | None = None,
    class_names: list[str] | None = None,
    palette: np.ndarray | None = None,
    max_panel_side: int = 384,
    figures: list[tuple[str, str]] | None = None,
    class_marks: dict[str, str] | None = None,
) -> Path:
    """Write ``run_dir/report.html`` atomically and return its path.

    Args:
        metrics: metrics.json's content, nested by stage; nested stages show as "cams / multi_tag".
        gallery: one row per picture, panels such as image / CAM heatmap / pseudo-label / prediction / GT.
        curves: {name: [(step, value), ...]}, e.g. from ``curves_from_log(run_dir / "log.jsonl")``.
        notes: caveats shown first ("random init", "references use masks: diagnostics, not baselines").
        class_names: order of the per-class bars, and a colour legend (``palette``, VOC colours by default).
        max_panel_side: larger pictures are shrunk to this many pixels on their long side before embedding.
        figures: ``(caption, svg)`` charts shown after the metrics (e.g. a benchmark's label-efficiency
            curves, :func:`~lesseg.report.charts.line_chart_svg` with several series).
        class_marks: a word shown beside some classes' names (weak-shot: ``{"cow": "novel"}``).
    """
    run_dir = Path(run_dir)
    page = render_report(title, metrics, gallery, curves, notes, class_names, str(run_dir.name), palette,
                         max_panel_side, figures, class_marks)  # fmt: skip
    return atomic_write_text(run_dir / "report.html", page)
