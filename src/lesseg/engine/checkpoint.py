"""Checkpoints that a kill cannot corrupt and that resume a run exactly.

A checkpoint holds the model, optimiser, scheduler and grad-scaler states, the position in training
(epoch, batch within the epoch, global step) and every process's RNG states, so a resumed run replays the
same batches with the same randomness as an uninterrupted one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesseg.errors import DataError
from lesseg.io import atomic_write


def capture_rng() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` with torch.save to a temporary file and rename it into place."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        # our own files: they hold RNG states (numpy arrays, tuples), which weights_only would refuse
        return torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise DataError(f"{path}: checkpoint not found") from None
    except Exception as e:  # a truncated or foreign file
        raise DataError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
