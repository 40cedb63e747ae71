"""mIoU over named subsets of the classes and their harmonic mean: the weak-shot report (SimFormer:
base and novel classes, Zhou et al. 2022; "harmonic IoU" as in zero-shot segmentation), for any metrics.

The IoU of each class is that of the full confusion matrix (every pixel of every class counts, as in the
papers' protocol); a subset's mIoU averages the IoUs of its classes that occur in the ground truth.

Example:
    >>> import torch
    >>> from lesseg.eval import ConfusionMatrix
    >>> cm = ConfusionMatrix(3)
    >>> cm.update(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2]))
    >>> m = subset_miou(cm.metrics(["a", "b", "c"]), {"base": ["a", "b"], "novel": ["c"]})
    >>> m["base"], m["novel"], round(m["harmonic"], 4)
    (0.5, 1.0, 0.6667)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lesseg.eval.confusion import SegMetrics


def subset_miou(metrics: SegMetrics | dict, subsets: Mapping[str, Sequence[str]],
                harmonic: bool = True) -> dict[str, float | None]:  # fmt: skip
    """``{subset: mIoU}`` over the classes named in each subset (``None`` where none of them occurs in
    the ground truth), and with ``harmonic`` and two or more subsets their harmonic mean as ``harmonic``
    (0 when any subset scores 0, None when any is None).

    Raises:
        ValueError: a subset names a class the metrics do not have (the message lists the valid names).
    """
    per_class = metrics.per_class_iou if isinstance(metrics, SegMetrics) else metrics["per_class_iou"]
    out: dict[str, float | None] = {}
    for name, classes in subsets.items():
        unknown = [c for c in classes if c not in per_class]
        if unknown:
            raise ValueError(
                f"subset {name!r} names unknown class(es) {unknown}; classes: {', '.join(per_class)}"
            )
        present = [per_class[c] for c in classes if per_class[c] is not None]
        out[name] = sum(present) / len(present) if present else None
    if harmonic and len(subsets) >= 2:
        values = [out[name] for name in subsets]
        if any(v is None for v in values):
            out["harmonic"] = None
        elif any(v == 0 for v in values):
            out["harmonic"] = 0.0
        else:
            out["harmonic"] = len(values) / sum(1 / v for v in values)
    return out
