"""Affinity labels: the confident part of the CAMs, from which IRN's boundary branch learns which pixel pairs
belong together (Ahn, Cho & Kwak, "Weakly Supervised Learning of Instance Segmentation with Inter-pixel
Relations", CVPR 2019, Sec. 3.2; recipe of Puzzle-CAM's ``make_affinity_labels.py``).

Only pixels whose class the CAMs tell with confidence get a label; the rest are ignored, so the affinity
loss (:mod:`lesseg.refine.affinity_loss`) sees only pairs of confidently labelled pixels.

Example:
    >>> import numpy as np
    >>> from lesseg.data.classes import ClassInfo
    >>> from lesseg.refine.cams import CamResult
    >>> classes = ClassInfo(("background", "cat", "dog"), background="background")
    >>> res = CamResult(np.array([1]), np.array([[[0.05, 0.2, 0.6]]], dtype=np.float32))  # output 1: "dog"
    >>> affinity_labels(res, classes).tolist()  # bg (< 0.10), unsure (0.10..0.40), dog (> 0.40)
    [[0, 255, 2]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from lesseg.data.classes import ClassInfo
from lesseg.refine.cams import CamResult

#: IRN / Puzzle-CAM thresholds of the confident-foreground and confident-background maps.
FG_THRESHOLD = 0.40
BG_THRESHOLD = 0.10
#: Datasets without a background class: minimum CAM score of the top class, and its minimum lead over the
#: second best. Chosen on synthetic no-background scenes (benchmarks/affinity_thresholds.py, multi-tag
#: images): the margin buys precision for coverage far better than the score does (m = 0.2 halves the
#: labelled pixels' error, 9.5% -> 4.5%, for 12% of coverage; t barely matters below 0.4), so t is low.
MIN_SCORE = 0.2
MIN_MARGIN = 0.2

#: ``crf(image, labels, num_labels) -> labels``: refines an HxW map of labels ``0..num_labels-1``.
LabelCRF = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def affinity_labels(
    result: CamResult,
    classes: ClassInfo,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
    crf: LabelCRF | None = None,
    image: np.ndarray | None = None,
    min_score: float = MIN_SCORE,
    min_margin: float = MIN_MARGIN,
) -> np.ndarray:
    """An int64 HxW map of dataset class indices, ``classes.ignore_index`` where the CAMs are not confident.

    Model output ``k`` (``result.classes``) is dataset class ``classes.tag_indices[k]``.

    **With a background class** (IRN / Puzzle-CAM): two argmax maps over a constant background plane followed
    by the image's class maps (ties go to the background), one with the plane at ``fg_threshold`` (its
    foreground is confident) and one at ``bg_threshold`` (its background is confident). Each map is
    optionally refined by ``crf``. The result is the fg-threshold map's class where that map is foreground,
    the background where both maps are background, and ignore elsewhere (background only under the
    fg-threshold map). An image without tags is all background.

    **Without one**: a pixel gets its top class when that class's CAM score is ``>= min_score`` and beats the
    second best by ``>= min_margin``, else ignore; a single-tag image gets its class where the score is
    ``>= min_score``; an image without tags is all ignore. ``fg_threshold``, ``bg_threshold`` and ``crf`` are
    not used (``crf`` must then be ``None``). ``min_score`` and ``min_margin`` apply only here; their
    defaults were chosen on synthetic no-background scenes (see benchmarks).

    Args:
        result: the image's CAMs in [0, 1] at full resolution.
        classes: the dataset's classes.
        fg_threshold, bg_threshold: background planes, ``bg_threshold <= fg_threshold`` (0.40 / 0.10 in
            Puzzle-CAM's README).
        crf: called as ``crf(image, labels, num_labels)`` on each of the two maps, with ``labels`` an HxW
            int64 map of compact labels ``0..num_labels-1`` (0 the background plane, ``i`` the map
            ``result.classes[i - 1]``) and ``num_labels = len(result.classes) + 1``, as the official code
            calls its label CRF (``unary_from_labels`` with ``n_labels = K + 1``); it returns a refined map of
            the same shape and label range. Puzzle-CAM uses a dense CRF on labels (gt_prob 0.7, 10
            iterations). Not called for an image without tags.
        image: the HxWx3 uint8 RGB image, required with ``crf``.
        min_score, min_margin: the no-background rule (t and m above).

    Example (no background class):
        >>> classes = ClassInfo(("sky", "tree", "road"))
        >>> cams = np.array([[[0.9, 0.5, 0.2]], [[0.1, 0.45, 0.1]]], dtype=np.float32)  # outputs 0, 2
        >>> affinity_labels(CamResult(np.array([0, 2]), cams), classes).tolist()
        [[0, 255, 255]]
    """
    cams, keys = _check_result(result, classes)
    ids = np.asarray(classes.tag_indices, dtype=np.int64)[keys]
    bg = classes.background_index
    ignore = classes.ignore_index
    if bg is None:
        if crf is not None:
            raise ValueError("crf is only used with a background class; this dataset has none, pass crf=None")
        return _labels_without_background(cams, ids, ignore, min_score, min_margin)
    if not 0.0 <= bg_threshold <= fg_threshold:
        raise ValueError(
            f"thresholds must satisfy 0 <= bg_threshold <= fg_threshold, got bg_threshold={bg_threshold} "
            f"and fg_threshold={fg_threshold}"
        )
    if crf is not None:
        _check_image(image, cams.shape[1:])
    fg_map = _thresholded_argmax(cams, fg_threshold)
    bg_map = _thresholded_argmax(cams, bg_threshold)
    if crf is not None and len(keys):
        fg_map = _run_crf(crf, image, fg_map, len(keys) + 1)
        bg_map = _run_crf(crf, image, bg_map, len(keys) + 1)
    lookup = np.concatenate([[bg], ids])
    label = lookup[fg_map]
    label[fg_map == 0] = ignore
    label[(fg_map == 0) & (bg_map == 0)] = bg
    return label


def _check_result(result: CamResult, classes: ClassInfo) -> tuple[np.ndarray, np.ndarray]:
    cams = np.asarray(result.cams, dtype=np.float32)
    keys = np.asarray(result.classes, dtype=np.int64).reshape(-1)
    if cams.ndim != 3 or len(cams) != len(keys):
        raise ValueError(
            f"result.cams must be [K, H, W] with K = len(result.classes); got {cams.shape} and {len(keys)}"
        )
    num_outputs = len(classes.tag_indices)
    if len(keys) and (keys.min() < 0 or keys.max() >= num_outputs):
        raise ValueError(
            f"result.classes {keys.tolist()} are not model outputs 0..{num_outputs - 1} of this dataset"
        )
    return cams, keys


def _check_image(image: np.ndarray | None, size: tuple[int, ...]) -> None:
    if image is None:
        raise ValueError("image is required with crf: pass the HxWx3 uint8 RGB image the CAMs belong to")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != tuple(size):
        raise ValueError(
            f"image must be HxWx3 with the CAMs' size {tuple(size)}, got an array of shape {image.shape}"
        )


def _thresholded_argmax(cams: np.ndarray, threshold: float) -> np.ndarray:
    """Compact labels: 0 where the constant plane ``threshold`` wins (ties included), else 1 + map index."""
    if len(cams) == 0:
        return np.zeros(cams.shape[1:], np.int64)
    best = cams.argmax(0)
    return np.where(cams.max(0) > threshold, best + 1, 0).astype(np.int64)


def _run_crf(crf: LabelCRF, image: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    out = np.asarray(crf(image, labels, num_labels))
    if out.shape != labels.shape or not np.issubdtype(out.dtype, np.integer):
        raise ValueError(
            f"crf must return an integer label map of shape {labels.shape}, got {out.dtype} {out.shape}"
        )
    if out.size and (out.min() < 0 or out.max() >= num_labels):
        raise ValueError(f"crf returned labels {out.min()}..{out.max()}, outside 0..{num_labels - 1}")
    return out.astype(np.int64)


def _labels_without_background(
    cams: np.ndarray, ids: np.ndarray, ignore: int, min_score: float, min_margin: float
) -> np.ndarray:
    if min_margin < 0:
        raise ValueError(f"min_margin must be >= 0, got {min_margin}")
    label = np.full(cams.shape[1:], ignore, np.int64)
    if len(cams) == 0:
        return label
    best = cams.argmax(0)
    top = cams.max(0)
    keep = top >= min_score
    if len(cams) >= 2:
        second = np.partition(cams, len(cams) - 2, axis=0)[-2]
        keep &= top - second >= min_margin
    label[keep] = ids[best[keep]]
    return label


def downsample_labels(
    labels: np.ndarray | torch.Tensor, size: int | Sequence[int]
) -> np.ndarray | torch.Tensor:
    """Nearest-neighbour resize of label maps ``[..., H, W]`` to ``size = (h, w)`` (or ``h = w = size``).

    Output cell ``(i, j)`` takes the input pixel at its centre, ``(floor((i + 0.5) H / h), floor((j + 0.5)
    W / w))``, as PIL's nearest resize does (IRN trains the boundary branch at stride 4: a 512x512 crop's
    labels become 128x128). Works on numpy arrays and torch tensors (kept on their device); the label
    values, ignore included, are never mixed.

    Example:
        >>> downsample_labels(np.arange(16).reshape(4, 4), 2).tolist()
        [[5, 7], [13, 15]]
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise ValueError(f"size must be a positive int or a pair (h, w) of positive ints, got {size!r}")
    if labels.ndim < 2:
        raise ValueError(f"labels must be [..., H, W], got shape {tuple(labels.shape)}")
    height, width = labels.shape[-2:]
    rows = (2 * np.arange(h, dtype=np.int64) + 1) * height // (2 * h)  # exact integer centre sampling
    cols = (2 * np.arange(w, dtype=np.int64) + 1) * width // (2 * w)
    if isinstance(labels, torch.Tensor):
        r = torch.from_numpy(rows).to(labels.device)
        c = torch.from_numpy(cols).to(labels.device)
        return labels[..., r[:, None], c[None, :]]
    return np.asarray(labels)[..., rows[:, None], cols[None, :]]
