"""Checkpoints that a kill cannot corrupt, that resume a run exactly, and that cannot run code.

A checkpoint holds the model, optimiser, scheduler and grad-scaler states, the position in training
(epoch, batch within the epoch, global step) and every process's RNG states, so a resumed run replays the
same batches with the same randomness as an uninterrupted one.

Run folders are shared and downloaded, so a checkpoint is data, never code: every file is read with
``torch.load(weights_only=True)``, which accepts only tensors, numbers, strings, lists, tuples and dicts.
That is also all we write: the NumPy and Python RNG states are stored as tensors (:func:`capture_rng`).
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesseg.errors import ConfigError, DataError
from lesseg.io import atomic_write


def capture_rng() -> dict[str, Any]:
    """Every RNG state of this process as tensors and plain numbers (what ``weights_only`` loads)."""
    key, mt, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": key, "state": torch.from_numpy(mt.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["state"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))  # fmt: skip
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` with torch.save to a temporary file and rename it into place."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's content, read with ``weights_only=True``; a file that holds anything but data (a
    pickle that would call a function, e.g. one planted in a downloaded run folder) is refused with a
    :class:`DataError` naming it, before any of its code can run."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))  # the wording varies with the torch version
        what = f"it would call {found.group(1)}" if found else "it holds more than tensors and plain data"
        raise DataError(
            f"{path}: refused to load: {what}; lesseg checkpoints hold only tensors, numbers, strings, "
            "lists and dicts (a file from another program, an older lesseg, or tampered with: delete it "
            "to redo its stage)"
        ) from None
    except Exception as e:  # a truncated or foreign file
        raise DataError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None


def checked_run_files(run_dir: Path, *names: str) -> None:
    """ConfigError unless ``run_dir`` holds each of ``names`` (a finished run's files)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")
    for name in names:
        if not (run_dir / name).is_file():
            raise ConfigError(
                f"{run_dir} is not a finished run: {name} is missing (run `lesseg run` to the end)"
            )
