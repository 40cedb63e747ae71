"""Refinement: from a trained classifier's class activation maps to pixel pseudo-labels.

The flow::

    classifier --infer_cams--> CamResult (per image: tagged classes, maps in [0, 1] at full resolution)
        --save_cams / load_cams--> cams/<id>.npz
        --cams_to_labels--> HxW class indices (background plane at a threshold, argmax, ignore band)
        --save_pseudo_label--> pseudo_labels/<id>.png (palette PNG)

:func:`infer_cams` follows the IRN / Puzzle-CAM recipe (scales 0.5-2.0, flips, ReLU, per-class max
normalisation), batched over images. :func:`threshold_sweep` scores CAMs at the background thresholds papers
sweep, and :func:`coverage` says how much of a label map is labelled. A random walk over predicted affinities
and a dense CRF will join this package as further steps between CAMs and labels.
"""

from lesseg.refine.cams import DEFAULT_SCALES, CamResult, infer_cams, load_cams, save_cams
from lesseg.refine.pseudo_labels import (
    DEFAULT_SWEEP,
    cams_to_labels,
    coverage,
    save_pseudo_label,
    threshold_sweep,
)

__all__ = [
    "DEFAULT_SCALES",
    "DEFAULT_SWEEP",
    "CamResult",
    "cams_to_labels",
    "coverage",
    "infer_cams",
    "load_cams",
    "save_cams",
    "save_pseudo_label",
    "threshold_sweep",
]
