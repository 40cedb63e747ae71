"""The CAM baseline (Zhou et al., CVPR 2016): a classifier trained on image-level tags.

Its class activation maps (the 1x1 classifier applied before global average pooling) localise each tagged
class; Puzzle-CAM and MCIS are measured against it. Training sees tags only, never a mask. It is also the
CAM family's base: classifier -> CAMs -> (refinement) -> pseudo-labels -> DeepLabv3+ segmenter, whose
segmenter is the network that predicts (:mod:`lesseg.stages` has the stages they share).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lesseg.data import transforms as T
from lesseg.data.imageio import color_palette
from lesseg.methods.base import Method
from lesseg.models import create_model, multilabel_soft_margin_loss
from lesseg.predict import Predictor
from lesseg.refine import load_cams
from lesseg.registry import register_method
from lesseg.report import colorize, heatmap
from lesseg.stages import weak_supervision_stages
from lesseg.stages.cams import cam_path
from lesseg.stages.pseudo_labels import load_pseudo_label
from lesseg.stages.references import untrained_cam_pipeline
from lesseg.stages.report import init_note
from lesseg.stages.segmenter import segmenter_normalization, trained_segmenter


@register_method("cam")
class CAMMethod(Method):
    regimes = ("tags",)
    gallery_split = "train"  # the images that have CAMs and pseudo-labels

    def stages(self) -> list:
        return weak_supervision_stages(self.cfg)

    def train_transform(self) -> T.Compose:
        d = self.cfg.data
        return T.Compose([
            T.RandomRescale(scale=tuple(d.scale_range)), T.RandomCrop(d.crop_size),
            T.RandomHorizontalFlip(), T.Normalize(),
        ])  # fmt: skip

    def build_model(self) -> torch.nn.Module:
        return create_model(self.cfg.model.name, **self.model_kwargs())

    def model_kwargs(self) -> dict:
        """The classifier's arguments from ``model.*``: one output per taggable class (no background)."""
        m = self.cfg.model
        return {"backbone": m.backbone, "num_classes": len(self.classes.tag_indices),
                "output_stride": m.output_stride, "weights": m.weights, "pretrained": m.pretrained}  # fmt: skip

    def training_step(self, model, batch, ctx) -> dict:
        # the classifier has one output per taggable class (no background output)
        tags = batch["tags"][:, list(self.classes.tag_indices)]
        logits = model(batch["image"])["logits"]
        return {"loss": multilabel_soft_margin_loss(logits.float(), tags)}

    # ---- what the pipeline hands on ----------------------------------------------------------------

    def inference_model(self, run_dir: str | Path, device: str = "auto", **protocol) -> Predictor:
        """The trained DeepLabv3+ segmenter (``checkpoints/segmenter_final.pt``) with the run's test
        protocol (``segmenter.test_*``)."""
        return trained_segmenter(
            self.cfg, self.classes, run_dir, device, segmenter_normalization(self.cfg), **protocol
        )

    def untrained_references(self, ctx) -> dict:
        """The classifier at its initial weights through the same ``cams`` and ``pseudo_labels`` steps,
        and the segmenter at its initial weights on val (see :mod:`lesseg.stages.references`)."""
        return untrained_cam_pipeline(ctx)

    def gallery_panels(self, ctx, record, image) -> list:
        cams = load_cams(cam_path(ctx, record.id)).cams
        cam = cams.max(0) if len(cams) else np.zeros(image.shape[:2], np.float32)
        palette = color_palette(self.classes.num_classes, self.classes.ignore_index)
        label = colorize(load_pseudo_label(ctx, record.id), palette, self.classes.ignore_index)
        return [("CAM", heatmap(image, cam)), ("pseudo-label", label)]

    def report_notes(self, ctx) -> list[str]:
        cfg = ctx.cfg
        notes = ["; ".join([init_note("classifier", cfg.model),
                            init_note("segmenter", cfg.segmenter.model, cfg.segmenter.init_from_classifier)]) + ".",
                 "CAM and pseudo-label rows are on the training images, against their masks (read for "
                 "evaluation only); the segmenter row is on val."]  # fmt: skip
        notes.append(
            "references/random_tags and references/largest_class read the masks: diagnostics, not baselines."
        )
        return notes
