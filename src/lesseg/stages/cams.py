"""Stages `cams` (multi-scale CAMs of every training image) and `cam_eval` (their mIoU on the train masks).

The masks are read for evaluation only, after the CAMs are computed: nothing written to cams/ depends on them.
With a background class, the CAM mIoU is also reported at the best threshold of a sweep, as papers report
it (for reporting only; pseudo-labels use the configured threshold). The mIoU over images with two or more
tags is reported too: without a background class single-tag images are trivially right.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lesseg.data.imageio import load_image
from lesseg.engine.distributed import barrier
from lesseg.eval import ConfusionMatrix, record_metrics
from lesseg.pipeline import RunContext
from lesseg.progress import Progress, track
from lesseg.refine import cams_to_labels, infer_cams, load_cams, save_cams
from lesseg.stages.common import device_of, is_main, load_weights


def cam_path(ctx: RunContext, image_id: str, folder: str = "cams") -> Path:
    return ctx.path(folder, f"{image_id}.npz")


def compute_cams(ctx: RunContext, model: nn.Module, folder: str = "cams") -> None:
    """CAMs of every training image by ``model`` into ``folder``/<id>.npz (processes share the images)."""
    cfg, source = ctx.cfg, ctx.source
    output_of = {c: k for k, c in enumerate(source.classes.tag_indices)}
    model = model.to(device_of(ctx))
    records = source.split(cfg.data.train_split)
    if ctx.env is not None:
        records = records[ctx.env.rank :: ctx.env.world_size]
    chunk = cfg.cams.batch_size * 4  # images held in memory at once; sorted by size inside
    progress = Progress(folder.replace("/", " "), len(records), enabled=is_main(ctx))
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        images = [load_image(r.image) for r in part]
        tags = [[output_of[c] for c in (source.tags_of(r) or ())] for r in part]
        results = infer_cams(model, images, tags, scales=cfg.cams.scales, flip=cfg.cams.flip,
                             batch_size=cfg.cams.batch_size, device=device_of(ctx))  # fmt: skip
        for r, res in zip(part, results):
            save_cams(cam_path(ctx, r.id, folder), res)
        progress.update(len(part))
    progress.close()
    if ctx.env is not None:
        barrier(ctx.env)


def infer_train_cams(ctx: RunContext) -> None:
    compute_cams(ctx, load_weights(ctx, "classifier", ctx.method.build_model()))


def evaluate_cams(ctx: RunContext) -> None:
    """Stage `cam_eval` (cheap, so a changed threshold does not recompute the CAMs)."""
    if is_main(ctx):
        record_metrics(ctx.run_dir, "cams", score_cams(ctx))


def score_cams(ctx: RunContext, folder: str = "cams") -> dict:
    """mIoU of the CAMs in ``folder`` against the training masks, at the configured background threshold,
    the sweep's best (background class), and the mIoU over images with two or more tags."""
    cfg, source = ctx.cfg, ctx.source
    classes = source.classes
    records = [r for r in source.split(cfg.data.train_split) if r.mask is not None]
    thresholds = list(cfg.eval.bg_sweep) if classes.background is not None else [None]
    every = {t: ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index) for t in thresholds}
    multi = ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index)
    configured = cfg.pseudo_labels.bg_threshold if classes.background is not None else None
    at_configured = ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index)
    for r in track(records, f"{folder.replace('/', ' ')} scored", enabled=is_main(ctx)):
        res = load_cams(cam_path(ctx, r.id, folder))
        gt = source.load_mask(r)
        for t, cm in every.items():
            cm.update(cams_to_labels(res, classes, bg_threshold=t), gt)
        if len(res.classes) >= 2:
            multi.update(cams_to_labels(res, classes, bg_threshold=configured), gt)
        if configured is not None:
            at_configured.update(cams_to_labels(res, classes, bg_threshold=configured), gt)
    names = classes.classes
    if classes.background is None:
        out = every[None].metrics(names).to_dict()
        out["multi_tag"] = multi.metrics(names).to_dict() if multi.mat.sum() else None
        return out
    sweep = {t: cm.metrics(names).miou for t, cm in every.items()}
    best = max(sweep, key=sweep.get)
    out = at_configured.metrics(names).to_dict()
    out["multi_tag"] = multi.metrics(names).to_dict() if multi.mat.sum() else None
    out.update(bg_threshold=configured, best_threshold=best, best_threshold_miou=sweep[best],
               sweep=[[t, v] for t, v in sweep.items()])  # fmt: skip
    return out
