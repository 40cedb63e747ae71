"""Stage `references`: what the run's numbers should be read against, computed in the same run on the same
images and written to metrics.json under ``references``, for any method.

- ``random_tags``: every pixel drawn uniformly among the image's tags (and the background class, when the
  dataset has one): what the tags alone give.
- ``largest_class``: every pixel labelled with the image's largest class by its mask.
- what the method's ``untrained_references`` add (unless ``eval.references=false``); the CAM family:
  ``untrained``, the classifier at its
  initial weights (same seed as the trained one) through the same ``cams`` and ``pseudo_labels`` steps,
  and the DeepLabv3+ at its initial weights on val (:func:`untrained_cam_pipeline`). It says how much of a
  score is the pipeline's machinery (multi-scale maps, tags, the background plane) rather than learning.

``random_tags`` and ``largest_class`` read the masks (the tags too, for val): they are diagnostics, not
baselines to claim. Rows on train compare with the CAM and pseudo-label mIoU, rows on val with the
segmenter's. Without a background class, train rows also give the mIoU over multi-tag images.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from lesseg.eval import ConfusionMatrix, record_metrics
from lesseg.pipeline import RunContext
from lesseg.predict import Predictor, protocol_of
from lesseg.stages.cams import compute_cams, score_cams
from lesseg.stages.common import device_of, is_main
from lesseg.stages.pseudo_labels import pseudo_label_scores
from lesseg.stages.segmenter import build_segmenter, split_scores

UNTRAINED_CAMS = "references/untrained_cams"


def compute_references(ctx: RunContext) -> None:
    """The cheap references on train and val, always; the method's untrained pass unless
    ``eval.references=false`` (it costs a CAM inference)."""
    out = ctx.method.untrained_references(ctx) if ctx.cfg.eval.references else {}
    if not is_main(ctx):
        return
    names = {"train": ctx.cfg.data.train_split, "val": ctx.cfg.data.val_split}
    for role, split in names.items():
        for name, scores in mask_references(ctx, split, multi=role == "train").items():
            out.setdefault(name, {})[role] = scores
    record_metrics(ctx.run_dir, "references", out)


def mask_references(ctx: RunContext, split: str, multi: bool = False) -> dict:
    """``{"random_tags": {...}, "largest_class": {...}}`` on the masks of ``split`` (see the module
    docstring); ``multi`` adds the mIoU over multi-tag images (datasets without a background class)."""
    return {name: _mask_reference(ctx, split, labeller, multi)
            for name, labeller in (("random_tags", _random_among_tags), ("largest_class", _largest_class))}  # fmt: skip


def untrained_cam_pipeline(ctx: RunContext) -> dict:
    """``{"untrained": {"cams", "pseudo_labels", "segmenter"}}``: the CAM family's classifier at its initial
    weights through the run's ``cams`` and ``pseudo_labels`` settings (on train), and its segmenter at its
    initial weights with the run's test protocol (on val). Every process computes its share of the CAMs;
    the scores come from rank 0 (others get ``{}``)."""
    cfg, source = ctx.cfg, ctx.source
    torch.manual_seed(cfg.train.seed)  # the classifier stage starts from exactly these weights
    compute_cams(ctx, ctx.method.build_model(), folder=UNTRAINED_CAMS)
    torch.manual_seed(cfg.segmenter.train.seed)
    segmenter = build_segmenter(cfg.segmenter.model, source.classes.num_classes)
    if not is_main(ctx):
        return {}
    predictor = Predictor(segmenter, source.classes, device=str(device_of(ctx)), **protocol_of(cfg.segmenter))
    return {"untrained": {
        "cams": _brief(score_cams(ctx, UNTRAINED_CAMS)),
        "pseudo_labels": _brief(pseudo_label_scores(ctx, UNTRAINED_CAMS)),
        "segmenter": _brief(split_scores(ctx, predictor)),
    }}  # fmt: skip


def _brief(m: dict) -> dict:
    """A reference's headline numbers (its per-class IoU would crowd the report)."""
    keep = ("miou", "best_threshold", "best_threshold_miou", "coverage")
    out = {k: m[k] for k in keep if k in m}
    if isinstance(m.get("multi_tag"), dict):
        out["multi_tag_miou"] = m["multi_tag"]["miou"]
    return out


def _random_among_tags(source, record, mask: np.ndarray) -> np.ndarray:
    classes = source.classes
    candidates = list(source.tags_of(record, mask) or ())
    if classes.background_index is not None:
        candidates.append(classes.background_index)
    if not candidates:
        return np.full(mask.shape, classes.ignore_index, np.int64)
    rng = np.random.default_rng(zlib.crc32(record.id.encode()))  # the same draw whatever the image order
    return np.asarray(candidates, np.int64)[rng.integers(len(candidates), size=mask.shape)]


def _largest_class(source, record, mask: np.ndarray) -> np.ndarray:
    classes = source.classes
    valid = mask[mask != classes.ignore_index]
    if valid.size == 0:
        return np.full(mask.shape, classes.ignore_index, np.int64)
    return np.full(mask.shape, np.bincount(valid).argmax(), np.int64)


def _mask_reference(ctx: RunContext, split_name: str, labeller, multi: bool) -> dict:
    source = ctx.source
    classes = source.classes
    every = ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index)
    several = ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index)
    for r in source.split(split_name):
        mask = source.load_mask(r)
        if mask is None:
            continue
        label = labeller(source, r, mask)
        every.update(label, mask)
        if len(source.tags_of(r, mask) or ()) >= 2:
            several.update(label, mask)
    out = {"miou": every.metrics(classes.classes).miou}
    if multi and classes.background is None and several.mat.sum():
        out["multi_tag_miou"] = several.metrics(classes.classes).miou
    return out
