"""SimFormer's trained references: the fully supervised upper bound (every class with masks) and the
weak-supervision baseline the paper beats (base masks plus the CAM pipeline's novel pseudo-labels), both
the method's network and recipe, scored on val like it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from lesseg.config import load_config
from lesseg.data.dataset import SegDataset
from lesseg.data.imageio import load_label_png
from lesseg.engine.distributed import barrier
from lesseg.errors import ConfigError
from lesseg.eval import read_metrics, record_metrics
from lesseg.models.backbones import normalization_of
from lesseg.pipeline import RunContext
from lesseg.predict import Predictor, protocol_of
from lesseg.progress import track
from lesseg.refine import save_pseudo_label
from lesseg.registry import get_method
from lesseg.stages.cams import compute_cams
from lesseg.stages.classifier import train_classifier
from lesseg.stages.common import device_of, is_main, load_weights
from lesseg.stages.pseudo_labels import make_label
from lesseg.stages.references import compute_references


def train_references(method, ctx) -> None:
    """The cheap mask references, then (``eval.references``) the fully supervised upper bound
    (``method.upper_bound``) and the weak-supervision baseline (``method.baseline_cams``), each the
    same network trained here on its labels and scored on val (base, novel, all)."""
    compute_references(ctx)
    m, source = method.cfg.method, ctx.source
    if not ctx.cfg.eval.references:
        return
    runs = []
    train = source.split(ctx.cfg.data.train_split)
    if m.upper_bound and all(r.mask is not None for r in train):
        runs.append(("upper_bound", source.load_mask))
    if m.baseline_cams:
        runs.append(("weak_baseline", cam_baseline_labels(method, ctx)))
    out = {}
    for name, labels in runs:
        net = method.fit_on_labels(ctx, f"reference_{name}", labels)
        if is_main(ctx):
            net.encoder.set_normalization(normalization_of(method.cfg.model))
            predictor = Predictor(
                net, method.classes, device=str(device_of(ctx)), **protocol_of(method.cfg.segmenter)
            )
            out[name] = {"val": method.scores(ctx, predictor)}
    if is_main(ctx) and out:
        record_metrics(ctx.run_dir, "references", {**read_metrics(ctx.run_dir).get("references", {}), **out})


def cam_baseline_labels(method, ctx):
    """Base masks plus the CAM pipeline's novel pseudo-labels (its label at a pixel where that label is
    one of the image's novel classes and no base mask covers it; the rest ignore), written to
    ``references/weak_baseline_labels/``; returns their loader."""
    spec = Path(method.cfg.method.baseline_cams)
    reuse = (spec / "cams").is_dir()
    if reuse:
        stages = spec / "stages.json"
        if not stages.is_file() or "cams" not in json.loads(stages.read_text()):
            raise ConfigError(f"method.baseline_cams={str(spec)!r}: that run has not finished its cams stage "
                              f"(see {stages}); run it to the end first")  # fmt: skip
        cam_cfg, cam_dir = load_config(spec / "config.yaml"), spec
    elif spec.is_file():
        cam_cfg, cam_dir = load_config(spec), ctx.path("references", "cam_baseline")
        d = method.cfg.data
        cam_cfg = dataclasses.replace(
            cam_cfg, train=dataclasses.replace(cam_cfg.train, seed=method.cfg.train.seed),
            data=dataclasses.replace(cam_cfg.data, root=d.root, format=d.format, options=d.options,
                                     train_split=d.train_split, val_split=d.val_split, novel=None, labeled=None))  # fmt: skip
    else:
        raise ConfigError(f"method.baseline_cams={str(spec)!r} is neither a CAM-family config file nor a run "
                          "folder with cams/ (set it to e.g. configs/cam/msrc21_imagenet.yaml, or \"\")")  # fmt: skip
    sub = RunContext(
        cam_cfg, cam_dir, ctx.env, ctx.source, get_method(cam_cfg.method.name)(cam_cfg, ctx.source)
    )
    if not reuse:
        train_classifier(sub)
        compute_cams(sub, load_weights(sub, "classifier", sub.method.build_model()))
    ignore = method.classes.ignore_index
    folder = ctx.path("references", "weak_baseline_labels")
    base_ds = SegDataset(ctx.source, method.cfg.data.train_split, supervision=method.supervision())
    if is_main(ctx):
        for i, r in enumerate(track(base_ds.records, "CAM baseline labels")):
            base = base_ds[i]["mask"].numpy()
            cam = make_label(sub, r, "cams", cam_cfg.pseudo_labels.crf_iterations)
            novel = np.isin(cam, method.novel)
            save_pseudo_label(folder / f"{r.id}.png", np.where(base != ignore, base, np.where(novel, cam, ignore)),
                              method.classes)  # fmt: skip
    if ctx.env is not None:
        barrier(ctx.env)
    return lambda r: load_label_png(folder / f"{r.id}.png").astype(np.int64)
