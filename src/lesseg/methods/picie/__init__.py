"""PiCIE: Cho, Mall, Bala & Hariharan, "PiCIE: Unsupervised Semantic Segmentation using Invariance and
Equivariance in Clustering", CVPR 2021; and its Modified DeepCluster (MDC) baseline. No labels at all.

- :mod:`.core`: the two views, their features, the centroid classifier and the loss (Eq. 7);
- :mod:`.stages`: its pipeline's own stages (``features`` with per-epoch clustering, ``cluster_eval``);
- :mod:`.method`: the method object and the config of its ``method`` section.

Example:
    >>> from lesseg.config import load_config
    >>> cfg = load_config("configs/picie/synthetic.yaml")
    >>> cfg.method.name, cfg.method.variant
    ('picie', 'picie')
"""

from lesseg.methods.picie.core import (
    ClusterSegmenter,
    PiCIEViews,
    base_transform,
    centroid_logits,
    cluster_weights,
    photometric,
    picie_loss,
    view_features,
)
from lesseg.methods.picie.method import PiCIEConfig, PiCIEMethod

__all__ = [
    "ClusterSegmenter", "PiCIEConfig", "PiCIEMethod", "PiCIEViews", "base_transform", "centroid_logits",
    "cluster_weights", "photometric", "picie_loss", "view_features",
]  # fmt: skip
