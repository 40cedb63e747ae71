"""SimFormer's method object, its ``method`` config section and its pipeline (facts of the official code:
``../shared/reference/methods.md`` section 4).

Pipeline: ``supervision`` (the base/novel split, ``data.novel``), ``train`` (stage one: MaskFormer with the
weak-shot set losses and the complementary loss, plus, with ``method.crosim``, SimNet and its distillation
on image pairs), then with ``method.retrain`` ``pseudo_labels`` (stage one's predictions on train: novel
labels where the predicted class is one of the image's novel tags, base pixels from the base masks, the rest
ignore) and ``retrain`` (the same network from its initial weights on those labels, every class with masks,
no complementary loss), ``evaluate`` (val: mIoU, base and novel mIoU; ``stage_one`` too when retraining),
``references`` and ``report``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from lesseg.config import MethodConfig
from lesseg.config import config_field as _f
from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.data.imageio import load_image, load_label_png
from lesseg.data.pairs import PARTNER_SUFFIX, WeakShotPairDataset
from lesseg.data.semi import WithValid
from lesseg.data.splits import Supervision
from lesseg.engine.checkpoint import checked_run_files, load_checkpoint
from lesseg.engine.trainer import TrainSettings
from lesseg.errors import ConfigError
from lesseg.eval import record_metrics, subset_miou
from lesseg.methods.base import Method
from lesseg.methods.simformer.crosim import base_pair_labels, sample_pair_points
from lesseg.methods.simformer.losses import balanced_pair_bce, set_losses, similarity_distillation_loss
from lesseg.methods.simformer.references import train_references
from lesseg.models import create_model
from lesseg.models.backbones import normalization_of
from lesseg.models.maskformer import QUERY_INITS
from lesseg.pipeline import Stage
from lesseg.predict import Predictor, protocol_of
from lesseg.progress import track
from lesseg.refine import save_pseudo_label
from lesseg.registry import register_method
from lesseg.stages import classifier_keys
from lesseg.stages.common import device_of, is_main, train_and_save
from lesseg.stages.report import init_note, write_run_report
from lesseg.stages.segmenter import SEGMENTER_TEST_KEYS, evaluate_segmenter, split_scores

NOVEL_TAGS = ("image", "crop")
DISTILL_LOSSES = ("cce", "ce")
#: SimFormer's crops are padded with this grey (detectron2's pad value 128), on the uint8 scale
PAD_FILL = 128


@dataclass
class SimFormerConfig(MethodConfig):
    """The ``method`` section of SimFormer.

    * ``crosim``: pixel-pixel similarity transfer (SimNet on image pairs sharing a class, distilled onto
      the novel classes' score vectors); off: stage one is proposal-pixel transfer and the complementary
      loss alone (the paper's ``sK_seg`` configs).
    * ``retrain``: stage two (pseudo-labels on train, then retraining; on, as the paper's best numbers).
    * ``novel_tags``: where a training crop's novel targets come from. ``image`` (default): the image's
      novel tags, image-level labels as the weak-shot setting defines them, so no novel pixel is ever read
      by training; ``crop`` (the official code): the novel classes visible in the augmented crop, read from
      its mask, which tells training which novel classes each crop holds.
    * ``num_queries``, ``dec_layers``, ``hidden_dim``, ``heads``, ``ffn_dim``, ``dropout``, ``mask_dim``:
      MaskFormer (100, 6, 256, 8, 2048, 0.1, 256 officially); ``simnet_width`` (256).
    * ``query_init``: ``zeros`` (default, MaskFormer's: the queries start from zero) or ``learned``
      (Mask2Former's learned query features; see :class:`~lesseg.models.maskformer.MaskFormer`).
    * ``no_object_weight`` (0.1), ``focal_weight`` (20), ``dice_weight`` (1): the set losses;
      ``mask_loss``: ``focal`` (default: what the official code computes, alpha 0.25, gamma 2) or ``bce``
      (what the paper and the configs' names say), weighted by ``focal_weight`` either way;
      ``complementary_weight``: 0.20 (ADE20K), 0.15 (COCO-Stuff).
    * ``similarity_weight`` (1.0): SimNet's balanced BCE on base-pixel pairs; ``distill_weight`` (0.5
      ADE20K; 0.1 COCO-Stuff) and ``distill_loss`` (``cce``, the hinge; ``ce``): the distillation.
    * ``points`` (100 per image), ``common_fraction`` (0.8: the share drawn from a base class both images
      show).
    * ``upper_bound``: the ``references`` stage trains the fully supervised upper bound (every class with
      masks, the same network and recipe as the retraining).
    * ``baseline_cams``: the weak-supervision baseline of the ``references`` stage, base masks plus novel
      pseudo-labels from the CAM pipeline through the same network and recipe: a CAM-family config file
      (e.g. ``configs/cam/msrc21_imagenet.yaml``: its classifier and CAM settings, trained in the run on
      the run's data) or a finished CAM-family run folder whose ``cams/`` it reads (one classifier serves
      every base/novel split: it saw tags only). "" = no such baseline.
    """

    #: settings that do not decide the trained network (left out of the ``train`` stage's hash)
    INFERENCE_ONLY: ClassVar[tuple[str, ...]] = ("upper_bound", "baseline_cams")

    crosim: bool = True
    retrain: bool = True
    novel_tags: str = _f("image", choices=NOVEL_TAGS)
    num_queries: int = _f(100, min=1)
    dec_layers: int = _f(6, min=1)
    hidden_dim: int = _f(256, min=2)
    heads: int = _f(8, min=1)
    ffn_dim: int = _f(2048, min=1)
    dropout: float = _f(0.1, min=0)
    query_init: str = _f("zeros", choices=QUERY_INITS)
    mask_dim: int = _f(256, min=1)
    simnet_width: int = _f(256, min=1)
    no_object_weight: float = _f(0.1, min=0)
    mask_loss: str = _f("focal", choices=("focal", "bce"))
    focal_weight: float = _f(20.0, min=0)
    dice_weight: float = _f(1.0, min=0)
    complementary_weight: float = _f(0.2, min=0)
    similarity_weight: float = _f(1.0, min=0)
    distill_weight: float = _f(0.5, min=0)
    distill_loss: str = _f("cce", choices=DISTILL_LOSSES)
    points: int = _f(100, min=2)
    common_fraction: float = _f(0.8, min=0)
    upper_bound: bool = True
    baseline_cams: str = ""


def crop_targets(mask: torch.Tensor, novel_tags: torch.Tensor, valid: torch.Tensor, ignore_index: int,
                 novel_have_masks: bool = False) -> dict:  # fmt: skip
    """One crop's targets for :func:`~lesseg.methods.simformer.losses.set_losses`: a target with a mask
    for every class its (novel-hidden) ``mask`` shows, then one without a mask per novel class of
    ``novel_tags`` (multi-hot); with ``novel_have_masks`` (retraining on pseudo-labels, where the novel
    pixels are labelled) every class in the mask has a mask and no target goes without.

    Example:
        >>> m = torch.tensor([[0, 0], [1, 255]])
        >>> t = crop_targets(m, torch.tensor([0.0, 0.0, 1.0]), torch.ones(2, 2, dtype=torch.bool), 255)
        >>> t["labels"].tolist(), t["masks"].shape
        ([0, 1, 2], torch.Size([2, 2, 2]))
    """
    present = [int(c) for c in mask.unique() if int(c) != ignore_index]
    novel = (
        [] if novel_have_masks else [int(c) for c in novel_tags.nonzero().flatten() if int(c) not in present]
    )
    labels = torch.tensor(present + novel, dtype=torch.long, device=mask.device)
    masks = (mask[None] == labels[: len(present), None, None]).float()
    return {"labels": labels, "masks": masks, "valid": valid}


@register_method("simformer", config=SimFormerConfig)
class SimFormerMethod(Method):
    """See the package docstring. The network: :class:`~lesseg.models.simformer.SimFormerNet`
    (``model.name=simformer``) on ``model.backbone``."""

    regimes = ("weak_shot",)
    trains = "train"
    gallery_split = "val"

    def __init__(self, cfg, source=None, *, classes=None):
        super().__init__(cfg, source, classes=classes)
        if cfg.model.name != "simformer":
            raise ConfigError(f"model.name={cfg.model.name!r}: method simformer trains model.name=simformer "
                              "(MaskFormer with SimNet)")  # fmt: skip
        if cfg.method.crosim and cfg.data.batch_size % 2:
            raise ConfigError(f"data.batch_size={cfg.data.batch_size}: method.crosim=true trains on image pairs; "
                              "use an even batch size (pairs = batch_size / 2)")  # fmt: skip
        if source is not None:
            self._check_novel_tags()

    def _check_novel_tags(self) -> None:
        """Every novel class must be some training image's tag, else nothing teaches it."""
        novel = self.splits.base_novel.novel
        seen: set[int] = set()
        for r in self.source.split(self.cfg.data.train_split):
            seen.update(self.source.tags_of(r) or ())
            if seen.issuperset(novel):
                return
        missing = [self.classes.classes[c] for c in novel if c not in seen]
        raise ConfigError(f"data.novel={self.cfg.data.novel}: novel class(es) {missing} are no training image's "
                          f"tag in split {self.cfg.data.train_split!r}; a novel class is learnt from its tags, "
                          "so choose novel classes the training images carry")  # fmt: skip

    @property
    def novel(self) -> tuple[int, ...]:
        return self.splits.base_novel.novel

    # ---- networks and data -----------------------------------------------------------------------

    def build_model(self, m=None, simnet: bool = True) -> torch.nn.Module:
        """SimFormerNet from ``model.*`` (or the ``ModelConfig`` ``m``) and ``method.*``; SimNet only with
        crosim (and ``simnet``)."""
        m, s = m or self.cfg.model, self.cfg.method
        novel = self.novel if (s.crosim and simnet) else ()
        return create_model("simformer", backbone=m.backbone, num_classes=self.classes.num_classes,
                            novel_classes=novel, output_stride=m.output_stride, num_queries=s.num_queries,
                            hidden_dim=s.hidden_dim, heads=s.heads, ffn_dim=s.ffn_dim, dec_layers=s.dec_layers,
                            dropout=s.dropout, conv_dim=s.mask_dim, mask_dim=s.mask_dim,
                            simnet_width=s.simnet_width, weights=m.weights, pretrained=m.pretrained,
                            query_init=s.query_init)  # fmt: skip

    def train_transform(self) -> T.Compose:
        """MaskFormer's augmentation: random rescale, crop padded with grey 128, flip."""
        d = self.cfg.data
        return T.Compose([T.RandomRescale(scale=tuple(d.scale_range)), T.RandomCrop(d.crop_size, fill=PAD_FILL),
                          T.RandomHorizontalFlip(), T.Normalize()])  # fmt: skip

    def single_images(self, labels=None) -> SegDataset:
        """The training crops: base masks and every tag (stage one), or ``labels(record)`` as they are,
        novel pixels included (retraining on pseudo-labels)."""
        if labels is not None:
            return SegDataset(self.source, self.cfg.data.train_split, transform=self.train_transform(),
                              supervision=Supervision(masks="none"), seed=self.cfg.train.seed,
                              return_params=True, labels=labels)  # fmt: skip
        return SegDataset(self.source, self.cfg.data.train_split, transform=self.train_transform(),
                          supervision=self.supervision(), seed=self.cfg.train.seed, return_params=True,
                          crop_novel_tags=self.cfg.method.novel_tags == "crop")  # fmt: skip

    def stage_one_dataset(self):
        single = self.single_images()
        if self.cfg.method.crosim:
            return WithValid(WeakShotPairDataset(single, self.novel, seed=self.cfg.train.seed))
        return WithValid(single)

    # ---- training --------------------------------------------------------------------------------

    def train(self, ctx) -> None:
        torch.manual_seed(self.cfg.train.seed)
        settings = TrainSettings.from_config(self.cfg)
        if self.cfg.method.crosim:  # a pair is two images: data.batch_size counts images
            settings = dataclasses.replace(settings, batch_size=settings.batch_size // 2)
        train_and_save(
            ctx, "train", settings, self.build_model(), self.training_step, self.stage_one_dataset()
        )

    def _batch_images(self, batch: dict) -> tuple:
        """Images, masks, valid maps and novel tags of a batch; pairs side by side (anchors, then partners)."""
        keys = ("image", "mask", "valid", "crop_tags" if "crop_tags" in batch else "tags")
        if f"image{PARTNER_SUFFIX}" in batch:
            return tuple(torch.cat([batch[k], batch[k + PARTNER_SUFFIX]]) for k in keys)
        return tuple(batch[k] for k in keys)

    def training_step(self, model, batch, ctx, novel_have_masks: bool = False) -> dict:
        m, classes = self.cfg.method, self.classes
        ignore = classes.ignore_index
        images, masks, valid, tags = self._batch_images(batch)
        novel_tags = torch.zeros_like(tags)
        novel_tags[:, list(self.novel)] = tags[:, list(self.novel)]
        targets = [crop_targets(masks[i], novel_tags[i], valid[i], ignore, novel_have_masks)
                   for i in range(len(images))]  # fmt: skip
        crosim = m.crosim and not novel_have_masks and f"image{PARTNER_SUFFIX}" in batch
        base_pts = novel_pts = None
        if crosim:
            net = getattr(model, "module", model)
            stride = net.encoder.reductions[-4]  # the mask features' stride
            size = [-(-x // stride) for x in masks.shape[-2:]]
            small = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()
            small_valid = (
                F.interpolate(valid[:, None].float(), size=small.shape[-2:], mode="nearest")[:, 0] > 0
            )
            generator = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + ctx.step)
            base_pts, base_labels, novel_pts = sample_pair_points(small, small_valid, novel_tags, m.points,
                                                                  m.common_fraction, ignore, generator)  # fmt: skip
        out = model(images, base_points=base_pts, novel_points=novel_pts)
        losses = set_losses(out, targets, classes.num_classes, m.no_object_weight, m.focal_weight, m.dice_weight,
                            0.0 if novel_have_masks else m.complementary_weight, m.mask_loss)  # fmt: skip
        loss = losses["classification"] + losses["mask"] + losses["complementary"]
        logged = {k: v.detach() for k, v in losses.items()}
        if crosim:
            same, counted = base_pair_labels(*base_labels, ignore)
            fraction = float(same[counted].float().mean()) if counted.any() else 0.0
            balance = net.simnet.positive_fraction(fraction)
            sim = (
                balanced_pair_bce(out["base_same_prob"][counted], same[counted], balance)
                if counted.any()
                else loss * 0
            )
            loss = loss + m.similarity_weight * sim
            logged["similarity"] = sim.detach()
            # a batch whose pairs share no novel class has no distillation term; it logs 0, so that every
            # process logs the same keys (their means are all-reduced under torchrun)
            distill = loss.new_zeros(())
            if "novel_student" in out:
                distill = similarity_distillation_loss(
                    out["novel_student"], out["novel_teacher"], m.distill_loss
                )
                loss = loss + m.distill_weight * distill
            logged["distill"] = distill.detach()
        return {"loss": loss, **logged}

    # ---- stage two -------------------------------------------------------------------------------

    def make_pseudo_labels(self, ctx) -> None:
        """Stage one's predictions on train as labels: a novel class where predicted and among the image's
        tags, the base masks' pixels as they are, the rest ignore (``pseudo_labels/<id>.png``). Recorded
        for reading only, against the full training masks: the novel labels' precision and their recall
        of the novel pixels."""
        source, classes = ctx.source, self.classes
        ignore = classes.ignore_index
        predictor = self.predictor(ctx.run_dir, "train", str(device_of(ctx)))
        novel = np.array(self.novel)
        base_ds = SegDataset(source, ctx.cfg.data.train_split, supervision=self.supervision())
        right = labelled = truth = 0
        for i, r in enumerate(track(base_ds.records, "SimFormer pseudo-labels", enabled=is_main(ctx))):
            base_mask = base_ds[i]["mask"].numpy()  # novel pixels hidden, as training sees them
            pred = predictor.predict(load_image(r.image))
            tags = np.array(source.tags_of(r) or (), dtype=np.int64)
            keep_novel = np.isin(pred, np.intersect1d(novel, tags)) & (base_mask == ignore)
            label = np.where(base_mask != ignore, base_mask, np.where(keep_novel, pred, ignore))
            if is_main(ctx):
                save_pseudo_label(ctx.path("pseudo_labels", f"{r.id}.png"), label, classes)
                if r.mask is not None:  # scoring only, after the label is made
                    gt = source.load_mask(r)
                    right += int((keep_novel & (label == gt)).sum())
                    labelled += int(keep_novel.sum())
                    truth += int(np.isin(gt, novel).sum())
        if is_main(ctx):
            record_metrics(ctx.run_dir, "pseudo_labels", {"novel_precision": right / max(1, labelled),
                                                          "novel_recall": right / max(1, truth),
                                                          "novel_pixels_labelled": labelled})  # fmt: skip

    def retrain(self, ctx) -> None:
        folder = ctx.path("pseudo_labels")
        self.fit_on_labels(ctx, "retrain", lambda r: load_label_png(folder / f"{r.id}.png").astype(np.int64))

    def fit_on_labels(self, ctx, name: str, labels) -> torch.nn.Module:
        """The network (no SimNet) from its initial weights on ``labels(record)``, every class in them
        with masks, no complementary loss, with the run's recipe: stage two, and the references."""
        torch.manual_seed(self.cfg.train.seed)
        settings = TrainSettings.from_config(self.cfg)

        def step(model, batch, step_ctx):
            return self.training_step(model, batch, step_ctx, novel_have_masks=True)

        dataset = WithValid(self.single_images(labels=labels))
        return train_and_save(ctx, name, settings, self.build_model(simnet=False), step, dataset)

    def references(self, ctx) -> None:
        """Stage ``references``: see :func:`~lesseg.methods.simformer.references.train_references`."""
        train_references(self, ctx)

    # ---- the pipeline ----------------------------------------------------------------------------

    def stages(self) -> list:
        train_keys = classifier_keys(self.cfg)
        stages = [Stage("train", self.train, train_keys)]
        final = "train"
        if self.cfg.method.retrain:
            stages += [
                Stage("evaluate_stage_one", self.evaluate_stage_one, SEGMENTER_TEST_KEYS, ("train",)),
                Stage("pseudo_labels", self.make_pseudo_labels, (), ("train",)),
                Stage("retrain", self.retrain, train_keys, ("pseudo_labels",)),
            ]
            final = "retrain"
        return stages + [
            Stage("evaluate", evaluate_segmenter, SEGMENTER_TEST_KEYS, (final,)),
            Stage(
                "references",
                self.references,
                (
                    *train_keys,
                    "data.val_split",
                    "eval.references",
                    "method.upper_bound",
                    "method.baseline_cams",
                ),
            ),
            Stage("report", write_run_report, ("eval.gallery",), ("evaluate", "references")),
        ]

    def evaluate_stage_one(self, ctx) -> None:
        """Stage one's network on val (mIoU, base and novel), before retraining: ``metrics.json`` "stage_one"."""
        out = self.scores(ctx, self.predictor(ctx.run_dir, "train", str(device_of(ctx))))
        if is_main(ctx):
            record_metrics(ctx.run_dir, "stage_one", out)

    def scores(self, ctx, predictor: Predictor) -> dict:
        """val mIoU of ``predictor`` with the base and novel subsets."""
        out = split_scores(ctx, predictor)
        names, split = self.classes.classes, self.splits.base_novel
        out["subsets"] = subset_miou(out, {"base": [names[i] for i in split.base],
                                           "novel": [names[i] for i in split.novel]})  # fmt: skip
        return out

    # ---- what the pipeline hands on ----------------------------------------------------------------

    def predictor(self, run_dir, stage: str, device: str = "auto", **protocol) -> Predictor:
        """The network ``checkpoints/<stage>_final.pt`` with the run's test protocol."""
        checked_run_files(run_dir, f"checkpoints/{stage}_final.pt")
        own = dataclasses.replace(self.cfg.model, pretrained=False, weights=None)
        net = self.build_model(own, simnet=stage == "train")  # the run's weights, not the initial ones
        net.encoder.set_normalization(normalization_of(self.cfg.model))
        net.load_state_dict(load_checkpoint(Path(run_dir, "checkpoints", f"{stage}_final.pt"))["model"])
        return Predictor(net, self.classes, device=device, **protocol_of(self.cfg.segmenter, **protocol))

    def inference_model(self, run_dir: str | Path, device: str = "auto", **protocol) -> Predictor:
        """The final network (``retrain`` with stage two, else ``train``), single scale by default."""
        return self.predictor(run_dir, "retrain" if self.cfg.method.retrain else "train", device, **protocol)

    def report_notes(self, ctx) -> list[str]:
        m, names = ctx.cfg.method, self.classes.classes
        novel = ", ".join(names[i] for i in self.novel)
        stages = "stage one" + (" with crosim" if m.crosim else "") + (" and retraining" if m.retrain else "")
        return [f"{init_note('network', ctx.cfg.model)}; novel classes (tags only): {novel}.",
                f"SimFormer {stages}; novel targets from the {m.novel_tags}'s tags."]  # fmt: skip
