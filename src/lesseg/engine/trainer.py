"""The one training loop that every method uses; methods differ in their step function, not in the loop.

    trainer = Trainer(cfg, model, step_fn, dataset, run_dir)
    model = trainer.fit()       # resumes from run_dir/checkpoints/<name>_last.pt when it exists

``step_fn(model, batch, ctx) -> {"loss": tensor, ...}`` computes the method's losses; the loop does the rest:
device placement, mixed precision, gradient clipping, optimiser and schedule, DDP, checkpoints, logs.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from lesseg.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from lesseg.engine.distributed import (
    DistEnv,
    all_gather_objects,
    barrier,
    init_distributed,
    mean_over_processes,
    unwrap,
    wrap_model,
)
from lesseg.engine.log import RunLogger
from lesseg.engine.optim import build_optimizer, build_scheduler, model_param_groups
from lesseg.engine.sampler import ResumableSampler
from lesseg.errors import ConfigError, DataError


def loader_context(workers: int) -> str | None:
    """DataLoader workers start by ``fork`` where the platform has it, whatever the process's default: our
    datasets and steps hold closures that other start methods would have to pickle (``spawn`` is the default
    inside processes that were themselves spawned, e.g. by a process pool; ``forkserver`` from Python 3.14)."""
    if workers > 0 and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return None


@dataclass
class StepContext:
    """Where training stands, for losses that change over time (e.g. Puzzle-CAM's alpha ramp)."""

    epoch: int
    step: int
    total_steps: int

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total_steps)


StepFn = Callable[[nn.Module, dict, StepContext], dict[str, torch.Tensor]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``auto`` is bf16 on GPUs that support it and fp32 on CPUs (bf16 is slower than
    fp32 on CPUs without native bf16 units; ask for it with ``train.amp=bf16``)."""
    if amp == "off":
        return None
    if amp == "auto":
        ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if ok else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.amp=fp16 needs a CUDA device; use bf16 or off on the CPU")
        return torch.float16
    raise ConfigError(f"train.amp must be auto, bf16, fp16 or off; got {amp!r}")


def resume_key(cfg) -> str:
    """Hash of what decides a training run's result, except ``train.epochs`` (raising it continues a run)."""
    from lesseg.config import config_hash, config_to_dict

    d = {k: config_to_dict(cfg)[k] for k in ("method", "data", "model", "optim", "train")}
    d["train"] = {k: v for k, v in d["train"].items() if k != "epochs"}
    return config_hash(d)


class _SkipBad(Dataset):
    """Turns an unreadable sample into a marker that the collate function drops and reports."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except DataError as e:
            return {"_bad": str(e)}


def _collate_skipping(samples: list[dict]) -> dict:
    bad = [s["_bad"] for s in samples if "_bad" in s]
    good = [s for s in samples if "_bad" not in s]
    batch = default_collate(good) if good else {}
    batch["_skipped"] = bad
    return batch


def _clean_worker_error(e: Exception) -> DataError:
    """A DataLoader worker re-raises our DataError with a traceback in its message; keep the one line."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    last = lines[-1] if lines else str(e)
    return DataError(last.split("DataError: ", 1)[-1])


def _batch_len(batch: dict) -> int:
    """Images in a batch (methods name their inputs differently: "image", PiCIE's "image1", ...)."""
    return next(len(v) for v in batch.values() if torch.is_tensor(v))


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """Trains ``model`` on ``dataset`` with ``step_fn`` under the settings of ``cfg`` (a lesseg Config).

    Args:
        cfg: the run's Config (uses ``data.batch_size`` (global), ``data.workers``, ``data.skip_bad``,
            ``optim.*``, ``train.*``, ``model.sync_bn``).
        model: the network, on the CPU; the trainer moves and wraps it.
        step_fn: the method's losses for one batch.
        dataset: a dataset with ``set_epoch`` (``SegDataset``) so augmentation is seeded per epoch.
        run_dir: the run folder; checkpoints go to ``run_dir/checkpoints/<name>_last.pt``.
        name: the stage's name, so several trained networks can share a run folder.
        param_groups: named parameter groups; by default the model's ``param_groups()``.
        inputs_key: identifies the inputs that are not in ``cfg`` (e.g. the pseudo-labels a segmenter trains
            on); a checkpoint written under another key is not resumed.
        epoch_start: called as ``epoch_start(model, epoch)`` on every process before each epoch's first
            batch, and again when a killed run resumes inside that epoch (with the resumed weights), e.g.
            to cluster features or load what the epoch's first call cached.
        epoch_end: called as ``epoch_end(model, epoch)`` (the unwrapped model, the finished epoch's index)
            on every process after each epoch, before the epoch's checkpoint, e.g. to score and keep the
            best epoch; a run killed in between calls it again for that epoch.
    """

    def __init__(
        self,
        cfg,
        model: nn.Module,
        step_fn: StepFn,
        dataset: Dataset,
        run_dir: str | Path,
        name: str = "train",
        param_groups: dict | None = None,
        env: DistEnv | None = None,
        inputs_key: str = "",
        epoch_end: Callable[[nn.Module, int], None] | None = None,
        epoch_start: Callable[[nn.Module, int], None] | None = None,
    ):
        self.cfg, self.step_fn, self.dataset = cfg, step_fn, dataset
        self.epoch_end = epoch_end
        self.epoch_start = epoch_start
        self.inputs_key = inputs_key
        self.run_dir = Path(run_dir)
        self.name = name
        self.env = env or init_distributed(cfg.train.device)
        self.raw_model = model
        self.groups = param_groups
        self.ckpt_path = self.run_dir / "checkpoints" / f"{name}_last.pt"

    def _loader(self, sampler: ResumableSampler, epoch: int) -> DataLoader:
        data = self.cfg.data
        ds = _SkipBad(self.dataset) if data.skip_bad else self.dataset
        return DataLoader(
            ds,
            batch_size=sampler.batch_size,
            sampler=sampler,
            num_workers=data.workers,
            collate_fn=_collate_skipping if data.skip_bad else None,
            pin_memory=self.env.device.type == "cuda",
            # its own generator: creating an iterator must not draw from the global RNG, or a resumed
            # run would see different random numbers than an uninterrupted one
            generator=torch.Generator().manual_seed(self.cfg.train.seed * 1000 + epoch),
            multiprocessing_context=loader_context(data.workers),
        )

    def fit(self) -> nn.Module:
        cfg, env = self.cfg, self.env
        world = env.world_size
        if cfg.data.batch_size % world:
            raise ConfigError(
                f"data.batch_size={cfg.data.batch_size} must be divisible by the {world} processes"
            )
        per_rank = cfg.data.batch_size // world
        sampler = ResumableSampler(len(self.dataset), per_rank, env.rank, world, cfg.train.seed)
        steps_per_epoch = sampler.batches_per_epoch
        total = steps_per_epoch * cfg.train.epochs

        seed_everything(cfg.train.seed + env.rank)
        groups = self.groups or model_param_groups(self.raw_model)
        model = wrap_model(self.raw_model, env, cfg.model.sync_bn)
        optimizer = build_optimizer(cfg.optim, groups)
        scheduler = build_scheduler(cfg.optim, optimizer, total, steps_per_epoch)
        amp_dtype = resolve_amp(cfg.train.amp, env.device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)

        epoch, batch_in_epoch, step = 0, 0, 0
        key = resume_key(cfg) + self.inputs_key
        ckpt = load_checkpoint(self.ckpt_path) if self.ckpt_path.is_file() else None
        if ckpt is not None and ckpt.get("resume_key") != key:
            ckpt = None  # written under other settings: start over rather than continue another run
        if ckpt is not None:
            unwrap(model).load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            epoch, batch_in_epoch, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
            rng = ckpt["rng"]
            restore_rng(rng[env.rank] if env.rank < len(rng) else rng[0])
        logger = RunLogger(self.run_dir, total, enabled=env.is_main, resume_step=step, stage=self.name)
        if step:
            logger.log({"event": "resumed", "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch})

        def checkpoint() -> None:
            rng = all_gather_objects(capture_rng())
            if env.is_main:
                save_checkpoint(
                    self.ckpt_path,
                    {
                        "model": unwrap(model).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "rng": rng,
                        "epoch": epoch,
                        "batch_in_epoch": batch_in_epoch,
                        "step": step,
                        "world_size": world,
                        "resume_key": key,
                    },
                )
            barrier(env)

        autocast = (lambda: torch.autocast(env.device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
        model.train()
        window_start, window_images = time.perf_counter(), 0
        while epoch < cfg.train.epochs:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            sampler.set_epoch(epoch, start_batch=batch_in_epoch)
            if self.epoch_start is not None:
                self.epoch_start(unwrap(model), epoch)
                model.train()
            iterator = iter(self._loader(sampler, epoch))
            while True:
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                except DataError as e:
                    raise _clean_worker_error(e) from None
                if batch.get("_skipped"):
                    logger.log({"event": "skipped", "step": step, "files": batch["_skipped"]})
                    if not any(torch.is_tensor(v) for v in batch.values()):
                        raise DataError(f"every image of a batch was unreadable: {batch['_skipped']}")
                batch = _to_device(batch, env.device)
                ctx = StepContext(epoch, step, total)
                with autocast():
                    losses = self.step_fn(model, batch, ctx)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss.item()} at step {step} (epoch {epoch}); lower optim.lr?"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.optim.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                lr = optimizer.param_groups[0]["lr"]  # the rate this step used
                scheduler.step()
                step += 1
                batch_in_epoch += 1
                window_images += _batch_len(batch) * world
                logger.progress(1)
                if step % cfg.train.log_every == 0 or step == total:
                    scalars = mean_over_processes({k: float(v.detach()) for k, v in losses.items()}, env)
                    rate = window_images / (time.perf_counter() - window_start)
                    logger.log({"step": step, "epoch": epoch, **scalars, "lr": lr, "images_per_s": rate})
                    logger.postfix(loss=scalars["loss"], img_s=rate)
                    window_start, window_images = time.perf_counter(), 0
                if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0:
                    checkpoint()
            if self.epoch_end is not None:
                self.epoch_end(unwrap(model), epoch)
                model.train()
            epoch += 1
            batch_in_epoch = 0
            checkpoint()
        logger.close()
        return unwrap(model)
