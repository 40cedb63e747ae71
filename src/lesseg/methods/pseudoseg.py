"""PseudoSeg (Zou et al., "PseudoSeg: Designing Pseudo Labels for Semantic Segmentation", ICLR 2021;
official code googleinterns/wss, TensorFlow 1.15): a few pixel masks plus unlabeled (or tagged) images,
one training stage.

One network (:class:`~lesseg.models.pseudoseg.PseudoSegNet`: DeepLabv3+, a classifier and the SGC head).
Each step draws a labeled batch and an unlabeled batch (:class:`~lesseg.data.semi.LabeledUnlabeledPairs`)
and minimises ``L = L_s + L_x + L_sa + L_u`` (weights ``method.*_weight``, all 1 officially):

* ``L_s``: pixel cross-entropy of the decoder on the labeled crops;
* ``L_x``: sigmoid BCE of the classifier: on the labeled crops with tags read from their augmented masks
  (semi regime), or on the unlabeled images' weak views with their tags (``method.weak=true``);
* ``L_sa``: pixel cross-entropy of the SGC head on the labeled crops (its Grad-CAMs gated by their tags);
* ``L_u``: soft cross-entropy between the pseudo-label of the weak view (:func:`pseudo_label`: decoder
  and SGC fused, sharpened; constant) and the decoder's prediction on the strong view, over the pixels
  neither padded nor cut out (:func:`consistency_loss`).

The pipeline is ``train``, ``evaluate`` (val, single scale, no flip: the official protocol),
``references`` (the supervised-only baseline on the labeled images alone, the official ``train_sup.py``,
and the fully supervised upper bound where every training image has a mask: the same network, recipe and
number of steps, plain DeepLabv3+ trained on pixel masks) and ``report``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from lesseg.config import MethodConfig, SegmenterConfig, StageDataConfig
from lesseg.config import config_field as _f
from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.data.semi import MEAN_PIXEL, LabeledUnlabeledPairs, WeakStrongViews
from lesseg.data.splits import Supervision
from lesseg.engine.checkpoint import checked_run_files, load_checkpoint
from lesseg.engine.trainer import TrainSettings
from lesseg.errors import ConfigError
from lesseg.eval import read_metrics, record_metrics
from lesseg.methods.base import Method
from lesseg.models import create_model
from lesseg.models.backbones import normalization_of
from lesseg.models.pseudoseg import resize_valid
from lesseg.pipeline import Stage
from lesseg.predict import Predictor, protocol_of
from lesseg.registry import register_method
from lesseg.stages import classifier_keys
from lesseg.stages.common import device_of, is_main, train_and_save
from lesseg.stages.references import compute_references
from lesseg.stages.report import init_note, write_run_report
from lesseg.stages.segmenter import (
    SEGMENTER_TEST_KEYS,
    evaluate_segmenter,
    fit_segmenter,
    segmenter_transform,
    split_scores,
)

SOURCES = ("fused", "decoder", "sgc")
#: the official cutout: a 100-pixel square at 513-pixel crops, scaled with the crop
CUTOUT_AT_513 = 100


# ---------------------------------------------------------------------------------------------- losses


def pseudo_label(decoder_logits: torch.Tensor, sgc_logits: torch.Tensor, source: str = "fused",
                 gamma: float = 0.5, temperature: float = 0.5) -> torch.Tensor:  # fmt: skip
    """PseudoSeg's soft pseudo-label (Sec. 3.2, "calibrated fusion", and Eq. 2's sharpening).

    Both ``[N, C, h, w]`` logit maps are divided by one scalar, the root mean square over both tensors
    (``logit_norm`` in the official code), then softmaxed; ``fused`` averages them with weight ``gamma`` on
    the decoder (official 0.5), ``decoder`` / ``sgc`` take one alone (the ablations). Sharpening:
    ``p^(1/T) / sum_c p^(1/T)`` (T = 0.5 official; 1 leaves p as it is). No gradient.

    Example:
        >>> d = torch.tensor([[[[2.0]], [[0.0]]]])  # one pixel, two classes
        >>> s = torch.tensor([[[[0.0]], [[2.0]]]])
        >>> pseudo_label(d, s, temperature=1.0).flatten().tolist()
        [0.5, 0.5]
    """
    if source not in SOURCES:
        raise ValueError(f"method.pseudo_label={source!r} is not valid; use one of {SOURCES}")
    if not temperature > 0:
        raise ValueError(f"method.temperature must be > 0, got {temperature}")
    with torch.no_grad():
        d, s = decoder_logits.float(), sgc_logits.float()
        scale = torch.cat([d.flatten(), s.flatten()]).square().mean().sqrt().clamp_min(1e-12)
        pd, ps = (d / scale).softmax(1), (s / scale).softmax(1)
        p = {"fused": gamma * pd + (1 - gamma) * ps, "decoder": pd, "sgc": ps}[source]
        if temperature != 1:
            p = p.clamp_min(1e-12).pow(1 / temperature)
            p = p / p.sum(1, keepdim=True)
    return p


def consistency_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                     confidence: float = 0.0) -> torch.Tensor:  # fmt: skip
    """``L_u``: soft cross-entropy ``-sum_c t_c log softmax(z)_c`` of the strong view's ``logits``
    against the constant ``target``, summed over the ``valid`` pixels (``[N, h, w]`` bool) whose target's
    top probability is at least ``confidence`` (official 0), divided by their number.

    Example:
        >>> z = torch.zeros(1, 2, 1, 2)                              # two pixels, uniform predictions
        >>> t = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
        >>> round(consistency_loss(z, t, torch.tensor([[[True, False]]])).item(), 4)  # log 2
        0.6931
    """
    keep = valid & (target.amax(1) >= confidence)
    per_pixel = -(target * F.log_softmax(logits.float(), dim=1)).sum(1)
    return (per_pixel * keep).sum() / keep.sum().clamp_min(1)


def consistency_ramp(progress: float, rampup: float) -> float:
    """``L_u``'s weight factor at ``progress`` (0..1 of training): linear from 0 to 1 over the first
    ``rampup`` of training, 1 after (``rampup`` 0: always 1, the official constant weight).

    Example:
        >>> consistency_ramp(0.1, 0.4), consistency_ramp(0.5, 0.4), consistency_ramp(0.0, 0.0)
        (0.25, 1.0, 1.0)
    """
    return 1.0 if rampup <= 0 else min(1.0, progress / rampup)


def tags_of_masks(masks: torch.Tensor, tag_indices: tuple[int, ...], ignore_index: int) -> torch.Tensor:
    """``[N, K]`` multi-hot tags of the classes present in each ``[N, H, W]`` (augmented) mask, one column
    per tag class: the official image labels of the labeled crops.

    Example:
        >>> tags_of_masks(torch.tensor([[[0, 2], [255, 2]]]), (1, 2), 255).tolist()
        [[0.0, 1.0]]
    """
    n, c = masks.shape[0], max(tag_indices) + 1
    valid = masks != ignore_index
    flat = torch.where(valid, masks, torch.full_like(masks, c)).flatten(1)
    present = torch.zeros(n, c + 1, device=masks.device).scatter_(1, flat, 1.0)
    return present[:, list(tag_indices)]


# ---------------------------------------------------------------------------------------------- config


@dataclass
class PseudoSegConfig(MethodConfig):
    """The ``method`` section of PseudoSeg (facts of the official code: ``../shared/reference/methods.md``
    section 3).

    * ``weak``: the unlabeled images keep their tags (the paper's image-level-label variant): they train
      ``L_x`` and gate the weak view's Grad-CAMs. Their tags are the whole image's (the official code reads
      them from the augmented crop's mask, which an unlabeled image does not expose here).
    * ``unlabeled``: ``rest`` (the training images that are not labeled) or a split name whose every image
      is unlabeled (VOC: ``train_aug``, which contains the labeled ``train`` images, as officially).
    * ``unlabeled_per_labeled``: unlabeled images per labeled one in a step (official 64 + 64: 1);
      ``data.batch_size`` is the labeled batch.
    * ``epoch_size``: unlabeled images drawn per epoch (0, default: each once). The official runs a
      fixed number of steps at every labeled fraction (30k on VOC, whose unlabeled set, train_aug, does
      not change with it); where the unlabeled images are the rest of train, one pass shrinks as the
      labeled fraction grows, and a fixed ``epoch_size`` (e.g. the train split's size) keeps the steps,
      and so the comparison across fractions, equal.
    * ``pseudo_label``: ``fused`` (official), ``decoder`` or ``sgc`` (ablations); ``gamma``: the decoder's
      weight in the fusion (0.5); ``temperature``: sharpening (0.5; 1 = off); ``confidence``: pixels whose
      pseudo-label's top probability is below it carry no ``L_u`` (official 0).
    * ``cutout``: side of the strong view's cutout square in pixels; 0 = the official 100 at 513 crops,
      scaled with ``data.crop_size``; -1 = none.
    * ``jitter``: the strong view's colour jitter (brightness, contrast, saturation, hue).
    * ``*_weight``: the four losses' weights (official 1 each).
    * ``consistency_rampup``: the fraction of training over which ``L_u``'s weight rises linearly from 0 to
      ``consistency_weight`` (0, default: constant from the first step, as officially). A short run starts
      its consistency targets from an untrained decoder; a ramp (common in semi-supervised learning,
      e.g. Mean Teacher's) lets the supervised terms shape it first.
    * ``key_dim``: SGC's key and query width (128).
    * ``upper_bound``: the ``references`` stage also trains the fully supervised upper bound (where every
      training image has a mask); off, only the supervised-only baseline (a benchmark that has the bound
      from another run). It does not decide the trained network.
    """

    #: settings that do not decide the trained network (left out of the ``train`` stage's hash)
    INFERENCE_ONLY: ClassVar[tuple[str, ...]] = ("upper_bound",)

    weak: bool = False
    unlabeled: str = "rest"
    unlabeled_per_labeled: int = _f(1, min=1)
    epoch_size: int = _f(0, min=0)
    pseudo_label: str = _f("fused", choices=SOURCES)
    gamma: float = _f(0.5, min=0)
    temperature: float = _f(0.5, min=1e-3)
    confidence: float = _f(0.0, min=0)
    cutout: int = _f(0, min=-1)
    jitter: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.25)
    supervised_weight: float = _f(1.0, min=0)
    classification_weight: float = _f(1.0, min=0)
    sgc_weight: float = _f(1.0, min=0)
    consistency_weight: float = _f(1.0, min=0)
    consistency_rampup: float = _f(0.0, min=0)
    key_dim: int = _f(128, min=1)
    upper_bound: bool = True


# ---------------------------------------------------------------------------------------------- method


@register_method("pseudoseg", config=PseudoSegConfig)
class PseudoSegMethod(Method):
    """See the module docstring. The network: :class:`~lesseg.models.pseudoseg.PseudoSegNet`
    (``model.name=pseudoseg``) on ``model.backbone``."""

    regimes = ("semi",)
    trains = "train"

    def __init__(self, cfg, source=None, *, classes=None):
        super().__init__(cfg, source, classes=classes)
        if cfg.model.name != "pseudoseg":
            raise ConfigError(f"model.name={cfg.model.name!r}: method pseudoseg trains model.name=pseudoseg "
                              "(DeepLabv3+ with its classifier and SGC heads; the references train plain "
                              "deeplabv3plus themselves)")  # fmt: skip
        if source is not None:
            self._check_data()

    # ---- data ------------------------------------------------------------------------------------

    def _check_data(self) -> None:
        m, d = self.cfg.method, self.cfg.data
        labeled = self.splits.labeled
        unlabeled = self.unlabeled_ids()
        if not unlabeled:
            raise ConfigError(f"data.labeled={d.labeled} labels every image of split {d.train_split!r}: "
                              "PseudoSeg needs unlabeled images too (a fraction below 1, or "
                              "method.unlabeled=<another split>)")  # fmt: skip
        if len(labeled.labeled) < d.batch_size:
            raise ConfigError(f"data.labeled={d.labeled} leaves {len(labeled.labeled)} labeled image(s), fewer "
                              f"than one labeled batch (data.batch_size={d.batch_size})")  # fmt: skip
        step = m.unlabeled_per_labeled * d.batch_size
        if 0 < m.epoch_size < step:
            raise ConfigError(f"method.epoch_size={m.epoch_size} is less than one step's unlabeled images "
                              f"({step}: data.batch_size x method.unlabeled_per_labeled); use 0 (one pass "
                              f"over the unlabeled images) or at least {step}")  # fmt: skip
        if m.weak:
            by_id = {r.id: r for r in self.source.split(self._unlabeled_split())}
            untagged = [i for i in unlabeled if by_id[i].tags is None and by_id[i].mask is None]
            if untagged:
                raise ConfigError(f"method.weak=true needs tags of the unlabeled images; {len(untagged)} have "
                                  f"none (no tag and no mask), e.g. {untagged[0]!r}; set method.weak=false")  # fmt: skip

    @classmethod
    def extra_splits(cls, cfg) -> dict[str, str]:
        """The unlabeled split, when it is not the training split's rest (VOC's ``train_aug``)."""
        return {} if cfg.method.unlabeled == "rest" else {"method.unlabeled": cfg.method.unlabeled}

    def _unlabeled_split(self) -> str:
        u = self.cfg.method.unlabeled
        return self.cfg.data.train_split if u == "rest" else u

    def unlabeled_ids(self) -> list[str]:
        """The unlabeled images: the training split's unlabeled ones, or every image of another split."""
        u = self.cfg.method.unlabeled
        if u == "rest":
            return list(self.splits.labeled.unlabeled)
        return [r.id for r in self.source.split(u)]  # an unknown split: the run's data check names it

    def cutout_size(self) -> int:
        c = self.cfg.method.cutout
        return 0 if c < 0 else c or max(1, round(CUTOUT_AT_513 * self.cfg.data.crop_size / 513))

    def pairs_dataset(self) -> LabeledUnlabeledPairs:
        """What the training stage iterates: labeled crops with unlabeled weak/strong views."""
        cfg, m = self.cfg, self.cfg.method
        d = cfg.data
        # the reference segmenters' augmentation (official: rescale, crop padded with the mean pixel, flip);
        # the unlabeled crops stay uint8 until their two views are made
        transform = segmenter_transform(d, MEAN_PIXEL)
        labeled_ids = set(self.splits.labeled.labeled)
        labeled = SegDataset(self.source, d.train_split, transform=transform,
                             supervision=Supervision.semi(self.splits.labeled, tags=False), return_params=True)  # fmt: skip
        labeled.records = [r for r in labeled.records if r.id in labeled_ids]
        unlabeled_ids = set(self.unlabeled_ids())
        unlabeled = SegDataset(self.source, self._unlabeled_split(), transform=T.Compose(transform.transforms[:-1]),
                               supervision=Supervision(masks="none", tags=m.weak), return_params=True)  # fmt: skip
        unlabeled.records = [r for r in unlabeled.records if r.id in unlabeled_ids]
        views = WeakStrongViews(self.cutout_size(), tuple(m.jitter))
        return LabeledUnlabeledPairs(labeled, unlabeled, views, m.unlabeled_per_labeled, cfg.train.seed,
                                     m.epoch_size)  # fmt: skip

    # ---- training --------------------------------------------------------------------------------

    def build_model(self, m=None) -> torch.nn.Module:
        """PseudoSegNet from ``model.*`` (or the ``ModelConfig`` ``m``)."""
        m = m or self.cfg.model
        return create_model("pseudoseg", backbone=m.backbone, num_classes=self.classes.num_classes,
                            background_index=self.classes.background_index, output_stride=m.output_stride,
                            norm=m.norm, weights=m.weights, pretrained=m.pretrained, key_dim=self.cfg.method.key_dim)  # fmt: skip

    def training_step(self, model, batch, ctx) -> dict:
        m, classes = self.cfg.method, self.classes
        ignore = classes.ignore_index
        tags = tags_of_masks(batch["mask"], classes.tag_indices, ignore)
        weak, strong, valid = (batch[k].flatten(0, 1) for k in ("weak", "strong", "weak_valid"))
        weak_tags = batch["weak_tags"].flatten(0, 1)[:, list(classes.tag_indices)] if m.weak else None
        out = model(batch["image"], labeled_tags=tags, labeled_valid=batch["valid"], weak=weak, strong=strong,
                    weak_valid=valid, weak_tags=weak_tags, classify_weak=m.weak)  # fmt: skip
        mask = batch["mask"]
        l_s = F.cross_entropy(out["logits"].float(), mask, ignore_index=ignore)
        l_sa = F.cross_entropy(out["sgc_logits"].float(), mask, ignore_index=ignore)
        if m.weak:
            l_x = F.binary_cross_entropy_with_logits(out["weak_class_logits"].float(), weak_tags)
        else:
            l_x = F.binary_cross_entropy_with_logits(out["class_logits"].float(), tags)
        target = pseudo_label(out["weak_decoder_logits"], out["weak_sgc_logits"], m.pseudo_label, m.gamma,
                              m.temperature)  # fmt: skip
        strong_logits = out["strong_logits"]
        valid_s4 = resize_valid(valid, strong_logits.shape[-2:])
        l_u = consistency_loss(strong_logits, target, valid_s4, m.confidence)
        loss = (m.supervised_weight * l_s + m.classification_weight * l_x + m.sgc_weight * l_sa
                + consistency_ramp(ctx.progress, m.consistency_rampup) * m.consistency_weight * l_u)  # fmt: skip
        return {"loss": loss, "supervised": l_s.detach(), "classification": l_x.detach(), "sgc": l_sa.detach(),
                "consistency": l_u.detach()}  # fmt: skip

    # ---- the pipeline ----------------------------------------------------------------------------

    def stages(self) -> list:
        train_keys = classifier_keys(self.cfg)
        return [
            Stage("train", self.train, train_keys),
            Stage("evaluate", evaluate_segmenter, SEGMENTER_TEST_KEYS, ("train",)),
            Stage(
                "references",
                self.references,
                (*train_keys, "data.val_split", "eval.references", "method.upper_bound"),
            ),  # fmt: skip
            Stage("report", write_run_report, ("eval.gallery",), ("evaluate", "references")),
        ]

    def train(self, ctx) -> None:
        cfg = ctx.cfg
        torch.manual_seed(cfg.train.seed)
        settings = TrainSettings.from_config(cfg)
        train_and_save(ctx, "train", settings, self.build_model(), self.training_step, self.pairs_dataset())

    def steps(self) -> int:
        """Optimiser steps of the PseudoSeg training (an epoch: ``method.epoch_size`` unlabeled draws, by
        default one pass over the unlabeled images)."""
        d, m = self.cfg.data, self.cfg.method
        items = (m.epoch_size or len(self.unlabeled_ids())) // m.unlabeled_per_labeled
        return items // d.batch_size * self.cfg.train.epochs

    def reference_recipe(self, images: int) -> SegmenterConfig:
        """Plain DeepLabv3+ with the run's backbone, optimiser and batch, trained on ``images`` masked
        images for as many steps as PseudoSeg (rounded up to whole epochs)."""
        cfg = self.cfg
        per_epoch = max(1, images // cfg.data.batch_size)
        epochs = math.ceil(self.steps() / per_epoch)
        model = dataclasses.replace(cfg.model, name="deeplabv3plus")
        return SegmenterConfig(model=model, optim=cfg.optim, train=dataclasses.replace(cfg.train, epochs=epochs),
                               data=StageDataConfig(), test_scales=cfg.segmenter.test_scales)  # fmt: skip

    def references(self, ctx) -> None:
        """The mask references of every run, and (unless ``eval.references=false``) the supervised-only
        baseline and, where every training image has a mask, the fully supervised upper bound, each
        trained here and scored on val (``references/supervised_only``, ``references/upper_bound``)."""
        compute_references(ctx)
        if not ctx.cfg.eval.references:
            return
        labeled = self.splits.labeled
        out = {}
        runs = [("supervised_only", set(labeled.labeled), Supervision.semi(labeled, tags=False))]
        train = ctx.source.split(ctx.cfg.data.train_split)
        if self.cfg.method.upper_bound and all(r.mask is not None for r in train):
            runs.append(("upper_bound", None, Supervision(masks="all", tags=False)))
        for name, ids, supervision in runs:
            recipe = self.reference_recipe(len(ids) if ids is not None else len(train))
            net = fit_segmenter(ctx, supervision, ids=ids, seg=recipe, name=name, pad_fill=MEAN_PIXEL)
            if is_main(ctx):
                net.encoder.set_normalization(normalization_of(ctx.cfg.model))
                predictor = Predictor(
                    net, self.classes, device=str(device_of(ctx)), **protocol_of(ctx.cfg.segmenter)
                )
                out[name] = {"val": split_scores(ctx, predictor), "epochs": recipe.train.epochs}
        if is_main(ctx):
            record_metrics(
                ctx.run_dir, "references", {**read_metrics(ctx.run_dir).get("references", {}), **out}
            )

    # ---- what the pipeline hands on ----------------------------------------------------------------

    def inference_model(self, run_dir: str | Path, device: str = "auto", **protocol) -> Predictor:
        """The trained network (``checkpoints/train_final.pt``) with the run's test protocol
        (``segmenter.test_*``: single scale, no flip by default, the official one)."""
        checked_run_files(run_dir, "checkpoints/train_final.pt")
        own = dataclasses.replace(self.cfg.model, pretrained=False, weights=None)
        net = self.build_model(own)  # the run's weights, not the initial ones
        net.encoder.set_normalization(normalization_of(self.cfg.model))
        net.load_state_dict(load_checkpoint(Path(run_dir, "checkpoints", "train_final.pt"))["model"])
        return Predictor(net, self.classes, device=device, **protocol_of(self.cfg.segmenter, **protocol))

    def report_notes(self, ctx) -> list[str]:
        m, labeled = ctx.cfg.method, self.splits.labeled
        regime = (
            "tags of the unlabeled images (weak)" if m.weak else "no labels of the unlabeled images (semi)"
        )
        return [f"{init_note('network', ctx.cfg.model)}; {len(labeled.labeled)} labeled images "
                f"({ctx.cfg.data.labeled}), {len(self.unlabeled_ids())} unlabeled, {regime}.",
                f"pseudo-labels: {m.pseudo_label}, T={m.temperature}; the references are plain DeepLabv3+ on "
                "masks with the same backbone, optimiser and steps."]  # fmt: skip
