"""Fully supervised training: the segmenter on the true masks, the reference weak results are read against.

Not a method of the papers but their yardstick: a weakly supervised paper reports its segmenter as a
fraction of the same network trained on the pixel masks. This method trains exactly the segmenter of the
run's config (``segmenter.model``, ``segmenter.optim``, ``segmenter.train``, ``segmenter.data``: the same
network and budget as the CAM family's last stage) with cross-entropy on the masks, so that
``method.name=supervised`` on any CAM-family config gives that config's upper bound::

    lesseg run configs/cam/msrc21_imagenet.yaml method.name=supervised name=supervised_msrc21_imagenet

Without ``data.labeled`` it sees every training mask (regime ``full``); with it only the labeled images'
masks (regime ``semi``: the supervised-only baseline of semi-supervised work, e.g. PseudoSeg's).
"""

from __future__ import annotations

from pathlib import Path

from lesseg.data.splits import Supervision
from lesseg.methods.base import Method
from lesseg.models.backbones import normalization_of
from lesseg.pipeline import Stage
from lesseg.predict import Predictor
from lesseg.registry import register_method
from lesseg.stages.references import compute_references
from lesseg.stages.report import init_note, write_run_report
from lesseg.stages.segmenter import (
    SEGMENTER_TEST_KEYS,
    SEGMENTER_TRAIN_KEYS,
    evaluate_segmenter,
    fit_segmenter,
    trained_segmenter,
)


@register_method("supervised")
class SupervisedMethod(Method):
    """The config's segmenter trained on pixel masks (all of train, or ``data.labeled``'s images)."""

    regimes = ("full", "semi")
    trains = "segmenter"
    prediction_title = "prediction (fully supervised)"

    def stages(self) -> list:
        return [
            Stage("segmenter", self.train, ("method", "data", *SEGMENTER_TRAIN_KEYS)),
            Stage("evaluate", evaluate_segmenter, SEGMENTER_TEST_KEYS, ("segmenter",)),
            Stage("references", compute_references, ("data", "data.val_split", "eval.references")),
            Stage("report", write_run_report, ("eval.gallery",), ("evaluate", "references")),
        ]

    def train(self, ctx) -> None:
        if self.regime == "semi":
            labeled = self.splits.labeled.labeled
            fit_segmenter(ctx, Supervision.semi(self.splits.labeled, tags=False), ids=set(labeled))
        else:
            fit_segmenter(ctx, Supervision(masks="all", tags=False))

    def inference_model(self, run_dir: str | Path, device: str = "auto", **protocol) -> Predictor:
        seg = self.cfg.segmenter.model
        return trained_segmenter(self.cfg, self.classes, run_dir, device, normalization_of(seg), **protocol)

    def report_notes(self, ctx) -> list[str]:
        seen = "the labeled images' masks" if self.regime == "semi" else "every training mask"
        return [f"{init_note('segmenter', ctx.cfg.segmenter.model)}; trained on {seen} (an upper bound)."]
