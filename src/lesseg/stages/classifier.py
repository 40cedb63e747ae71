"""Stage `classifier`: train the method's network on image-level tags (never a mask)."""

from __future__ import annotations

import dataclasses

import torch

from lesseg.data.dataset import SegDataset
from lesseg.pipeline import RunContext
from lesseg.stages.common import method_of, source_of, train_and_save


def train_classifier(ctx: RunContext) -> None:
    cfg = ctx.cfg
    method = method_of(ctx)
    dataset = SegDataset(source_of(ctx), cfg.data.train_split, transform=method.train_transform(),
                         supervision=method.supervision(), seed=cfg.train.seed)  # fmt: skip
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every process
    model = method.build_model()
    train_cfg = dataclasses.replace(cfg, optim=method.optim_config())
    train_and_save(ctx, "classifier", train_cfg, model, method.training_step, dataset)
