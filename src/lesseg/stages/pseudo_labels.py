"""Stage `pseudo_labels`: CAMs to class-index palette PNGs, with their mIoU and coverage on train."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lesseg.data.imageio import load_label_png
from lesseg.eval import ConfusionMatrix, record_metrics
from lesseg.pipeline import RunContext
from lesseg.refine import cams_to_labels, coverage, load_cams, save_pseudo_label
from lesseg.stages.cams import cam_path
from lesseg.stages.common import is_main, source_of


def label_path(ctx: RunContext, image_id: str) -> Path:
    return ctx.path("pseudo_labels", f"{image_id}.png")


def load_pseudo_label(ctx: RunContext, image_id: str) -> np.ndarray:
    return load_label_png(label_path(ctx, image_id)).astype(np.int64)


def make_pseudo_labels(ctx: RunContext) -> None:
    out = pseudo_label_scores(ctx, "cams", write=is_main(ctx))
    if is_main(ctx):
        record_metrics(ctx.run_dir, "pseudo_labels", out)


def pseudo_label_scores(ctx: RunContext, cam_folder: str, write: bool = False) -> dict:
    """Pseudo-labels from the CAMs in ``cam_folder`` (written to pseudo_labels/ when ``write``); their
    mIoU on the labelled pixels against the training masks, and their coverage (the labelled fraction)."""
    cfg, source = ctx.cfg, source_of(ctx)
    classes = source.classes
    pl = cfg.pseudo_labels
    bg = pl.bg_threshold if classes.background is not None else None
    cm = ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index)
    labelled = total = 0
    for r in source.split(cfg.data.train_split):
        res = load_cams(cam_path(ctx, r.id, cam_folder))
        label = cams_to_labels(res, classes, bg_threshold=bg, ignore_band=pl.ignore_band)
        if write:
            save_pseudo_label(label_path(ctx, r.id), label, classes)
        labelled += coverage(label, classes.ignore_index) * label.size
        total += label.size
        if r.mask is not None:  # evaluation only, after the label is made
            gt = source.load_mask(r)
            keep = label != classes.ignore_index
            cm.update(label[keep], gt[keep])
    out = cm.metrics(classes.classes).to_dict() if cm.mat.sum() else {}
    out["coverage"] = labelled / max(1, total)
    return out
