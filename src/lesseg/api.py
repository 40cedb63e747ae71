"""The Python API: what the CLI does, callable from a notebook or a script.

from lesseg.api import load_run, run
from lesseg.config import load_config
run_dir = run(load_config("configs/cam/synthetic.yaml", ["train.epochs=2"]))
predictor = load_run(run_dir)            # the run's predicting network, its classes and test protocol
mask = predictor.predict(image)          # HxW class indices of an HxWx3 uint8 RGB array
predictor.predict_files(["photos/"], "out/")

This is the layer above the methods: it builds a run's method from the registry, gives it to the stages
on the run context, and asks it for its inference model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lesseg.config import load_config, save_config
from lesseg.data.classes import ClassInfo
from lesseg.engine import init_distributed
from lesseg.errors import ConfigError, DataError, LessegError
from lesseg.io import atomic_write_json
from lesseg.pipeline import Pipeline, RunContext
from lesseg.registry import get_method
from lesseg.runlock import hold_run_folder
from lesseg.stages.supervision import with_supervision


def run(cfg, stage: str | None = None, log: Callable[[str], None] = print, until: str | None = None) -> Path:
    """Run the stages of ``cfg``'s method into ``run_dir/name`` (skipping those already done with the same
    config; a killed run resumes), or only ``stage``, or those up to ``until``. Returns the run folder.

    The run holds the folder's lock throughout (a second run on it stops at once, see
    :mod:`lesseg.runlock`) and checks the data it will read before the first stage
    (:mod:`lesseg.data.preflight`); the method object is built once, on that data."""
    if not cfg.data.root:
        raise ConfigError(
            "data.root is empty; set it to the dataset folder (e.g. data.root=../shared/data/msrc21)"
        )
    method_cls = get_method(cfg.method.name)
    run_dir = Path(cfg.run_dir) / cfg.name
    env = init_distributed(cfg.train.device)
    say = log if env.is_main else (lambda _: None)
    with hold_run_folder(run_dir, env, say):
        ctx = RunContext(cfg, run_dir, env)
        skipped = _check_data(ctx, say)
        ctx.method = method_cls(cfg, ctx.source)
        pipeline = Pipeline(pipeline_stages(ctx.method), data_key=skipped)
        pipeline.check(ctx, stage, until)  # a refused --stage leaves config.yaml as it was
        check_extras(cfg, pipeline.selected(stage, until))
        if env.is_main:
            save_config(cfg, run_dir / "config.yaml")
            # what `predict` needs besides the weights, so a run folder works without its dataset
            atomic_write_json(run_dir / "classes.json", ctx.source.classes.to_dict())
        pipeline.run(ctx, only=stage, log=say, until=until)
    return run_dir


#: options that need the dense CRF (the ``crf`` extra) when above 0, and the stage that reads each
CRF_OPTIONS = {"pseudo_labels.crf_iterations": "pseudo_labels", "segmenter.test_crf_iterations": "evaluate"}


def check_extras(cfg, stages: list[str]) -> None:
    """ConfigError before anything trains when the ``stages`` about to run ask for an optional dependency
    that is missing (the dense CRF of :data:`CRF_OPTIONS`), naming the option and the install command."""
    asked = []
    for key, reader in CRF_OPTIONS.items():
        section, name = key.split(".")
        if reader in stages and getattr(getattr(cfg, section, None), name, 0):
            asked.append(key)
    if asked:
        from lesseg.refine.crf import crf_unavailable_reason

        why = crf_unavailable_reason()
        if why:
            raise ConfigError(f"{', '.join(asked)} > 0 asks for the dense CRF, but {why}; or set them to 0")


def run_context(cfg, run_dir: str | Path | None = None, env=None) -> RunContext:
    """A run's context with its dataset and method built (no lock, no data check): for running stages
    one by one from a script or a test. ``run_dir`` defaults to ``cfg.run_dir/cfg.name``."""
    from lesseg.data import read_dataset

    d = cfg.data
    ctx = RunContext(cfg, Path(run_dir) if run_dir is not None else Path(cfg.run_dir) / cfg.name, env)
    ctx.source = read_dataset(d.root, d.format, **d.options)
    ctx.method = get_method(cfg.method.name)(cfg, ctx.source)
    return ctx


def pipeline_stages(method) -> list:
    """A method's stages as a run executes them (led by ``supervision`` when the config sets a split)."""
    return with_supervision(method.cfg, method.stages())


def _check_data(ctx: RunContext, log: Callable[[str], None]) -> str:
    """Check what the run reads (rank 0 first, the others then reuse its stored result); put the source
    the run reads in the context; returns the pipeline's ``data_key`` (a hash of what was left out)."""
    from lesseg.config import config_hash
    from lesseg.data import read_dataset
    from lesseg.data.preflight import prepare_run_data
    from lesseg.engine.distributed import all_gather_objects, barrier

    d, env = ctx.cfg.data, ctx.env
    source = read_dataset(d.root, d.format, **d.options)
    extra = get_method(ctx.cfg.method.name).extra_splits(ctx.cfg)
    for key, name in extra.items():
        try:
            source.split(name)
        except DataError as e:
            raise ConfigError(f"{key}={name!r}: {e}") from None
    splits = list(dict.fromkeys([d.train_split, d.val_split, *extra.values()]))

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
    ctx.source = kept
    return config_hash(sorted(result.bad)) if result.bad else ""


def train(cfg) -> Path:
    """Train the method's first network (``classifier`` for the CAM family, ``features`` for PiCIE), with
    whatever stages come before it; weights in checkpoints/<stage>_final.pt."""
    return run(cfg, until=get_method(cfg.method.name).trains, log=lambda _: None)


def load_run(run_dir: str | Path, scales=None, flip: bool | None = None, device: str = "auto",
             crf_iterations: int | None = None, slide_above: float | None = None, window: int | None = None,
             stride: int | None = None):  # fmt: skip
    """A finished run's predicting network as a :class:`lesseg.predict.Predictor` (the method's
    :meth:`~lesseg.methods.Method.inference_model`): the run's test-time scales, flip, CRF iterations and
    sliding windows (``slide_above`` megapixels, ``window``, ``stride``) unless given. Needs only the run
    folder (``config.yaml``, ``classes.json``, the weights), not the dataset."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")
    for needed in ("config.yaml", "classes.json"):
        if not (run_dir / needed).is_file():
            raise ConfigError(
                f"{run_dir} is not a finished run: {needed} is missing (run `lesseg run` to the end)"
            )
    cfg = load_config(run_dir / "config.yaml")
    method = get_method(cfg.method.name)(cfg, classes=ClassInfo.load(run_dir / "classes.json"))
    protocol = {"scales": scales, "flip": flip, "crf_iterations": crf_iterations, "slide_above": slide_above,
                "window": window, "stride": stride}  # fmt: skip
    return method.inference_model(
        run_dir, device=device, **{k: v for k, v in protocol.items() if v is not None}
    )


def protocol_name(predictor) -> str:
    """The test protocol of a predictor as metrics.json names it, e.g. ``scales 0.5,1,1.5 flip crf 10``."""
    name = "scales " + ",".join(f"{s:g}" for s in predictor.scales)
    return (
        name
        + (" flip" if predictor.flip else "")
        + (f" crf {predictor.crf_iterations}" if predictor.crf_iterations else "")
    )


def evaluate_run(run_dir: str | Path, split: str | None = None, data_root: str | Path | None = None,
                 device: str = "auto", log: Callable[[str], None] = print, **protocol) -> dict:  # fmt: skip
    """Score a finished run's predicting network on any split with masks, with the cheap references
    (random among tags, largest class by mask) on the same images; nothing is trained and the run's
    ``config.yaml`` and ``stages.json`` are left as they are.

    Args:
        run_dir: the run folder.
        split: a split of the dataset (``a+b`` joins); default the run's ``data.val_split``.
        data_root: the dataset folder, if not the run's ``data.root`` (e.g. a copy with a test split).
        protocol: test-time overrides (``scales``, ``flip``, ``crf_iterations``, ``slide_above``, ...).

    Returns the entry it writes to ``metrics.json`` under ``eval`` -> split -> protocol (e.g.
    ``metrics["eval"]["test"]["scales 1"]``): the mIoU, pixel accuracy and per-class IoU, the references,
    the images scored and the dataset read.
    """
    from lesseg.data import read_dataset
    from lesseg.data.preflight import prepare_run_data
    from lesseg.eval import read_metrics, record_metrics
    from lesseg.stages.references import mask_references
    from lesseg.stages.segmenter import split_scores

    run_dir = Path(run_dir)
    predictor = load_run(run_dir, device=device, **protocol)  # checks the run folder first
    cfg = load_config(run_dir / "config.yaml")
    d = cfg.data
    split = split or d.val_split
    root = Path(data_root) if data_root is not None else Path(d.root)
    with hold_run_folder(run_dir, log=log):
        source = read_dataset(root, d.format, **d.options)
        source, _ = prepare_run_data(source, [split], run_dir, d.skip_bad, log, write=False)
        ctx = RunContext(cfg, run_dir, source=source)
        images = [r for r in source.split(split) if r.mask is not None]
        if not images:
            raise DataError(f"{root}: split {split!r} has no masks to score against")
        entry = split_scores(ctx, predictor, split)
        entry.update(images=len(images), data_root=str(root), references=mask_references(ctx, split))
        metrics = read_metrics(run_dir).get("eval", {})
        metrics.setdefault(split, {})[protocol_name(predictor)] = entry
        record_metrics(run_dir, "eval", metrics)
    return entry


def predict(run_dir: str | Path, images, out_dir: str | Path, **kwargs) -> list[Path]:
    """Masks (class-index PNGs) and overlays of ``images`` (files or folders) in ``out_dir``."""
    return load_run(run_dir, **kwargs).predict_files(images, out_dir)
