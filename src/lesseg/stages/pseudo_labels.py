"""Stage `pseudo_labels`: CAMs (or their random walk) to class-index palette PNGs, with mIoU and coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lesseg.data.imageio import load_image, load_label_png
from lesseg.eval import ConfusionMatrix, record_metrics
from lesseg.pipeline import RunContext
from lesseg.progress import track
from lesseg.refine import cams_to_labels, load_cams, save_pseudo_label
from lesseg.stages.cams import cam_path
from lesseg.stages.common import is_main


def label_path(ctx: RunContext, image_id: str) -> Path:
    return ctx.path("pseudo_labels", f"{image_id}.png")


def load_pseudo_label(ctx: RunContext, image_id: str) -> np.ndarray:
    return load_label_png(label_path(ctx, image_id)).astype(np.int64)


def make_pseudo_labels(ctx: RunContext) -> None:
    pl = ctx.cfg.pseudo_labels
    out = pseudo_label_scores(ctx, pl.source, write=is_main(ctx), crf_iterations=pl.crf_iterations)
    if is_main(ctx):
        out.update(source=pl.source, crf_iterations=pl.crf_iterations)
        record_metrics(ctx.run_dir, "pseudo_labels", out)


def make_label(ctx: RunContext, record, folder: str, crf_iterations: int = 0) -> np.ndarray:
    """One image's pseudo-label from the maps in ``folder`` (``cams``: background plane at
    pseudo_labels.bg_threshold; ``random_walk``: at random_walk.bg_threshold), optionally refined by the
    label CRF (ignored pixels are left to the CRF, then the ignore band is applied again)."""
    cfg, source = ctx.cfg, ctx.source
    classes = source.classes
    if folder == "saliency":
        return _saliency_label(ctx, record)
    res = load_cams(cam_path(ctx, record.id, folder))
    bg = None
    if classes.background is not None:
        bg = cfg.random_walk.bg_threshold if folder == "random_walk" else cfg.pseudo_labels.bg_threshold
    label = cams_to_labels(res, classes, bg_threshold=bg, ignore_band=cfg.pseudo_labels.ignore_band)
    if crf_iterations and len(res.classes):
        from lesseg.refine.crf import crf_on_labels

        values = sorted({*np.asarray(classes.tag_indices)[res.classes].tolist(),
                         *([classes.background_index] if bg is not None else [])})  # fmt: skip
        banded = label == classes.ignore_index
        label = crf_on_labels(load_image(record.image), label, len(values), iterations=crf_iterations,
                              ignore_index=classes.ignore_index, label_values=values)  # fmt: skip
        label[banded] = classes.ignore_index
    return label


def _saliency_label(ctx: RunContext, record) -> np.ndarray:
    from PIL import Image

    from lesseg.errors import ConfigError, DataError
    from lesseg.refine.saliency import saliency_labels

    folder = ctx.cfg.pseudo_labels.saliency_dir
    classes = ctx.source.classes
    if not folder:
        raise ConfigError(
            "pseudo_labels.source=saliency needs pseudo_labels.saliency_dir (a folder of <image id>.png)"
        )
    if classes.background is None:
        raise ConfigError("pseudo_labels.source=saliency needs a dataset with a background class")
    path = Path(folder) / f"{record.id}.png"
    if not path.is_file():
        raise DataError(
            f"{path}: saliency map missing (pseudo_labels.saliency_dir holds one <image id>.png per image)"
        )
    with Image.open(path) as im:
        saliency = np.asarray(im.convert("L"))
    res = load_cams(cam_path(ctx, record.id, "cams"))
    if saliency.shape != res.cams.shape[-2:]:
        raise DataError(f"{path}: saliency map is {saliency.shape[1]}x{saliency.shape[0]}, the image "
                        f"{res.cams.shape[-1]}x{res.cams.shape[-2]}")  # fmt: skip
    return saliency_labels(res, classes, saliency)


def pseudo_label_scores(
    ctx: RunContext, cam_folder: str, write: bool = False, crf_iterations: int = 0
) -> dict:
    """Pseudo-labels from the maps in ``cam_folder`` (written to pseudo_labels/ when ``write``); their
    mIoU on the labelled pixels against the training masks, and their coverage (the labelled fraction)."""
    cfg, source = ctx.cfg, ctx.source
    classes = source.classes
    cm = ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index)
    labelled = total = 0
    for r in track(
        source.split(cfg.data.train_split), f"pseudo-labels from {cam_folder}", enabled=is_main(ctx)
    ):
        label = make_label(ctx, r, cam_folder, crf_iterations)
        if write:
            save_pseudo_label(label_path(ctx, r.id), label, classes)
        labelled += int((label != classes.ignore_index).sum())
        total += label.size
        if r.mask is not None:  # evaluation only, after the label is made
            gt = source.load_mask(r)
            keep = label != classes.ignore_index
            cm.update(label[keep], gt[keep])
    out = cm.metrics(classes.classes).to_dict() if cm.mat.sum() else {}
    out["coverage"] = labelled / max(1, total)
    return out
