"""The stages that several methods share, one file each; they take what they need from the run context
(its dataset and method object) and never import a method. ``weak_supervision_stages`` is the CAM
family's pipeline:

classifier (tags only) -> cams (multi-scale, flips) -> pseudo_labels -> segmenter (DeepLabv3+) -> evaluate,
then references (what to read the numbers against) and report (report.html). ``evaluate``,
``references`` and ``report`` work for any method, through its inference model.
"""

import dataclasses

from lesseg.pipeline import Stage
from lesseg.stages.cams import evaluate_cams, infer_train_cams
from lesseg.stages.classifier import train_classifier
from lesseg.stages.pseudo_labels import make_pseudo_labels
from lesseg.stages.references import compute_references
from lesseg.stages.refinement import (
    evaluate_refinement,
    make_affinity_labels,
    run_random_walk,
    train_boundary,
)
from lesseg.stages.report import write_run_report
from lesseg.stages.segmenter import (
    SEGMENTER_TEST_KEYS,
    SEGMENTER_TRAIN_KEYS,
    evaluate_segmenter,
    train_segmenter,
)

CLASSIFIER_KEYS = ("method", "data", "model", "optim", "train")


def method_keys(cfg) -> tuple[str, ...]:
    """The ``method`` section's keys that decide training: all of it, leaving out the method's
    inference-only settings (``INFERENCE_ONLY`` on its config class, e.g. MCIS's ``cam_inference``) so that
    changing them does not retrain it."""
    skip = getattr(type(cfg.method), "INFERENCE_ONLY", ())
    if not skip:
        return ("method",)
    return tuple(f"method.{f.name}" for f in dataclasses.fields(cfg.method) if f.name not in skip)


def classifier_keys(cfg) -> tuple[str, ...]:
    """What decides the trained classifier (or any method's first trained network): the training keys of
    the method section, then ``data``, ``model``, ``optim``, ``train``."""
    return (*method_keys(cfg), *CLASSIFIER_KEYS[1:])


def weak_supervision_stages(cfg) -> list[Stage]:
    """The CAM family's pipeline; the refinement stages (affinity labels, boundary branch, random walk and
    their evaluation) join when ``cfg`` asks for them (pseudo_labels.source=random_walk or
    eval.refinement=true)."""
    refine = cfg.pseudo_labels.source == "random_walk" or cfg.eval.refinement
    labels_need = ("cams", "random_walk") if cfg.pseudo_labels.source == "random_walk" else ("cams",)
    stages = [
        Stage("classifier", train_classifier, classifier_keys(cfg)),
        Stage("cams", infer_train_cams, ("cams",), ("classifier",)),
        Stage("cam_eval", evaluate_cams, ("eval.bg_sweep", "pseudo_labels.bg_threshold"), ("cams",)),
    ]
    if refine:
        stages += [
            Stage("affinity_labels", make_affinity_labels, ("affinity_labels",), ("cams",)),
            Stage("boundary", train_boundary, ("boundary",), ("affinity_labels", "classifier")),
            Stage("random_walk", run_random_walk, ("random_walk",), ("boundary", "cams")),
            Stage("refine_eval", evaluate_refinement, ("pseudo_labels", "random_walk"), ("random_walk",)),
        ]
    stages += [
        Stage(
            "pseudo_labels", make_pseudo_labels, ("pseudo_labels", "random_walk.bg_threshold"), labels_need
        ),
        Stage(
            "segmenter",
            train_segmenter,
            SEGMENTER_TRAIN_KEYS[:1] + ("segmenter.init_from_classifier",) + SEGMENTER_TRAIN_KEYS[1:],
            ("pseudo_labels",),
        ),  # fmt: skip
        Stage("evaluate", evaluate_segmenter, SEGMENTER_TEST_KEYS, ("segmenter",)),
        Stage(
            "references",
            compute_references,
            (
                *method_keys(cfg),
                "data",
                "data.val_split",
                "model",
                "train.seed",
                "cams",
                "pseudo_labels",
                "segmenter",
                "eval.references",
                "eval.bg_sweep",
            ),
        ),  # fmt: skip
        Stage("report", write_run_report, ("eval.gallery",), ("cam_eval", "evaluate", "references")),
    ]
    return stages
