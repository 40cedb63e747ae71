"""Training engine: one loop for every method, exact resume, mixed precision, DDP through torchrun."""

from lesseg.engine.checkpoint import load_checkpoint, save_checkpoint
from lesseg.engine.distributed import DistEnv, init_distributed
from lesseg.engine.optim import build_optimizer, build_scheduler, lr_factor
from lesseg.engine.sampler import ResumableSampler
from lesseg.engine.trainer import StepContext, Trainer

__all__ = [
    "DistEnv",
    "ResumableSampler",
    "StepContext",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "init_distributed",
    "load_checkpoint",
    "lr_factor",
    "save_checkpoint",
]
