"""Pseudo-labels from CAMs and a saliency map: the OAA recipe MCIS's official ``gen_gt.py`` uses (Jiang et al.
2019; Sun et al. 2020). Saliency comes from an external model, i.e. extra pixel-level supervision: lesseg
uses it only when the user gives a folder of saliency maps (``pseudo_labels.source=saliency``).

Per pixel, with saliency ``s`` in 0..255 and each class map min-max normalised to [0, 1]:

1. background score ``1 - s / 255``; class scores below 0.3 set to 0; label = argmax over {background,
   the image's classes};
2. ignored where more than one class score exceeds 0.99;
3. ignored where labelled background although salient (``s >= 32``) or covered by a class score > 0.95;
4. the whole image ignored when its foreground covers less than 1% of it.

Example:
    >>> import numpy as np
    >>> from lesseg.data.classes import ClassInfo
    >>> from lesseg.refine.cams import CamResult
    >>> classes = ClassInfo(("background", "cat"), background="background")
    >>> res = CamResult(np.array([0]), np.array([[[0.0, 0.2, 1.0, 0.9]]], dtype=np.float32))
    >>> saliency_labels(res, classes, np.array([[0, 40, 255, 255]], dtype=np.uint8)).tolist()
    [[0, 255, 1, 1]]
"""

from __future__ import annotations

import numpy as np

from lesseg.data.classes import ClassInfo
from lesseg.refine.cams import CamResult

MIN_SCORE = 0.3  # class scores below are dropped
MULTI_SCORE = 0.99  # pixels where two classes exceed this are ignored
SALIENT = 32  # saliency (0..255) from which a background pixel is ignored
COVERED = 0.95  # a background pixel with a class score above this is ignored
MIN_FOREGROUND = 0.01  # images whose foreground covers less are ignored whole


def saliency_labels(result: CamResult, classes: ClassInfo, saliency: np.ndarray) -> np.ndarray:
    """An int64 HxW label map (dataset class indices, ``classes.ignore_index`` where ignored) from one
    image's CAMs and its uint8 HxW saliency map (module docstring)."""
    if classes.background is None:
        raise ValueError("saliency pseudo-labels need a dataset with a background class")
    h, w = result.cams.shape[-2:]
    if saliency.shape != (h, w):
        raise ValueError(f"saliency map is {saliency.shape[1]}x{saliency.shape[0]}, the image {w}x{h}")
    sal = saliency.astype(np.float32)
    ignore = classes.ignore_index
    bg = classes.background_index
    if len(result.classes) == 0:
        label = np.full((h, w), bg, dtype=np.int64)
        label[sal >= SALIENT] = ignore
        return label
    cams = result.cams.astype(np.float32)
    lo = cams.min(axis=(1, 2), keepdims=True)
    hi = cams.max(axis=(1, 2), keepdims=True)
    scores = (cams - lo) / np.maximum(hi - lo, 1e-5)
    scores[scores < MIN_SCORE] = 0
    stack = np.concatenate([(1 - sal / 255)[None], scores])
    values = np.concatenate([[bg], np.asarray(classes.tag_indices)[result.classes]])
    label = values[stack.argmax(0)].astype(np.int64)
    label[(scores > MULTI_SCORE).sum(0) > 1] = ignore
    label[(label == bg) & ((sal >= SALIENT) | (scores > COVERED).any(0))] = ignore
    if ((label != bg) & (label != ignore)).mean() < MIN_FOREGROUND:
        label[:] = ignore
    return label
