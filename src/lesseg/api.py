"""The Python API: what the CLI does, callable from a notebook or a script.

from lesseg.api import load_run, run
from lesseg.config import load_config
run_dir = run(load_config("configs/cam/synthetic.yaml", ["train.epochs=2"]))
predictor = load_run(run_dir)            # the run's segmenter and classes
mask = predictor.predict(image)          # HxW class indices of an HxWx3 uint8 RGB array
predictor.predict_files(["photos/"], "out/")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lesseg.config import save_config
from lesseg.engine import init_distributed
from lesseg.errors import ConfigError
from lesseg.io import atomic_write_json
from lesseg.pipeline import Pipeline, RunContext


def run(cfg, stage: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the stages of ``cfg``'s method into ``run_dir/name`` (skipping those already done with the same
    config; a killed run resumes), or only ``stage``. Returns the run folder."""
    from lesseg.stages.common import method_of, source_of

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
        # what `predict` needs besides the weights, so a run folder works without its dataset
        atomic_write_json(run_dir / "classes.json", source_of(ctx).classes.to_dict())
    pipeline.run(ctx, only=stage, log=log if env.is_main else (lambda _: None))
    return run_dir


def train(cfg) -> Path:
    """Train the method's network alone (its first stage: ``classifier`` for the CAM family, ``features``
    for PiCIE); weights in checkpoints/<stage>_final.pt."""
    from lesseg.methods import get_method

    first = get_method(cfg.method.name)(cfg, None).stages()[0].name  # the stage list needs no dataset
    return run(cfg, stage=first, log=lambda _: None)


def load_run(run_dir: str | Path, scales=None, flip: bool | None = None, device: str = "auto",
             crf_iterations: int | None = None):  # fmt: skip
    """A finished run's segmenter as a :class:`lesseg.predict.Predictor` (the run's test-time scales, flip
    and CRF iterations unless given)."""
    from lesseg.predict import Predictor

    return Predictor.from_run(run_dir, scales=scales, flip=flip, device=device, crf_iterations=crf_iterations)


def predict(run_dir: str | Path, images, out_dir: str | Path, **kwargs) -> list[Path]:
    """Masks (class-index PNGs) and overlays of ``images`` (files or folders) in ``out_dir``."""
    return load_run(run_dir, **kwargs).predict_files(images, out_dir)
