"""The confusion matrix behind every segmentation metric: bincount over a whole evaluation set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


class ConfusionMatrix:
    """Counts (ground truth, prediction) pixel pairs over an evaluation set.

    Rows are ground-truth classes, columns predictions. ``num_preds`` may differ from ``num_classes`` (K
    clusters against C classes in the unsupervised protocol). Ground-truth pixels equal to ``ignore_index``
    are dropped; a prediction outside ``[0, num_preds)`` is a bug upstream and raises.

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> cm.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 255]))  # the 255 pixel is dropped
        >>> round(cm.metrics().miou, 4)  # class 0: 1, class 1: 1/2, class 2 absent from the ground truth
        0.75
    """

    def __init__(self, num_classes: int, num_preds: int | None = None, ignore_index: int = 255):
        self.num_classes = num_classes
        self.num_preds = num_classes if num_preds is None else num_preds
        self.ignore_index = ignore_index
        self.mat = torch.zeros(self.num_classes, self.num_preds, dtype=torch.int64)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add a batch of predictions (class or cluster indices) and targets of the same shape."""
        pred = torch.as_tensor(pred)
        target = torch.as_tensor(target)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}"
            )
        pred = pred.reshape(-1).to(self.mat.device, torch.int64)
        target = target.reshape(-1).to(self.mat.device, torch.int64)
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if target.numel() and (target.min() < 0 or target.max() >= self.num_classes):
            raise ValueError(f"target values must lie in 0..{self.num_classes - 1} or be {self.ignore_index}")
        if pred.numel() and (pred.min() < 0 or pred.max() >= self.num_preds):
            raise ValueError(
                f"predictions must lie in 0..{self.num_preds - 1}, got {pred.min()}..{pred.max()}"
            )
        idx = target * self.num_preds + pred
        self.mat += torch.bincount(idx, minlength=self.num_classes * self.num_preds).reshape(self.mat.shape)

    def reset(self) -> None:
        self.mat.zero_()

    def reduce_from_all_processes(self) -> None:
        """Sum the matrix over all DDP processes (a no-op without torch.distributed)."""
        if dist.is_available() and dist.is_initialized():
            mat = self.mat.to("cuda") if dist.get_backend() == "nccl" else self.mat
            dist.all_reduce(mat)
            self.mat = mat.to(self.mat.device)

    def metrics(self, class_names: list[str] | tuple[str, ...] | None = None) -> SegMetrics:
        """Per-class IoU, mIoU and pixel accuracy; needs a square matrix (match clusters first)."""
        if self.num_preds != self.num_classes:
            raise ValueError(
                f"a {self.num_classes}x{self.num_preds} matrix has no IoU until clusters are matched to classes; "
                "use lesseg.eval.hungarian_match or majority_match"
            )
        return metrics_from_matrix(self.mat.cpu().numpy(), class_names)


@dataclass
class SegMetrics:
    """Metrics of one confusion matrix. ``miou`` averages over classes present in the ground truth."""

    miou: float
    pixel_acc: float
    per_class_iou: dict[str, float | None]  # None: class absent from the ground truth (not averaged)
    num_pixels: int

    def to_dict(self) -> dict:
        return {
            "miou": self.miou,
            "pixel_acc": self.pixel_acc,
            "per_class_iou": self.per_class_iou,
            "num_pixels": self.num_pixels,
        }


def metrics_from_matrix(mat: np.ndarray, class_names=None) -> SegMetrics:
    """Metrics of a C x M matrix, M >= C: columns past C hold pixels predicted as no class at all
    (unmatched clusters), which count against their ground-truth class's IoU and the accuracy."""
    mat = np.asarray(mat, dtype=np.float64)
    n = mat.shape[0]
    if mat.ndim != 2 or mat.shape[1] < n:
        raise ValueError(f"expected a C x M confusion matrix with M >= C, got shape {mat.shape}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for a {n}-class confusion matrix")
    tp = np.diag(mat[:, :n])
    gt = mat.sum(1)
    union = gt + mat[:, :n].sum(0) - tp
    present = gt > 0
    iou = np.divide(tp, union, out=np.zeros(n), where=union > 0)
    total = mat.sum()
    return SegMetrics(
        miou=float(iou[present].mean()) if present.any() else 0.0,
        pixel_acc=float(tp.sum() / total) if total else 0.0,
        per_class_iou={name: (float(iou[i]) if present[i] else None) for i, name in enumerate(names)},
        num_pixels=int(total),
    )
