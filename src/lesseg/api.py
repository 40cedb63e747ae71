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
from lesseg.errors import ConfigError, DataError, LessegError
from lesseg.io import atomic_write_json
from lesseg.pipeline import Pipeline, RunContext
from lesseg.runlock import hold_run_folder


def run(cfg, stage: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the stages of ``cfg``'s method into ``run_dir/name`` (skipping those already done with the same
    config; a killed run resumes), or only ``stage``. Returns the run folder.

    The run holds the folder's lock throughout (a second run on it stops at once, see
    :mod:`lesseg.runlock`) and checks the data it will read before the first stage
    (:mod:`lesseg.data.preflight`)."""
    from lesseg.stages.common import method_of

    if not cfg.data.root:
        raise ConfigError(
            "data.root is empty; set it to the dataset folder (e.g. data.root=../shared/data/msrc21)"
        )
    run_dir = Path(cfg.run_dir) / cfg.name
    env = init_distributed(cfg.train.device)
    say = log if env.is_main else (lambda _: None)
    with hold_run_folder(run_dir, env, say):
        ctx = RunContext(cfg, run_dir, env)
        skipped = _check_data(ctx, say)
        pipeline = Pipeline(method_of(ctx).stages(), data_key=skipped)
        if env.is_main:
            save_config(cfg, run_dir / "config.yaml")
            # what `predict` needs besides the weights, so a run folder works without its dataset
            atomic_write_json(run_dir / "classes.json", ctx.cache["source"].classes.to_dict())
        pipeline.run(ctx, only=stage, log=say)
    return run_dir


def _check_data(ctx: RunContext, log: Callable[[str], None]) -> str:
    """Check what the run reads (rank 0 first, the others then reuse its stored result); put the source
    the run reads in the context; returns the pipeline's ``data_key`` (a hash of what was left out)."""
    from lesseg.config import config_hash
    from lesseg.data import read_dataset
    from lesseg.data.preflight import prepare_run_data
    from lesseg.engine.distributed import all_gather_objects, barrier

    d, env = ctx.cfg.data, ctx.env
    source = read_dataset(d.root, d.format, **d.options)
    splits = list(dict.fromkeys([d.train_split, d.val_split]))

    def check(write: bool):
        return prepare_run_data(source, splits, ctx.run_dir, d.skip_bad, log, write=write)

    failed = None
    if env.is_main:
        try:
            kept, result = check(write=True)
        except LessegError as e:
            failed = e
    if env.distributed:
        message = all_gather_objects(None if failed is None else str(failed))[0]
        if message is not None:
            raise failed if failed is not None else DataError(message)
        barrier(env)
        if not env.is_main:
            kept, result = check(write=False)
    elif failed is not None:
        raise failed
    ctx.cache["source"] = kept
    return config_hash(sorted(result.bad)) if result.bad else ""


def train(cfg) -> Path:
    """Train the method's network alone (its first stage: ``classifier`` for the CAM family, ``features``
    for PiCIE); weights in checkpoints/<stage>_final.pt."""
    from lesseg.methods import get_method

    first = get_method(cfg.method.name)(cfg, None).stages()[0].name  # the stage list needs no dataset
    return run(cfg, stage=first, log=lambda _: None)


def load_run(run_dir: str | Path, scales=None, flip: bool | None = None, device: str = "auto",
             crf_iterations: int | None = None, slide_above: float | None = None, window: int | None = None,
             stride: int | None = None):  # fmt: skip
    """A finished run's segmenter as a :class:`lesseg.predict.Predictor`: the run's test-time scales, flip,
    CRF iterations and sliding windows (``slide_above`` megapixels, ``window``, ``stride``) unless given."""
    from lesseg.predict import Predictor

    return Predictor.from_run(run_dir, scales=scales, flip=flip, device=device, crf_iterations=crf_iterations,
                              slide_above=slide_above, window=window, stride=stride)  # fmt: skip


def predict(run_dir: str | Path, images, out_dir: str | Path, **kwargs) -> list[Path]:
    """Masks (class-index PNGs) and overlays of ``images`` (files or folders) in ``out_dir``."""
    return load_run(run_dir, **kwargs).predict_files(images, out_dir)
