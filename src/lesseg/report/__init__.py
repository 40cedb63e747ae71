"""The run report: ``report.html`` with metrics, per-class IoU, a picture gallery and training curves."""

from lesseg.report.html import (
    GalleryRow,
    curves_from_log,
    flatten_metrics,
    format_metric,
    render_report,
    write_report,
)
from lesseg.report.visualize import apply_colormap, colorize, data_uri, heatmap, overlay, to_png_bytes

__all__ = [
    "GalleryRow",
    "apply_colormap",
    "colorize",
    "curves_from_log",
    "data_uri",
    "flatten_metrics",
    "format_metric",
    "heatmap",
    "overlay",
    "render_report",
    "to_png_bytes",
    "write_report",
]
