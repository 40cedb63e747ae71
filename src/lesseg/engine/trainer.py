"""The one training loop that every method uses; methods differ in their step function, not in the loop.

    settings = TrainSettings.from_config(cfg)     # or a stage's own optim/train/model/data sections
    trainer = Trainer(settings, model, step_fn, dataset, run_dir)
    model = trainer.fit()       # resumes from run_dir/checkpoints/<name>_last.pt when it exists

``step_fn(model, batch, ctx) -> {"loss": tensor, ...}`` computes the method's losses; the loop does the rest:
device placement, mixed precision, gradient clipping, optimiser and schedule, DDP, checkpoints, logs.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

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
from lesseg.progress import format_duration


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


def resume_key(cfg, optim=None, train=None, model=None, data=None) -> str:
    """Hash of what decides a training run's result: the run's ``method`` and ``data`` sections with the
    network's own ``model``, ``optim`` and ``train`` (default: the run's), and the stage's own data settings
    where it has any (``data``). ``train.epochs`` is left out where the schedule does not depend on the
    total (``constant``, ``multistep``): raising it continues a run into the same result as a longer run
    from the start. A ``poly`` schedule decays to 0 at the last step, so there a run with other epochs
    starts over (continuing would jump the learning rate back up and end elsewhere)."""
    from lesseg.config import config_hash, hash_view

    d = {"method": hash_view(cfg.method), "data": hash_view(cfg.data), "model": hash_view(model or cfg.model),
         "optim": hash_view(optim or cfg.optim), "train": hash_view(train or cfg.train)}  # fmt: skip
    if (optim or cfg.optim).schedule != "poly":
        d["train"] = {k: v for k, v in d["train"].items() if k != "epochs"}
    own = hash_view(data) if data is not None else {}
    if any(v is not None for v in own.values()):
        d["stage_data"] = own
    return config_hash(d)


@dataclass(frozen=True)
class TrainSettings:
    """What the loop needs to train one network: its optimiser and schedule, its training settings, its
    loader, and the resume key that says which checkpoint is its own.

    Args:
        optim, train: the network's ``OptimConfig`` and ``TrainConfig``.
        batch_size: the global batch over all processes.
        workers, skip_bad: DataLoader workers; skip an image that breaks while training (and log it).
        sync_bn: SyncBatchNorm under DDP (CUDA).
        key: a checkpoint written under another key is not resumed (:func:`resume_key`).
    """

    optim: object
    train: object
    batch_size: int
    workers: int = 2
    skip_bad: bool = False
    sync_bn: bool = False
    key: str = ""

    @classmethod
    def from_config(cls, cfg, optim=None, train=None, model=None, data=None) -> TrainSettings:
        """The settings of a network trained under run config ``cfg``, with the stage's own ``optim``,
        ``train``, ``model`` sections and ``data`` settings (a section with ``batch_size``, None = the run's
        ``data.batch_size``) in place of the run's."""
        batch = getattr(data, "batch_size", None) or cfg.data.batch_size
        model_cfg = model or cfg.model
        return cls(optim or cfg.optim, train or cfg.train, batch, cfg.data.workers, cfg.data.skip_bad,
                   model_cfg.sync_bn, resume_key(cfg, optim, train, model, data))  # fmt: skip


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


class _WithEpoch(Sampler):
    """A sampler's indices as ``(epoch, index)``, the epoch being the sampler's current one."""

    def __init__(self, sampler: ResumableSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        epoch = self.sampler.epoch
        return ((epoch, i) for i in self.sampler)


class _EpochIndexed(Dataset):
    """Takes ``(epoch, index)`` and calls the dataset's ``set_epoch`` when the epoch changes: how a
    persistent worker's copy of the dataset learns the epoch."""

    def __init__(self, dataset: Dataset):
        self.dataset, self.epoch = dataset, None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        epoch, index = item
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        return self.dataset[index]


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


@dataclass
class _Progress:
    """Where a fit stands, as a checkpoint stores it."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0


class Trainer:
    """Trains ``model`` on ``dataset`` with ``step_fn``.

    Args:
        settings: a :class:`TrainSettings` (or a run's Config, for its own sections).
        model: the network, on the CPU; the trainer moves and wraps it.
        step_fn: the method's losses for one batch.
        dataset: a dataset with ``set_epoch`` (``SegDataset``) so augmentation is seeded per epoch.
        run_dir: the run folder; checkpoints go to ``run_dir/checkpoints/<name>_last.pt``.
        name: the stage's name, so several trained networks can share a run folder.
        param_groups: named parameter groups; by default the model's ``param_groups()``.
        inputs_key: identifies the inputs that are not in the settings (e.g. the pseudo-labels a segmenter
            trains on); a checkpoint written under another key is not resumed.
        epoch_start: called as ``epoch_start(model, epoch)`` on every process before each epoch's first
            batch, and again when a killed run resumes inside that epoch (with the resumed weights), e.g.
            to cluster features or load what the epoch's first call cached.
        epoch_end: called as ``epoch_end(model, epoch)`` (the unwrapped model, the finished epoch's index)
            on every process after each epoch, before the epoch's checkpoint, e.g. to score and keep the
            best epoch; a run killed in between calls it again for that epoch.
    """

    def __init__(
        self,
        settings,
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
        if not isinstance(settings, TrainSettings):
            settings = TrainSettings.from_config(settings)
        self.settings, self.step_fn, self.dataset = settings, step_fn, dataset
        self.epoch_end, self.epoch_start = epoch_end, epoch_start
        self.inputs_key = inputs_key
        self.run_dir = Path(run_dir)
        self.name = name
        self.env = env or init_distributed(settings.train.device)
        self.raw_model = model
        self.groups = param_groups
        self.ckpt_path = self.run_dir / "checkpoints" / f"{name}_last.pt"

    # ---- pieces of a fit -----------------------------------------------------------------------------

    @property
    def _persistent(self) -> bool:
        """Workers live across epochs (``persistent_workers``) unless an ``epoch_start`` hook may change the
        dataset between epochs (PiCIE's labels), which workers started before it would not see."""
        return self.settings.workers > 0 and self.epoch_start is None

    def _loader(self, sampler: ResumableSampler, epoch: int) -> DataLoader:
        """The epoch's DataLoader; with persistent workers one for the whole fit, whose sampler hands each
        index with its epoch so the workers' copies of the dataset follow ``set_epoch``."""
        s = self.settings
        persistent = self._persistent
        if persistent and getattr(self, "_persistent_loader", None) is not None:
            return self._persistent_loader
        ds = _EpochIndexed(self.dataset) if persistent else self.dataset
        ds = _SkipBad(ds) if s.skip_bad else ds
        loader = DataLoader(
            ds,
            batch_size=sampler.batch_size,
            sampler=_WithEpoch(sampler) if persistent else sampler,
            num_workers=s.workers,
            collate_fn=_collate_skipping if s.skip_bad else None,
            pin_memory=self.env.device.type == "cuda",
            # its own generator: creating an iterator must not draw from the global RNG, or a resumed
            # run would see different random numbers than an uninterrupted one
            generator=torch.Generator().manual_seed(s.train.seed * 1000 + epoch),
            multiprocessing_context=loader_context(s.workers),
            persistent_workers=persistent,
        )
        if persistent:
            self._persistent_loader = loader
        return loader

    def _build(self) -> None:
        """Sampler, wrapped model, optimiser, schedule, grad scaler and autocast for this fit."""
        s, env = self.settings, self.env
        world = env.world_size
        if s.batch_size % world:
            raise ConfigError(f"the global batch size {s.batch_size} (data.batch_size, or a stage's own data.batch_size) "
                              f"must be divisible by the {world} processes")  # fmt: skip
        self.sampler = ResumableSampler(
            len(self.dataset), s.batch_size // world, env.rank, world, s.train.seed
        )
        self.total = self.sampler.batches_per_epoch * s.train.epochs
        seed_everything(s.train.seed + env.rank)
        groups = self.groups or model_param_groups(self.raw_model)
        self.model = wrap_model(self.raw_model, env, s.sync_bn)
        self.optimizer = build_optimizer(s.optim, groups)
        self.scheduler = build_scheduler(s.optim, self.optimizer, self.total, self.sampler.batches_per_epoch)
        amp_dtype = resolve_amp(s.train.amp, env.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        self.autocast = (
            (lambda: torch.autocast(env.device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
        )
        if s.train.deterministic:
            torch.use_deterministic_algorithms(True)

    @property
    def key(self) -> str:
        return self.settings.key + self.inputs_key

    def _resume(self) -> _Progress:
        """The position of this run's last checkpoint, with every state restored; the start otherwise (also
        when the checkpoint was written under other settings: start over rather than continue another run)."""
        ckpt = load_checkpoint(self.ckpt_path) if self.ckpt_path.is_file() else None
        if ckpt is None or ckpt.get("resume_key") != self.key:
            return _Progress()
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        restore_rng(rng[self.env.rank] if self.env.rank < len(rng) else rng[0])
        return _Progress(ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"])

    def _checkpoint(self, at: _Progress) -> None:
        """Every process's RNG state and rank 0's model and optimiser states, written atomically."""
        rng = all_gather_objects(capture_rng())
        if self.env.is_main:
            save_checkpoint(self.ckpt_path, {
                "model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng,
                "epoch": at.epoch, "batch_in_epoch": at.batch_in_epoch, "step": at.step,
                "world_size": self.env.world_size, "resume_key": self.key,
            })  # fmt: skip
        barrier(self.env)

    def _step(self, batch: dict, at: _Progress) -> tuple[dict, float]:
        """One optimiser step on ``batch``; returns the losses and the learning rate the step used."""
        batch = _to_device(batch, self.env.device)
        with self.autocast():
            losses = self.step_fn(self.model, batch, StepContext(at.epoch, at.step, self.total))
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {at.step} (epoch {at.epoch}); lower optim.lr?"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return losses, lr

    def _batches(self, epoch: int, logger: RunLogger, at: _Progress) -> Iterator[dict]:
        """The epoch's batches from where it stands; unreadable images skipped and logged (data.skip_bad)."""
        iterator = iter(self._loader(self.sampler, epoch))
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except DataError as e:
                raise _clean_worker_error(e) from None
            if batch.get("_skipped"):
                logger.log({"event": "skipped", "step": at.step, "files": batch["_skipped"]})
                if not any(torch.is_tensor(v) for v in batch.values()):
                    raise DataError(f"every image of a batch was unreadable: {batch['_skipped']}")
            yield batch

    def _epoch(self, at: _Progress, logger: RunLogger) -> None:
        """Train the rest of epoch ``at.epoch``, logging every ``train.log_every`` steps and checkpointing
        every ``train.checkpoint_every``."""
        s, world = self.settings.train, self.env.world_size
        window_start, window_images, window_steps = time.perf_counter(), 0, 0
        for batch in self._batches(at.epoch, logger, at):
            losses, lr = self._step(batch, at)
            at.step += 1
            at.batch_in_epoch += 1
            window_steps += 1
            window_images += _batch_len(batch) * world
            logger.progress(1)
            if at.step % s.log_every == 0 or at.step == self.total:
                scalars = mean_over_processes({k: float(v.detach()) for k, v in losses.items()}, self.env)
                seconds = time.perf_counter() - window_start
                rate = window_images / seconds
                logger.log({"step": at.step, "epoch": at.epoch, **scalars, "lr": lr, "images_per_s": rate})
                logger.postfix(epoch=at.epoch, loss=scalars["loss"], img_s=rate)
                if not self._estimated and at.step < self.total:
                    self._estimated = True
                    self._say_expected_length(logger, at, window_steps, seconds, rate)
                window_start, window_images, window_steps = time.perf_counter(), 0, 0
            if s.checkpoint_every and at.step % s.checkpoint_every == 0:
                self._checkpoint(at)

    def _say_expected_length(self, logger: RunLogger, at: _Progress, steps: int, seconds: float, rate: float):
        """Once per fit, after its first logged steps: how long the rest will take at their speed."""
        left = (self.total - at.step) * seconds / max(1, steps)
        logger.note(f"{self.name}: {self.total} steps ({self.settings.train.epochs} epochs), about "
                    f"{format_duration(left)} left at {rate:.1f} images/s (measured on steps "
                    f"{at.step - steps + 1}-{at.step}; the shipped configs' times are for an idle machine)")  # fmt: skip

    # ---- the loop ------------------------------------------------------------------------------------

    def fit(self) -> nn.Module:
        """Train to ``train.epochs`` (resuming this run's checkpoint) and return the unwrapped model."""
        self._build()
        self._estimated, self._persistent_loader = False, None
        at = self._resume()
        logger = RunLogger(
            self.run_dir, self.total, enabled=self.env.is_main, resume_step=at.step, stage=self.name
        )
        if at.step:
            logger.log(
                {"event": "resumed", "step": at.step, "epoch": at.epoch, "batch_in_epoch": at.batch_in_epoch}
            )
        self.model.train()
        while at.epoch < self.settings.train.epochs:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(at.epoch)
            self.sampler.set_epoch(at.epoch, start_batch=at.batch_in_epoch)
            if self.epoch_start is not None:
                self.epoch_start(unwrap(self.model), at.epoch)
                self.model.train()
            self._epoch(at, logger)
            if self.epoch_end is not None:
                self.epoch_end(unwrap(self.model), at.epoch)
                self.model.train()
            at.epoch, at.batch_in_epoch = at.epoch + 1, 0
            self._checkpoint(at)
        logger.close()
        self._persistent_loader = None  # its workers exit
        return unwrap(self.model)
