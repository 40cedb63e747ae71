"""The Python API: what the CLI does, callable from a notebook or a script.

from lesseg.api import train
from lesseg.config import load_config
run_dir = train(load_config("configs/cam/synthetic.yaml", ["train.epochs=2"]))
"""

from __future__ import annotations

from pathlib import Path

import torch

from lesseg.config import config_to_dict, load_config, save_config
from lesseg.data import read_dataset
from lesseg.data.dataset import SegDataset
from lesseg.engine import Trainer, init_distributed
from lesseg.engine.checkpoint import save_checkpoint
from lesseg.errors import ConfigError
from lesseg.methods import get_method


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def check_run_folder(cfg, run_dir: Path) -> None:
    """Refuse to resume a run folder whose saved config differs from this one (its checkpoint would be
    continued under other settings); name the differing keys."""
    saved = run_dir / "config.yaml"
    if not saved.is_file() or not (run_dir / "checkpoints").is_dir():
        return
    old, new = _flatten(config_to_dict(load_config(saved))), _flatten(config_to_dict(cfg))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k != "train.epochs")
    if changed:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:5])
        raise ConfigError(
            f"{run_dir} holds a run with a different config ({shown}); choose another name=..., "
            "or delete the folder to start over"
        )


def train(cfg) -> Path:
    """Train the method's network of ``cfg`` into ``run_dir/name``, resuming a killed run; returns the folder.

    The final weights go to ``checkpoints/train_final.pt``; ``config.yaml`` holds the resolved config.
    ``train.epochs`` may be raised to continue a finished run.
    """
    run_dir = Path(cfg.run_dir) / cfg.name
    if not cfg.data.root:
        raise ConfigError(
            "data.root is empty; set it to the dataset folder (e.g. data.root=../shared/data/msrc21)"
        )
    source = read_dataset(cfg.data.root, cfg.data.format, **cfg.data.options)
    method = get_method(cfg.method.name)(cfg, source.classes)
    dataset = SegDataset(source, cfg.data.train_split, transform=method.train_transform(),
                         supervision=method.supervision(), seed=cfg.train.seed)  # fmt: skip
    env = init_distributed(cfg.train.device)
    check_run_folder(cfg, run_dir)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every process
    model = method.build_model()
    if env.is_main:
        save_config(cfg, run_dir / "config.yaml")
    trained = Trainer(cfg, model, method.training_step, dataset, run_dir, name="train", env=env).fit()
    if env.is_main:
        save_checkpoint(run_dir / "checkpoints" / "train_final.pt", {"model": trained.state_dict()})
    return run_dir
