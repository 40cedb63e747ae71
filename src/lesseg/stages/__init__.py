"""The stages of a run, one file each; ``weak_supervision_stages`` is the CAM-family pipeline:

classifier (tags only) -> cams (multi-scale, flips) -> pseudo_labels -> segmenter (DeepLabv3+) -> evaluate,
then references (what to read the numbers against) and report (report.html).
"""

from lesseg.pipeline import Stage
from lesseg.stages.cams import evaluate_cams, infer_train_cams
from lesseg.stages.classifier import train_classifier
from lesseg.stages.pseudo_labels import make_pseudo_labels
from lesseg.stages.references import compute_references
from lesseg.stages.report import write_run_report
from lesseg.stages.segmenter import evaluate_segmenter, train_segmenter

CLASSIFIER_KEYS = ("method", "data", "model", "optim", "train")


def weak_supervision_stages() -> list[Stage]:
    return [
        Stage("classifier", train_classifier, CLASSIFIER_KEYS),
        Stage("cams", infer_train_cams, ("cams",), ("classifier",)),
        Stage("cam_eval", evaluate_cams, ("eval.bg_sweep", "pseudo_labels.bg_threshold"), ("cams",)),
        Stage("pseudo_labels", make_pseudo_labels, ("pseudo_labels",), ("cams",)),
        Stage(
            "segmenter",
            train_segmenter,
            ("segmenter.model", "segmenter.init_from_classifier", "segmenter.optim", "segmenter.train"),
            ("pseudo_labels",),
        ),  # fmt: skip
        Stage(
            "evaluate", evaluate_segmenter, ("segmenter.test_scales", "segmenter.test_flip"), ("segmenter",)
        ),
        Stage(
            "references",
            compute_references,
            (
                *CLASSIFIER_KEYS[:3],
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
