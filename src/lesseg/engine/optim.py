"""Optimisers and learning-rate schedules of the five methods, built from ``OptimConfig``.

| method      | optimiser                                   | schedule                       |
|-------------|---------------------------------------------|--------------------------------|
| Puzzle-CAM  | SGD, groups x1/x2/x10/x20 (IRN convention)  | poly, power 0.9, per step      |
| MCIS        | SGD Nesterov, new layers x10/x20            | multistep: x0.1 at epochs 5, 10 |
| PiCIE       | Adam, lr 1e-4 (COCO) / 1e-3 (Cityscapes)    | constant                       |
| SimFormer   | AdamW, full-model grad-norm clipping        | poly                           |
| DeepLabv3+  | SGD momentum 0.9                            | poly                           |

Parameter groups come from the model's ``param_groups()`` (backbone weights / backbone biases and norms /
new weights / new biases); each gets ``lr * lr_mult[group]``, and bias groups get no weight decay (IRN).
Schedules are per optimiser step so a resumed run continues the same curve.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from lesseg.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("poly", "multistep", "constant")
GROUPS = ("backbone_weight", "backbone_bias", "new_weight", "new_bias")


def model_param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's own four groups when it defines ``param_groups()``, else everything as new weights."""
    if hasattr(model, "param_groups"):
        return model.param_groups()
    return {"new_weight": [p for p in model.parameters() if p.requires_grad]}


def build_optimizer(cfg, groups: dict[str, Iterable[nn.Parameter]]) -> torch.optim.Optimizer:
    """An optimiser over named parameter groups with per-group LR multipliers (``cfg`` is an OptimConfig)."""
    unknown = set(cfg.lr_mult) - set(GROUPS)
    if unknown:
        raise ConfigError(f"optim.lr_mult has unknown group(s) {sorted(unknown)}; valid: {', '.join(GROUPS)}")
    param_groups = []
    for name, params in groups.items():
        params = [p for p in params if p.requires_grad]
        if not params:
            continue
        wd = 0.0 if name.endswith("_bias") else cfg.weight_decay
        param_groups.append(
            {"params": params, "lr": cfg.lr * cfg.lr_mult.get(name, 1.0), "weight_decay": wd, "name": name}
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise ConfigError(f"optim.name must be one of {', '.join(OPTIMIZERS)}; got {cfg.name!r}")


def lr_factor(cfg, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The multiplier of every group's base LR after ``step`` optimiser steps."""
    if cfg.schedule == "poly":
        factor = max(0.0, 1.0 - step / max(1, total_steps)) ** cfg.poly_power
    elif cfg.schedule == "multistep":
        epoch = step // max(1, steps_per_epoch)
        factor = cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    elif cfg.schedule == "constant":
        factor = 1.0
    else:
        raise ConfigError(f"optim.schedule must be one of {', '.join(SCHEDULES)}; got {cfg.schedule!r}")
    if cfg.warmup_steps and step < cfg.warmup_steps:
        factor *= (step + 1) / cfg.warmup_steps
    return factor


def build_scheduler(
    cfg, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int
) -> LambdaLR:
    return LambdaLR(optimizer, lambda step: lr_factor(cfg, step, total_steps, steps_per_epoch))
