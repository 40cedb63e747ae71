"""The unsupervised protocol: match K clusters to C classes on one confusion matrix, then score.

Hungarian matching (one-to-one, optimal total overlap; scipy's ``linear_sum_assignment``) is the protocol of
PiCIE, IIC and STEGO. With K > C the unmatched clusters predict no class, so their pixels count as errors;
with K < C some classes get no cluster and score IoU 0. Majority vote (many-to-one: each cluster takes the
class it overlaps most) is reported for over-clustering and is optimistic: it lets K grow until every
cluster is pure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from lesseg.eval.confusion import ConfusionMatrix, SegMetrics, metrics_from_matrix


@dataclass
class ClusterMatch:
    """A cluster-to-class assignment and the metrics it gives.

    ``mapping[k]`` is the class of cluster ``k``, or -1 when the cluster is matched to no class.
    """

    method: str
    mapping: list[int]
    metrics: SegMetrics
    optimistic: bool

    def to_dict(self) -> dict:
        return {
            "matching": self.method,
            "optimistic": self.optimistic,
            "cluster_to_class": self.mapping,
            **self.metrics.to_dict(),
        }

    def apply(self, clusters: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
        """Turn a cluster map into a class map (unmatched clusters become ``ignore_index``)."""
        lut = torch.tensor([c if c >= 0 else ignore_index for c in self.mapping], dtype=torch.int64)
        return lut.to(clusters.device)[clusters.long()]


def _as_array(conf) -> np.ndarray:
    if isinstance(conf, ConfusionMatrix):
        conf = conf.mat.cpu().numpy()
    return np.asarray(conf, dtype=np.int64)


def _remap(mat: np.ndarray, mapping: list[int]) -> np.ndarray:
    """Sum cluster columns into class columns; unmatched clusters go to one extra 'no class' column."""
    c = mat.shape[0]
    out = np.zeros((c, c + 1), dtype=np.int64)
    for k, cls in enumerate(mapping):
        out[:, cls if cls >= 0 else c] += mat[:, k]
    return out


def hungarian_match(conf, class_names=None) -> ClusterMatch:
    """Optimal one-to-one matching of clusters (columns) to classes (rows) by total overlap.

    Args:
        conf: a ``ConfusionMatrix`` or a C x K array (rows ground truth, columns clusters); K != C allowed.
        class_names: names for ``per_class_iou``.

    Example:
        >>> # greedy takes the largest cell (5) first and ends with 5 pixels right; the optimum has 8
        >>> hungarian_match(np.array([[5, 4], [4, 0]])).mapping
        [1, 0]
    """
    mat = _as_array(conf)
    rows, cols = linear_sum_assignment(mat, maximize=True)
    mapping = [-1] * mat.shape[1]
    for r, k in zip(rows, cols):
        mapping[int(k)] = int(r)
    return ClusterMatch("hungarian", mapping, metrics_from_matrix(_remap(mat, mapping), class_names), False)


def majority_match(conf, class_names=None) -> ClusterMatch:
    """Many-to-one: every cluster takes the class it overlaps most. Optimistic for K > C."""
    mat = _as_array(conf)
    mapping = [int(c) for c in mat.argmax(0)]
    return ClusterMatch("majority", mapping, metrics_from_matrix(_remap(mat, mapping), class_names), True)
