"""The Python API: what the CLI does, callable from a notebook or a script.

from lesseg.api import run
from lesseg.config import load_config
run_dir = run(load_config("configs/cam/synthetic.yaml", ["train.epochs=2"]))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lesseg.config import save_config
from lesseg.engine import init_distributed
from lesseg.errors import ConfigError
from lesseg.pipeline import Pipeline, RunContext


def run(cfg, stage: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the stages of ``cfg``'s method into ``run_dir/name`` (skipping those already done with the same
    config; a killed run resumes), or only ``stage``. Returns the run folder."""
    from lesseg.stages.common import method_of

    if not cfg.data.root:
        raise ConfigError(
            "data.root is empty; set it to the dataset folder (e.g. data.root=../shared/data/msrc21)"
        )
    run_dir = Path(cfg.run_dir) / cfg.name
    env = init_distributed(cfg.train.device)
    ctx = RunContext(cfg, run_dir, env)
    pipeline = Pipeline(method_of(ctx).stages())
    if env.is_main:
        save_config(cfg, run_dir / "config.yaml")
    pipeline.run(ctx, only=stage, log=log if env.is_main else (lambda _: None))
    return run_dir


def train(cfg) -> Path:
    """Train the method's network alone (the ``classifier`` stage); weights in checkpoints/classifier_final.pt."""
    return run(cfg, stage="classifier", log=lambda _: None)
