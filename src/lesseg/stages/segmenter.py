"""Stages `segmenter` (DeepLabv3+ trained on the pseudo-labels) and `evaluate` (the method's predicting
network scored on val, for any method)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.data.imageio import load_image
from lesseg.data.splits import Supervision
from lesseg.engine.checkpoint import checked_run_files, load_checkpoint
from lesseg.engine.trainer import TrainSettings
from lesseg.errors import ConfigError
from lesseg.eval import ConfusionMatrix, record_metrics, subset_miou
from lesseg.models import create_model
from lesseg.models.backbones import normalization_of
from lesseg.pipeline import RunContext
from lesseg.predict import Predictor, protocol_of
from lesseg.progress import track
from lesseg.stages.common import device_of, is_main, train_and_save
from lesseg.stages.pseudo_labels import load_pseudo_label

#: what decides a trained segmenter besides its labels, and what decides its scores on val
SEGMENTER_TRAIN_KEYS = ("segmenter.model", "segmenter.optim", "segmenter.train", "segmenter.data")
SEGMENTER_TEST_KEYS = ("data.val_split", "segmenter.test_scales", "segmenter.test_flip",
                       "segmenter.test_crf_iterations", "segmenter.test_slide_above", "segmenter.test_window",
                       "segmenter.test_stride")  # fmt: skip


def build_segmenter(model, num_classes: int) -> torch.nn.Module:
    """The segmentation network of a ``ModelConfig`` (``segmenter.model``) with ``num_classes`` outputs."""
    return create_model(model.name, backbone=model.backbone, num_classes=num_classes,
                        output_stride=model.output_stride, norm=model.norm, weights=model.weights,
                        pretrained=model.pretrained)  # fmt: skip


def segmenter_normalization(cfg) -> dict | None:
    """The input statistics the segmenter's backbone weights expect: the classifier's with
    ``segmenter.init_from_classifier``, else its own model section's."""
    return normalization_of(cfg.model if cfg.segmenter.init_from_classifier else cfg.segmenter.model)


def trained_segmenter(cfg, classes, run_dir, device: str = "auto", normalization: dict | None = None,
                      **protocol) -> Predictor:  # fmt: skip
    """The segmenter a finished run trained (``checkpoints/segmenter_final.pt``), its input statistics
    ``normalization`` (what it trained on), with the run's test protocol (``segmenter.test_*``) unless
    ``protocol`` overrides some of it."""
    checked_run_files(run_dir, "checkpoints/segmenter_final.pt")
    seg = cfg.segmenter
    own = dataclasses.replace(seg.model, pretrained=False, weights=None)  # the run's weights, not timm's
    model = build_segmenter(own, classes.num_classes)
    model.encoder.set_normalization(normalization)
    model.load_state_dict(load_checkpoint(Path(run_dir, "checkpoints", "segmenter_final.pt"))["model"])
    return Predictor(model, classes, device=device, **protocol_of(seg, **protocol))


def init_encoder_from_classifier(ctx: RunContext, model: torch.nn.Module) -> None:
    """Copy the trained classifier's backbone weights into ``model.encoder``."""
    weights = load_checkpoint(ctx.path("checkpoints", "classifier_final.pt"))["model"]
    encoder = {k.removeprefix("encoder."): v for k, v in weights.items() if k.startswith("encoder.")}
    own = model.encoder.state_dict()
    clash = sorted(k for k in own if k not in encoder or encoder[k].shape != own[k].shape)
    if clash:
        m, s = ctx.cfg.model, ctx.cfg.segmenter.model
        raise ConfigError(
            "segmenter.init_from_classifier needs the same backbone in both networks: classifier "
            f"{m.backbone} (output stride {m.output_stride}), segmenter {s.backbone}; {len(clash)} weights "
            f"differ, e.g. {clash[0]!r}. Set segmenter.model.backbone={m.backbone} or turn the option off"
        )
    model.encoder.load_state_dict(encoder)
    model.encoder.set_normalization(segmenter_normalization(ctx.cfg))


def _step(model, batch, ctx) -> dict:
    logits = model(batch["image"])["logits"]
    return {"loss": F.cross_entropy(logits.float(), batch["mask"], ignore_index=255)}


def train_segmenter(ctx: RunContext) -> None:
    """Stage `segmenter`: DeepLabv3+ on the run's pseudo-labels (no mask is read)."""
    fit_segmenter(ctx, Supervision(masks="none"), labels=lambda r: load_pseudo_label(ctx, r.id),
                  init_from_classifier=ctx.cfg.segmenter.init_from_classifier)  # fmt: skip


def segmenter_transform(data, pad_fill: float | list[float] = 0) -> T.Compose:
    """The segmenter's training augmentation from resolved ``StageDataConfig`` settings: random rescale
    over ``scale_range``, random crop of ``crop_size`` (padding the image with ``pad_fill``), flip."""
    return T.Compose([T.RandomRescale(scale=tuple(data.scale_range)), T.RandomCrop(data.crop_size, fill=pad_fill),
                      T.RandomHorizontalFlip(), T.Normalize()])  # fmt: skip


def fit_segmenter(ctx: RunContext, supervision: Supervision, labels=None, init_from_classifier: bool = False,
                  ids: set[str] | None = None, seg=None, name: str = "segmenter",
                  pad_fill: float | list[float] = 0) -> torch.nn.Module:  # fmt: skip
    """Train ``seg.model`` with ``seg.optim/train/data`` (``seg`` a ``SegmenterConfig``, default the run's
    ``segmenter`` section) on the training split as stage ``name``, its targets the masks ``supervision``
    exposes or ``labels(record)``; ``ids`` keeps those images only. Returns the trained network."""
    cfg, source = ctx.cfg, ctx.source
    seg = seg or cfg.segmenter
    settings = TrainSettings.from_config(
        cfg, optim=seg.optim, train=seg.train, model=seg.model, data=seg.data
    )
    transform = segmenter_transform(seg.data.resolve(cfg.data), pad_fill)
    dataset = SegDataset(source, cfg.data.train_split, transform=transform, supervision=supervision,
                         seed=seg.train.seed, labels=labels)  # fmt: skip
    if ids is not None:
        dataset.records = [r for r in dataset.records if r.id in ids]
    torch.manual_seed(seg.train.seed)
    model = build_segmenter(seg.model, source.classes.num_classes)
    if init_from_classifier:
        init_encoder_from_classifier(ctx, model)
    return train_and_save(ctx, name, settings, model, _step, dataset)


def evaluate_segmenter(ctx: RunContext) -> None:
    """Stage `evaluate`: the method's inference model (its network and test protocol) on the val masks;
    with a base/novel split (weak-shot) also the mIoU of each and their harmonic mean."""
    predictor = ctx.method.inference_model(ctx.run_dir, device=str(device_of(ctx)))
    out = split_scores(ctx, predictor)
    split = ctx.method.splits.base_novel if ctx.method.regime == "weak_shot" else None
    if split is not None:
        names = ctx.source.classes.classes
        out["subsets"] = subset_miou(out, {"base": [names[i] for i in split.base],
                                           "novel": [names[i] for i in split.novel]})  # fmt: skip
    if is_main(ctx):
        out.update(split=ctx.cfg.data.val_split, test_scales=list(predictor.scales), test_flip=predictor.flip,
                   test_crf_iterations=predictor.crf_iterations)  # fmt: skip
        record_metrics(ctx.run_dir, "segmenter", out)


def split_scores(ctx: RunContext, predictor: Predictor, split: str | None = None) -> dict:
    """mIoU of ``predictor`` on the masks of ``split`` (default: the val split)."""
    source = ctx.source
    classes = source.classes
    cm = ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index)
    split = split or ctx.cfg.data.val_split
    for r in track(source.split(split), f"scoring {split}", enabled=is_main(ctx)):
        if r.mask is not None:
            cm.update(predictor.predict(load_image(r.image)), source.load_mask(r))
    return cm.metrics(classes.classes).to_dict()
