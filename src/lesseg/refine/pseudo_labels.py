"""CAMs to pseudo-labels: a constant background plane (when the dataset has a background class), argmax over
the image's own classes, and an optional confidence band of ignored pixels.

Example:
    >>> from lesseg.data.classes import ClassInfo
    >>> classes = ClassInfo(("background", "cat", "dog"), background="background")
    >>> res = CamResult(np.array([1]), np.array([[[0.1, 0.5, 0.9]]], dtype=np.float32))  # output 1 = "dog"
    >>> cams_to_labels(res, classes, bg_threshold=0.3).tolist()
    [[0, 2, 2]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lesseg.data.classes import ClassInfo
from lesseg.data.imageio import color_palette, save_label_png
from lesseg.eval import ConfusionMatrix
from lesseg.refine.cams import CamResult

#: Background thresholds of the CAM-mIoU sweep papers report (IRN / Puzzle-CAM ``evaluate.py``).
DEFAULT_SWEEP = tuple(round(0.05 * i, 2) for i in range(1, 16))  # 0.05, 0.10, ..., 0.75


def cams_to_labels(
    result: CamResult, classes: ClassInfo, bg_threshold: float | None = None, ignore_band: float = 0.0
) -> np.ndarray:
    """An int64 HxW label map of dataset class indices (``classes.ignore_index`` where ignored).

    Model output ``k`` is dataset class ``classes.tag_indices[k]``.

    * With a background class: the candidates are a constant plane ``bg_threshold`` (required) followed by
      the image's class maps; each pixel takes the argmax (ties go to the background). An image without
      tags is all background.
    * Without one: the argmax among the image's own class maps (no constant plane); a single-tag image is
      that class everywhere, an image without tags is all ignore.

    ``ignore_band``: a pixel whose best candidate score exceeds the second best (the background plane
    included) by less than ``ignore_band`` is ignored: the CAMs cannot tell its class. ``0`` turns it off;
    with a single candidate there is no second score and nothing is ignored.
    """
    cams = np.asarray(result.cams, dtype=np.float32)
    keys = np.asarray(result.classes, dtype=np.int64).reshape(-1)
    tag_indices = np.asarray(classes.tag_indices, dtype=np.int64)
    if cams.ndim != 3 or len(cams) != len(keys):
        raise ValueError(f"cams must be [K, H, W] with K = len(classes); got {cams.shape} and {len(keys)}")
    if len(keys) and (keys.min() < 0 or keys.max() >= len(tag_indices)):
        raise ValueError(
            f"CAM classes {keys.tolist()} are not model outputs 0..{len(tag_indices) - 1} of this dataset"
        )
    if ignore_band < 0:
        raise ValueError(f"ignore_band must be >= 0, got {ignore_band}")
    bg = classes.background_index
    if bg is not None:
        if bg_threshold is None:
            raise ValueError(
                f"the dataset has a background class ({classes.background!r}): bg_threshold is required"
            )
        cams = np.concatenate([np.full((1, *cams.shape[1:]), bg_threshold, np.float32), cams])
        ids = np.concatenate([[bg], tag_indices[keys]])
    else:
        if bg_threshold is not None:
            raise ValueError("bg_threshold given, but the dataset has no background class; pass None")
        ids = tag_indices[keys]
    if len(cams) == 0:
        return np.full(cams.shape[1:], classes.ignore_index, np.int64)
    label = ids[cams.argmax(0)]
    if ignore_band > 0 and len(cams) >= 2:
        top2 = np.partition(cams, len(cams) - 2, axis=0)[-2:]
        label[top2[1] - top2[0] < ignore_band] = classes.ignore_index
    return label


def coverage(label: np.ndarray, ignore_index: int = 255) -> float:
    """The fraction of pixels that carry a label (not ``ignore_index``); 0 for an empty map."""
    label = np.asarray(label)
    return float((label != ignore_index).mean()) if label.size else 0.0


def save_pseudo_label(path: str | Path, label: np.ndarray, classes: ClassInfo) -> None:
    """Write ``label`` as a palette PNG (VOC colours; pixel values = class indices, ignore kept)."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"a label map must be HxW, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"label values must lie in 0..255 for a PNG, found {label.min()}..{label.max()}")
    save_label_png(path, label, color_palette(classes.num_classes, classes.ignore_index))


def threshold_sweep(
    results: Iterable[CamResult],
    masks: Iterable[np.ndarray],
    classes: ClassInfo,
    thresholds: Sequence[float] = DEFAULT_SWEEP,
    ignore_band: float = 0.0,
) -> dict[float, float]:
    """CAM mIoU at each background threshold: ``{threshold: miou}`` over all (result, mask) pairs.

    Needs a background class. ``results`` and ``masks`` (HxW ground truth, ignore allowed) may be
    generators: each pair is read once and scored at every threshold. The best threshold is
    ``max(sweep, key=sweep.get)``.
    """
    if classes.background is None:
        raise ValueError("a background threshold sweep needs a dataset with a background class")
    if not thresholds:
        raise ValueError("thresholds must not be empty")
    matrices = {
        float(t): ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index) for t in thresholds
    }
    count = 0
    for result, mask in zip(results, masks, strict=True):
        for t, cm in matrices.items():
            cm.update(cams_to_labels(result, classes, bg_threshold=t, ignore_band=ignore_band), mask)
        count += 1
    if count == 0:
        raise ValueError("threshold_sweep got no images")
    return {t: cm.metrics(classes.classes).miou for t, cm in matrices.items()}
