"""Stage `report`: ``report.html`` in the run folder (metrics, per-class IoU, a gallery, training curves),
for any method.

The gallery shows images of the method's ``gallery_split``, spread evenly over it (the same run always
shows the same ones): the image, the method's own panels (the CAM family: CAMs and pseudo-label), the
prediction of its inference model, and the ground truth where there is a mask.
"""

from __future__ import annotations

import json

import numpy as np

from lesseg.data.imageio import color_palette, load_image
from lesseg.eval.metrics_file import read_metrics
from lesseg.pipeline import RunContext
from lesseg.report import GalleryRow, colorize, curves_from_log, write_report
from lesseg.stages.common import is_main


def write_run_report(ctx: RunContext) -> None:
    if not is_main(ctx):
        return
    cfg, source, method = ctx.cfg, ctx.source, ctx.method
    predictor = method.inference_model(ctx.run_dir, device=cfg.train.device, crf_iterations=0)
    names = list(predictor.classes.classes)  # PiCIE without matched clusters: the clusters
    palette = color_palette(len(names), predictor.classes.ignore_index)
    split = cfg.data.train_split if method.gallery_split == "train" else cfg.data.val_split
    records = source.split(split)
    count = min(cfg.eval.gallery, len(records))
    picks = [records[i] for i in np.linspace(0, len(records) - 1, count).round().astype(int)] if count else []
    gallery = []
    for r in picks:
        image = load_image(r.image)
        panels = [("image", image), *method.gallery_panels(ctx, r, image)]
        panels.append((method.prediction_title, colorize(predictor.predict(image), palette, 255)))
        mask = source.load_mask(r)
        if mask is not None:
            panels.append(("ground truth", colorize(mask, palette, source.classes.ignore_index)))
        tags = ", ".join(source.classes.classes[c] for c in (source.tags_of(r, mask) or ()))
        gallery.append(
            GalleryRow(f"{r.id} ({tags})" if tags and method.gallery_split == "train" else r.id, panels)
        )
    log = ctx.path("log.jsonl")
    notes = [*method.report_notes(ctx), *stage_times(ctx)]
    write_report(ctx.run_dir, f"lesseg run: {report_name(cfg)} on {source.root.name}", read_metrics(ctx.run_dir),
                 gallery, curves_from_log(log) if log.is_file() else None, notes, names, palette,
                 class_marks=method.class_marks())  # fmt: skip


def report_name(cfg) -> str:
    """The method's name in the report's title (a variant where the method has one, e.g. PiCIE's MDC)."""
    return getattr(cfg.method, "variant", None) or cfg.method.name


def stage_times(ctx: RunContext) -> list[str]:
    stages = ctx.path("stages.json")
    if not stages.is_file():
        return []
    times = json.loads(stages.read_text())
    return ["Stage times: " + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in times.items()) + "."]


def init_note(what: str, m, from_classifier: bool = False) -> str:
    """How a network started: ``<what>: <backbone>, output stride <s>, <init>``."""
    start = "ImageNet weights (timm)" if m.pretrained else (m.weights or "random init")
    if from_classifier:
        start = "backbone from the trained classifier"
    return f"{what}: {m.backbone}, output stride {m.output_stride}, {start}"
