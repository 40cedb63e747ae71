"""A method of the tests' own, in one file: a DeepLabv3+ trained with cross-entropy on the masks of the
labeled split alone (the supervised-only reference of semi-supervised work). Importing this module
registers it; nothing else in lesseg knows it, yet it trains, evaluates, predicts and reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from lesseg.config import MethodConfig
from lesseg.config import config_field as option
from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.engine.checkpoint import load_checkpoint
from lesseg.engine.trainer import TrainSettings
from lesseg.methods import Method
from lesseg.methods.base import checked_run_files
from lesseg.pipeline import Stage
from lesseg.predict import Predictor, protocol_of
from lesseg.registry import register_method
from lesseg.stages.common import train_and_save
from lesseg.stages.references import compute_references
from lesseg.stages.report import write_run_report
from lesseg.stages.segmenter import build_segmenter, evaluate_segmenter


@dataclasses.dataclass
class SupervisedOnlyConfig(MethodConfig):
    label_smoothing: float = option(0.0, min=0)


@register_method("supervised_only", config=SupervisedOnlyConfig)
class SupervisedOnly(Method):
    regimes = ("semi",)
    trains = "train"

    def stages(self) -> list:
        keys = ("method", "data", "segmenter.model", "segmenter.optim", "segmenter.train")
        return [
            Stage("train", self.train, keys),
            Stage("evaluate", evaluate_segmenter, ("data.val_split", "segmenter.test_scales"), ("train",)),
            Stage("references", compute_references, ("data", "data.val_split", "eval.references")),
            Stage("report", write_run_report, ("eval.gallery",), ("evaluate", "references")),
        ]

    def train(self, ctx) -> None:
        cfg = self.cfg
        d = cfg.data
        transform = T.Compose([T.RandomRescale(scale=tuple(d.scale_range)), T.RandomCrop(d.crop_size),
                               T.RandomHorizontalFlip(), T.Normalize()])  # fmt: skip
        dataset = SegDataset(ctx.source, d.train_split, transform, self.supervision(), seed=cfg.train.seed)
        dataset.records = [r for r in dataset.records if r.id in set(self.splits.labeled.labeled)]
        torch.manual_seed(cfg.train.seed)
        model = build_segmenter(cfg.segmenter.model, self.classes.num_classes)
        s = cfg.segmenter
        settings = TrainSettings.from_config(cfg, optim=s.optim, train=s.train, model=s.model)
        train_and_save(ctx, "segmenter", settings, model, self.training_step, dataset)

    def training_step(self, model, batch, ctx) -> dict:
        logits = model(batch["image"])["logits"].float()
        loss = F.cross_entropy(logits, batch["mask"], ignore_index=255,
                               label_smoothing=self.cfg.method.label_smoothing)  # fmt: skip
        return {"loss": loss}

    def inference_model(self, run_dir: str | Path, device: str = "auto", **protocol) -> Predictor:
        checked_run_files(run_dir, "checkpoints/segmenter_final.pt")
        model = build_segmenter(self.cfg.segmenter.model, self.classes.num_classes)
        model.load_state_dict(load_checkpoint(Path(run_dir, "checkpoints", "segmenter_final.pt"))["model"])
        settings = {**protocol_of(self.cfg.segmenter), **protocol}
        return Predictor(model, self.classes, device=device, **settings)
