"""Fully connected CRF refinement (Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with
Gaussian Edge Potentials", NeurIPS 2011), through the ``pydensecrf2`` package (optional extra ``crf``).

Two entry points, as the CAM papers use them:

* :func:`dense_crf` refines per-pixel class probabilities (a segmenter's softmax output) and returns the
  posterior probabilities: Puzzle-CAM's test-time CRF.
* :func:`crf_on_labels` refines a hard label map (each pixel's label is trusted with probability ``gt_prob``)
  and returns the refined labels: the label CRF IRN and Puzzle-CAM use to make affinity labels and
  pseudo-labels.

Both use a Potts model with a Gaussian (smoothness) kernel and a bilateral (appearance) kernel, solved by
mean-field inference. ``pydensecrf2`` is a C++ extension built from source (needs g++)::

    pip install 'lesseg[crf]'

It installs the module ``pydensecrf.densecrf`` (the same name as the unmaintained original ``pydensecrf``,
which works too). The import is lazy, so this module can be imported without it.

Example:
    >>> image = np.zeros((32, 32, 3), dtype=np.uint8)
    >>> image[:, 16:] = 255
    >>> labels = np.zeros((32, 32), dtype=np.int64)
    >>> labels[:, 12:] = 1                         # edge 4 px left of the image edge
    >>> refined = crf_on_labels(image, labels, num_labels=2)
    >>> int(refined[16].argmax())                  # the first column labelled 1
    16
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from lesseg.errors import LessegError

# Official parameter values (IRN, Ahn et al. CVPR 2019, ``misc/imutils.py``; Puzzle-CAM, Jo & Yu ICIP 2021,
# ``core/puzzle_utils.py`` / ``tools/ai/demo_utils.py``).
#: Label CRF for affinity labels and pseudo-labels: probability given to each pixel's own label.
LABEL_CRF_GT_PROB = 0.7
#: Label CRF Gaussian (smoothness) kernel: spatial std in pixels and Potts weight.
LABEL_CRF_GAUSSIAN_SXY = 3
LABEL_CRF_GAUSSIAN_COMPAT = 3
#: Label CRF bilateral (appearance) kernel: spatial std in pixels, colour std, and Potts weight.
LABEL_CRF_BILATERAL_SXY = 50
LABEL_CRF_BILATERAL_SRGB = 5
LABEL_CRF_BILATERAL_COMPAT = 10
#: Mean-field iterations of the label CRF: Puzzle-CAM's README makes affinity labels with 10 iterations ...
LABEL_CRF_ITERATIONS_AFFINITY = 10
#: ... and the final pseudo-labels (after the random walk) with 1 iteration.
LABEL_CRF_ITERATIONS_PSEUDO_LABELS = 1
#: Test-time CRF on the segmenter's probabilities (Puzzle-CAM ``inference_segmentation.py``).
PROB_CRF_ITERATIONS = 10
PROB_CRF_GAUSSIAN_SXY = 3
PROB_CRF_GAUSSIAN_COMPAT = 3
PROB_CRF_BILATERAL_SXY = 80
PROB_CRF_BILATERAL_SRGB = 13
PROB_CRF_BILATERAL_COMPAT = 10
#: Probabilities are clipped to at least this before ``-log`` (as ``pydensecrf.utils.unary_from_softmax``).
PROB_CLIP = 1e-5
#: How far per-pixel probabilities may sum from 1 before :func:`dense_crf` refuses them.
SUM_TOLERANCE = 1e-3

_MODULE = "pydensecrf.densecrf"


class CrfUnavailableError(LessegError, ImportError):
    """The dense CRF was asked for but its optional dependency ``pydensecrf2`` is not installed."""


def _densecrf() -> ModuleType:
    """The ``pydensecrf.densecrf`` module, or a :class:`CrfUnavailableError` that says how to install it."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:
        raise CrfUnavailableError(
            f"the dense CRF needs the module {_MODULE!r} from the package 'pydensecrf2', which is not "
            f"installed ({exc}); install the extra with: pip install 'lesseg[crf]' (it builds a C++ "
            "extension, so g++ is needed)"
        ) from exc
    return dcrf


def crf_unavailable_reason() -> str | None:
    """None when the dense CRF can run, else why not (and how to install it)."""
    try:
        _densecrf()
    except CrfUnavailableError as e:
        return str(e)
    return None


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 HxWx3 RGB array, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be a uint8 HxWx3 RGB array, got shape {image.shape}"
            + (" (a grayscale image: stack it to 3 channels)" if image.ndim == 2 else "")
        )
    # pydensecrf wants a writable C-contiguous buffer (images decoded by PIL are read-only views)
    return np.require(image, requirements=["C", "W"])


def _check_iterations(iterations: int) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    return int(iterations)


def _solve(
    unary: np.ndarray,
    image: np.ndarray,
    iterations: int,
    gaussian_sxy: float,
    gaussian_compat: float,
    bilateral_sxy: float,
    bilateral_srgb: float,
    bilateral_compat: float,
) -> np.ndarray:
    """Mean-field inference on a [C, H*W] unary energy; the [C, H, W] float32 posterior."""
    dcrf = _densecrf()
    h, w = image.shape[:2]
    n = unary.shape[0]
    crf = dcrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=image, compat=bilateral_compat)
    q = np.array(crf.inference(iterations), dtype=np.float32)
    return q.reshape(n, h, w)


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    iterations: int = PROB_CRF_ITERATIONS,
    gaussian_sxy: float = PROB_CRF_GAUSSIAN_SXY,
    gaussian_compat: float = PROB_CRF_GAUSSIAN_COMPAT,
    bilateral_sxy: float = PROB_CRF_BILATERAL_SXY,
    bilateral_srgb: float = PROB_CRF_BILATERAL_SRGB,
    bilateral_compat: float = PROB_CRF_BILATERAL_COMPAT,
) -> np.ndarray:
    """Refine per-pixel class probabilities with a dense CRF (Krähenbühl & Koltun 2011).

    The unary energy is ``-log p`` with ``p`` clipped to at least :data:`PROB_CLIP`; the defaults are
    Puzzle-CAM's test-time CRF on the segmenter's softmax output.

    Args:
        image: uint8 HxWx3 RGB image the probabilities belong to.
        probs: [C, H, W] float probabilities, a distribution over the C classes at each pixel (non-negative,
            summing to 1 within :data:`SUM_TOLERANCE`; they are not renormalised, so a logit map is refused
            rather than silently misread).
        iterations: mean-field iterations (0 returns the normalised clipped input).
        gaussian_sxy, gaussian_compat: spatial std (pixels) and Potts weight of the smoothness kernel.
        bilateral_sxy, bilateral_srgb, bilateral_compat: spatial std (pixels), colour std and Potts weight of
            the appearance kernel.

    Returns:
        float32 [C, H, W] posterior probabilities (each pixel sums to 1).

    Example:
        >>> image = np.zeros((8, 8, 3), dtype=np.uint8)
        >>> probs = np.full((2, 8, 8), 0.5, dtype=np.float32)
        >>> dense_crf(image, probs).shape
        (2, 8, 8)
    """
    image = _check_image(image)
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"probs must be a [C, H, W] array of class probabilities, got shape {probs.shape}")
    if probs.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"probs [C, H, W] {probs.shape} and image HxWx3 {image.shape} differ in size; "
            "resize the probabilities to the image first"
        )
    if probs.shape[0] < 1:
        raise ValueError("probs must have at least one class plane (C >= 1)")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"probs must be a float array of probabilities, got dtype {probs.dtype}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0:
        raise ValueError("probs must be finite and non-negative (softmax probabilities, not logits)")
    sums = probs.sum(axis=0, dtype=np.float64)
    worst = float(np.abs(sums - 1.0).max())
    if worst > SUM_TOLERANCE:
        raise ValueError(
            f"probs must sum to 1 over the class axis (axis 0) at each pixel, but a pixel is off by {worst:.3g} "
            f"(tolerance {SUM_TOLERANCE}); apply a softmax over the classes first"
        )
    iterations = _check_iterations(iterations)
    c = probs.shape[0]
    unary = -np.log(np.clip(probs.reshape(c, -1).astype(np.float32), PROB_CLIP, 1.0))
    return _solve(
        unary,
        image,
        iterations,
        gaussian_sxy,
        gaussian_compat,
        bilateral_sxy,
        bilateral_srgb,
        bilateral_compat,
    )


def crf_on_labels(
    image: np.ndarray,
    labels: np.ndarray,
    num_labels: int,
    gt_prob: float = LABEL_CRF_GT_PROB,
    iterations: int = LABEL_CRF_ITERATIONS_AFFINITY,
    gaussian_sxy: float = LABEL_CRF_GAUSSIAN_SXY,
    gaussian_compat: float = LABEL_CRF_GAUSSIAN_COMPAT,
    bilateral_sxy: float = LABEL_CRF_BILATERAL_SXY,
    bilateral_srgb: float = LABEL_CRF_BILATERAL_SRGB,
    bilateral_compat: float = LABEL_CRF_BILATERAL_COMPAT,
    ignore_index: int | None = None,
    label_values: Sequence[int] | None = None,
) -> np.ndarray:
    """Refine a hard label map with a dense CRF (Krähenbühl & Koltun 2011): the label CRF of IRN/Puzzle-CAM.

    The unary follows ``pydensecrf.utils.unary_from_labels(..., zero_unsure=False)``: each pixel's own label
    has probability ``gt_prob`` and the other ``num_labels - 1`` labels share ``1 - gt_prob``; pixels equal
    to ``ignore_index`` are uninformative (uniform) and receive a label from their surroundings. The defaults
    are the official values; use :data:`LABEL_CRF_ITERATIONS_PSEUDO_LABELS` (1) for the final pseudo-labels.

    Args:
        image: uint8 HxWx3 RGB image.
        labels: HxW integer label map. Without ``label_values`` its values are ``0 .. num_labels - 1``; with
            ``label_values`` they are those values (e.g. ``[0, 8, 15]``: background and the image's classes,
            as IRN passes only the classes present), so the CRF needs only ``len(label_values)`` planes.
        num_labels: number of labels (CRF planes); equals ``len(label_values)`` when that is given.
        gt_prob: probability of a pixel's own label, in (0, 1).
        iterations: mean-field iterations (0 returns the input labels, ignored pixels resolved by ties).
        gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat: as in
            :func:`dense_crf`.
        ignore_index: a value in ``labels`` that means "unknown" (e.g. 255); it must not be a label.
        label_values: the label values, when they are not ``0 .. num_labels - 1``.

    Returns:
        int64 HxW refined labels, in the caller's label values (never ``ignore_index``).

    Example:
        >>> image = np.zeros((4, 4, 3), dtype=np.uint8)
        >>> labels = np.full((4, 4), 15)
        >>> labels[0, 0] = 255                         # unknown pixel, filled from its neighbours
        >>> crf_on_labels(image, labels, 2, ignore_index=255, label_values=[0, 15])[0, 0]
        np.int64(15)
    """
    image = _check_image(image)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be an HxW integer label map, got shape {labels.shape}")
    if labels.shape != image.shape[:2]:
        raise ValueError(
            f"labels HxW {labels.shape} and image HxWx3 {image.shape} differ in size; "
            "resize the labels (nearest neighbour) to the image first"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    num_labels = int(num_labels)
    if not 0.0 < gt_prob < 1.0:
        raise ValueError(f"gt_prob must be in the open interval (0, 1), got {gt_prob!r}")
    iterations = _check_iterations(iterations)

    if label_values is None:
        values = np.arange(num_labels, dtype=np.int64)
    else:
        values = np.asarray(label_values, dtype=np.int64).reshape(-1)
        if len(values) != num_labels:
            raise ValueError(f"label_values has {len(values)} values but num_labels is {num_labels}")
        if len(np.unique(values)) != len(values):
            raise ValueError(f"label_values must be distinct, got {list(values)}")
    if ignore_index is not None and ignore_index in values:
        raise ValueError(
            f"ignore_index {ignore_index} is also a label value ({_describe(values, label_values)}); "
            "choose a value outside the labels"
        )

    known = np.ones(labels.shape, dtype=bool) if ignore_index is None else labels != ignore_index
    # Map the caller's values to plane indices 0..n-1 (sorted lookup; unknown values are caught below).
    order = np.argsort(values)
    sorted_values = values[order]
    pos = np.clip(np.searchsorted(sorted_values, labels), 0, num_labels - 1)
    valid = sorted_values[pos] == labels
    bad = known & ~valid
    if bad.any():
        found = sorted({int(v) for v in np.unique(labels[bad])[:10]})
        extra = f" or ignore_index {ignore_index}" if ignore_index is not None else ""
        raise ValueError(
            f"labels contain values {found} outside the labels ({_describe(values, label_values)}{extra})"
        )
    index = np.where(known, order[pos], 0)

    if num_labels == 1:
        return np.full(labels.shape, values[0], dtype=np.int64)

    # unary_from_labels(zero_unsure=False) with an "unknown" value: energies are -log probabilities.
    n_pixels = labels.size
    unary = np.full((num_labels, n_pixels), -np.log((1.0 - gt_prob) / (num_labels - 1)), dtype=np.float32)
    flat_known = known.reshape(-1)
    cols = np.flatnonzero(flat_known)
    unary[index.reshape(-1)[cols], cols] = -np.log(gt_prob)
    unary[:, ~flat_known] = -np.log(1.0 / num_labels)

    q = _solve(
        unary,
        image,
        iterations,
        gaussian_sxy,
        gaussian_compat,
        bilateral_sxy,
        bilateral_srgb,
        bilateral_compat,
    )
    return values[np.argmax(q, axis=0)]


def _describe(values: np.ndarray, label_values: Sequence[int] | None) -> str:
    if label_values is None:
        return f"0 .. {len(values) - 1} for num_labels={len(values)}"
    return f"label_values {[int(v) for v in values]}"
