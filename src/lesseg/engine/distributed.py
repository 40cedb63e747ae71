"""One process or many: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK and we join its process group.

The same command runs alone (``lesseg train cfg.yaml``) or under
``torchrun --nproc_per_node N -m lesseg train cfg.yaml``; NCCL on GPUs, Gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from lesseg.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: the local GPU when there is one, else the CPU; or an explicit ``cpu``/``cuda``/``cuda:N``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; use 'auto' or 'cpu'")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N; got {name!r}")
    return torch.device(name)


def init_distributed(device: str = "auto") -> DistEnv:
    """Join torchrun's process group when WORLD_SIZE > 1 (idempotent); otherwise a single-process env."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        # long single-rank work between barriers (PiCIE clusters each epoch on rank 0, a COCO-sized pass
        # takes well over the default 10 minutes), so waiting ranks get hours, not minutes
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(hours=3))
    return DistEnv(rank, world, local_rank, dev)


def wrap_model(model: nn.Module, env: DistEnv, sync_bn: bool = False) -> nn.Module:
    """Move to the device; under DDP convert BatchNorm to SyncBatchNorm if asked, and wrap."""
    if sync_bn and env.distributed:
        if env.device.type != "cuda":
            raise ConfigError(
                "model.sync_bn needs CUDA devices (SyncBatchNorm has no CPU kernel); use GroupNorm"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(env.device)
    if env.distributed:
        ids = [env.device.index] if env.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_gather_objects(obj) -> list:
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_processes(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average scalar logs over processes (for logging only: the gradients are already synchronised)."""
    if not env.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if env.device.type == "cuda":
        t = t.to(env.device)
    dist.all_reduce(t)
    return {k: float(v) / env.world_size for k, v in zip(keys, t.tolist())}


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
