"""Stage `report`: ``report.html`` in the run folder (metrics, per-class IoU, a gallery, training curves).

The gallery shows training images, the only ones with every panel: the image, its CAMs (the max over its
classes), its pseudo-label, the segmenter's prediction and the ground truth. The images are spread evenly
over the split, so the same run always shows the same ones.
"""

from __future__ import annotations

import json

import numpy as np

from lesseg.data.imageio import color_palette, load_image
from lesseg.eval.metrics_file import read_metrics
from lesseg.pipeline import RunContext
from lesseg.predict import Predictor, protocol_of
from lesseg.refine import load_cams
from lesseg.report import GalleryRow, colorize, curves_from_log, heatmap, write_report
from lesseg.stages.cams import cam_path
from lesseg.stages.common import is_main, load_weights, source_of
from lesseg.stages.pseudo_labels import load_pseudo_label
from lesseg.stages.segmenter import build_segmenter


def write_run_report(ctx: RunContext) -> None:
    if not is_main(ctx):
        return
    cfg, source = ctx.cfg, source_of(ctx)
    classes = source.classes
    palette = color_palette(classes.num_classes, classes.ignore_index)
    model = load_weights(ctx, "segmenter", build_segmenter(cfg, classes.num_classes))
    protocol = {**protocol_of(cfg.segmenter), "crf_iterations": 0}  # the gallery shows the network's own
    predictor = Predictor(model, classes, device=cfg.train.device, **protocol)
    records = source.split(cfg.data.train_split)
    count = min(cfg.eval.gallery, len(records))
    picks = [records[i] for i in np.linspace(0, len(records) - 1, count).round().astype(int)] if count else []
    gallery = []
    for r in picks:
        image = load_image(r.image)
        cams = load_cams(cam_path(ctx, r.id)).cams
        cam = cams.max(0) if len(cams) else np.zeros(image.shape[:2], np.float32)
        tags = ", ".join(classes.classes[c] for c in (source.tags_of(r) or ()))
        panels = [
            ("image", image),
            ("CAM", heatmap(image, cam)),
            ("pseudo-label", colorize(load_pseudo_label(ctx, r.id), palette, classes.ignore_index)),
            ("prediction", colorize(predictor.predict(image), palette, classes.ignore_index)),
        ]
        mask = source.load_mask(r)
        if mask is not None:
            panels.append(("ground truth", colorize(mask, palette, classes.ignore_index)))
        gallery.append(GalleryRow(f"{r.id} ({tags})" if tags else r.id, panels))
    log = ctx.path("log.jsonl")
    write_report(ctx.run_dir, f"lesseg run: {cfg.method.name} on {source.root.name}", read_metrics(ctx.run_dir),
                 gallery, curves_from_log(log) if log.is_file() else None, _notes(ctx), list(classes.classes),
                 palette)  # fmt: skip


def _notes(ctx: RunContext) -> list[str]:
    cfg = ctx.cfg
    init = []
    for what, m in (("classifier", cfg.model), ("segmenter", cfg.segmenter.model)):
        start = "ImageNet weights (timm)" if m.pretrained else (m.weights or "random init")
        if what == "segmenter" and cfg.segmenter.init_from_classifier:
            start = "backbone from the trained classifier"
        init.append(f"{what}: {m.backbone}, output stride {m.output_stride}, {start}")
    notes = ["; ".join(init) + "."]
    notes.append(
        "CAM and pseudo-label rows are on the training images, against their masks (read for evaluation "
        "only); the segmenter row is on val."
    )
    if cfg.eval.references:
        notes.append(
            "references/random_tags and references/largest_class read the masks: diagnostics, not baselines."
        )
    stages = ctx.path("stages.json")
    if stages.is_file():
        times = json.loads(stages.read_text())
        notes.append("Stage times: " + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in times.items()) + ".")
    return notes
