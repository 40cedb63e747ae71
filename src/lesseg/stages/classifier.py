"""Stage `classifier`: train the method's network on image-level tags (never a mask, unless the official
Puzzle-CAM checkpoint selection is asked for: ``method.select_by_train_masks``)."""

from __future__ import annotations

import numpy as np
import torch

from lesseg.data.dataset import SegDataset
from lesseg.data.imageio import load_image
from lesseg.engine.checkpoint import load_checkpoint, save_checkpoint
from lesseg.engine.distributed import barrier
from lesseg.engine.trainer import TrainSettings
from lesseg.eval import ConfusionMatrix, record_metrics
from lesseg.pipeline import RunContext
from lesseg.refine import cams_to_labels, infer_cams
from lesseg.stages.common import device_of, is_main, train_and_save


def train_classifier(ctx: RunContext) -> None:
    cfg = ctx.cfg
    method = ctx.method
    dataset = SegDataset(ctx.source, cfg.data.train_split, transform=method.train_transform(),
                         supervision=method.supervision(), seed=cfg.train.seed)  # fmt: skip
    dataset = method.train_dataset(dataset)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every process
    model = method.build_model()
    settings = TrainSettings.from_config(cfg, optim=method.optim_config())
    epoch_end = pick = None
    if getattr(cfg.method, "select_by_train_masks", False):
        epoch_end, pick = _best_epoch_by_train_masks(ctx, settings.key + ctx.inputs_key)
    train_and_save(ctx, "classifier", settings, model, method.training_step, dataset, epoch_end, pick)


def train_mask_miou(ctx: RunContext, model: torch.nn.Module) -> float:
    """The official Puzzle-CAM selection score: CAMs of the training images' top-left ``data.crop_size``
    crops (one scale, no flip) against their masks; the best mIoU over ``eval.bg_sweep`` with a background
    class, the argmax's mIoU without one."""
    cfg, source = ctx.cfg, ctx.source
    classes = source.classes
    output_of = {c: k for k, c in enumerate(classes.tag_indices)}
    thresholds = list(cfg.eval.bg_sweep) if classes.background is not None else [None]
    cms = {t: ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index) for t in thresholds}
    crop = cfg.data.crop_size
    records = [r for r in source.split(cfg.data.train_split) if r.mask is not None]
    for start in range(0, len(records), 32):
        part = records[start : start + 32]
        images = [np.ascontiguousarray(load_image(r.image)[:crop, :crop]) for r in part]
        tags = [[output_of[c] for c in (source.tags_of(r) or ())] for r in part]
        results = infer_cams(model, images, tags, scales=(1.0,), flip=False, batch_size=cfg.cams.batch_size,
                             device=device_of(ctx))  # fmt: skip
        for r, res in zip(part, results):
            gt = source.load_mask(r)[:crop, :crop]
            for t, cm in cms.items():
                cm.update(cams_to_labels(res, classes, bg_threshold=t), gt)
    return max(cm.metrics(classes.classes).miou for cm in cms.values())


def _best_epoch_by_train_masks(ctx: RunContext, key: str):
    """``epoch_end`` scoring each epoch into checkpoints/classifier_best.pt (kept across a resume when it
    was written by the same training run), and ``pick`` loading the best epoch's weights at the end."""
    path = ctx.path("checkpoints", "classifier_best.pt")

    def best() -> dict | None:
        ckpt = load_checkpoint(path) if path.is_file() else None
        return ckpt if ckpt is not None and ckpt.get("resume_key") == key else None

    def epoch_end(model: torch.nn.Module, epoch: int) -> None:
        if is_main(ctx):
            score = train_mask_miou(ctx, model)
            kept = best()
            if kept is None or score > kept["train_mask_miou"]:
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                save_checkpoint(path, {"model": state, "train_mask_miou": score, "epoch": epoch,
                                       "resume_key": key})  # fmt: skip
        if ctx.env is not None:
            barrier(ctx.env)

    def pick(trained: torch.nn.Module) -> torch.nn.Module:
        kept = best()
        if kept is None:
            return trained
        trained.load_state_dict(kept["model"])
        if is_main(ctx):
            record_metrics(ctx.run_dir, "classifier_selection", {
                "by": "train masks (method.select_by_train_masks)", "epoch": kept["epoch"],
                "train_mask_miou": kept["train_mask_miou"],
            })  # fmt: skip
        return trained

    return epoch_end, pick
