"""What the stages of a run share: helpers over the run context (its method and dataset travel on it)."""

from __future__ import annotations

from pathlib import Path

import torch

from lesseg.engine.checkpoint import load_checkpoint, save_checkpoint
from lesseg.pipeline import RunContext


def device_of(ctx: RunContext) -> torch.device:
    return ctx.env.device if ctx.env is not None else torch.device("cpu")


def save_weights(ctx: RunContext, name: str, model: torch.nn.Module) -> Path:
    path = ctx.path("checkpoints", f"{name}_final.pt")
    if ctx.env is None or ctx.env.is_main:
        save_checkpoint(path, {"model": model.state_dict()})
    return path


def train_and_save(
    ctx: RunContext,
    name: str,
    settings,
    model: torch.nn.Module,
    step,
    dataset,
    epoch_end=None,
    pick=None,
    epoch_start=None,
) -> torch.nn.Module:
    """Train ``model`` with the engine under ``settings`` (a :class:`~lesseg.engine.trainer.TrainSettings`)
    as stage ``name``, resuming only a checkpoint made from the same settings and upstream artifacts; keep
    ``checkpoints/<name>_final.pt``.
    ``epoch_start`` and ``epoch_end`` go to the trainer; ``pick(trained)``, if given, returns the model to
    keep."""
    from lesseg.engine import Trainer

    trainer = Trainer(settings, model, step, dataset, ctx.run_dir, name=name, env=ctx.env,
                      inputs_key=ctx.inputs_key, epoch_end=epoch_end, epoch_start=epoch_start)  # fmt: skip
    trained = trainer.fit()
    if pick is not None:
        trained = pick(trained)
    save_weights(ctx, name, trained)
    return trained


def load_weights(ctx: RunContext, name: str, model: torch.nn.Module) -> torch.nn.Module:
    model.load_state_dict(load_checkpoint(ctx.path("checkpoints", f"{name}_final.pt"))["model"])
    return model


def is_main(ctx: RunContext) -> bool:
    """Whether this process writes the run's shared files (rank 0, or no torchrun)."""
    return ctx.env is None or ctx.env.is_main
