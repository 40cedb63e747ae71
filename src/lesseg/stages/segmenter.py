"""Stages `segmenter` (DeepLabv3+ trained on the pseudo-labels) and `evaluate` (its mIoU on val)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.data.splits import Supervision
from lesseg.engine import Trainer
from lesseg.eval import ConfusionMatrix, record_metrics
from lesseg.models import create_model
from lesseg.pipeline import RunContext
from lesseg.stages.common import device_of, load_weights, save_weights, source_of
from lesseg.stages.pseudo_labels import load_pseudo_label


def segmenter_config(cfg):
    """The run's config with the segmenter's model, optimiser and schedule in place (for the Trainer)."""
    seg = cfg.segmenter
    return dataclasses.replace(cfg, model=seg.model, optim=seg.optim, train=seg.train)


def build_segmenter(cfg, num_classes: int) -> torch.nn.Module:
    m = cfg.segmenter.model
    return create_model(m.name, backbone=m.backbone, num_classes=num_classes, output_stride=m.output_stride,
                        norm=m.norm, weights=m.weights, pretrained=m.pretrained)  # fmt: skip


def _step(model, batch, ctx) -> dict:
    logits = model(batch["image"])["logits"]
    return {"loss": F.cross_entropy(logits.float(), batch["mask"], ignore_index=255)}


def train_segmenter(ctx: RunContext) -> None:
    cfg, source = ctx.cfg, source_of(ctx)
    seg_cfg = segmenter_config(cfg)
    d = cfg.data
    transform = T.Compose([T.RandomRescale(scale=tuple(d.scale_range)), T.RandomCrop(d.crop_size),
                           T.RandomHorizontalFlip(), T.Normalize()])  # fmt: skip
    dataset = SegDataset(source, d.train_split, transform=transform, supervision=Supervision(masks="none"),
                         seed=seg_cfg.train.seed, labels=lambda r: load_pseudo_label(ctx, r.id))  # fmt: skip
    torch.manual_seed(seg_cfg.train.seed)
    model = build_segmenter(cfg, source.classes.num_classes)
    trained = Trainer(seg_cfg, model, _step, dataset, ctx.run_dir, name="segmenter", env=ctx.env).fit()
    save_weights(ctx, "segmenter", trained)


@torch.inference_mode()
def predict_logits(model, image: torch.Tensor, scales=(1.0,), flip: bool = False) -> torch.Tensor:
    """Class scores [N,C,H,W] of normalised images, averaged over scales (and flips) at the input size."""
    size = image.shape[-2:]
    total = 0
    for s in scales:
        x = image if s == 1.0 else F.interpolate(image, scale_factor=s, mode="bilinear", align_corners=False)
        batch = torch.cat([x, x.flip(-1)]) if flip else x
        out = F.interpolate(model(batch)["logits"].float(), size=size, mode="bilinear", align_corners=False)
        prob = out.softmax(1)
        total = total + (prob[: len(x)] + prob[len(x) :].flip(-1) if flip else prob)
    return total


def evaluate_segmenter(ctx: RunContext) -> None:
    cfg, source = ctx.cfg, source_of(ctx)
    classes = source.classes
    device = device_of(ctx)
    model = load_weights(ctx, "segmenter", build_segmenter(cfg, classes.num_classes)).to(device).eval()
    dataset = SegDataset(source, cfg.data.val_split, transform=T.Compose([T.Normalize()]))
    cm = ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index)
    seg = cfg.segmenter
    for sample in dataset:
        if not sample["has_mask"]:
            continue
        scores = predict_logits(model, sample["image"][None].to(device), seg.test_scales, seg.test_flip)
        cm.update(scores.argmax(1)[0].cpu(), sample["mask"])
    if ctx.env is None or ctx.env.is_main:
        out = cm.metrics(classes.classes).to_dict()
        out.update(split=cfg.data.val_split, test_scales=list(seg.test_scales), test_flip=seg.test_flip)
        record_metrics(ctx.run_dir, "segmenter", out)
