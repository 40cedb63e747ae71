"""PiCIE: Cho, Mall, Bala & Hariharan, "PiCIE: Unsupervised Semantic Segmentation using Invariance and
Equivariance in Clustering", CVPR 2021; and its Modified DeepCluster (MDC) baseline.

No labels at all. Every epoch the pixel features of two views of each training image are clustered (one
mini-batch k-means per view, K clusters), every pixel gets its nearest centroid as label, and the network is
trained for one pass to predict those labels with the frozen centroids as a 1x1 classifier (Sec. 3.2-3.4):

    L = 1/2 (L_within(1) + L_within(2)) / 2 + 1/2 (L_cross(1->2) + L_cross(2->1)) / 2     (paper Eq. 7)

where L_within(v) is the cross-entropy of view v's features against view v's labels under view v's
centroids, and L_cross(1->2) that of view 1's features against view 2's labels under view 2's centroids.

Invariance: the two views get independent photometric transforms (colour jitter, blur, grayscale).
Equivariance: view 1 applies a geometric transform ``G`` (random resized crop, flip) to the *image*; view 2
applies the same ``G`` to the network's *feature map* of the whole image (:func:`view_features`), so both
describe the same pixels. Transforms are drawn per (seed, epoch, image): the clustering pass and the training
pass of an epoch see identical views, so the cached labels fit the pixels they are trained on.

MDC (``method.variant=mdc``): one augmented view, its own clusters and labels, within-view loss only. The
official MDC script trains a fresh linear head per epoch (DeepCluster's); ours keeps the frozen centroid
classifier (the official ``--nonparametric`` option), so the two methods differ only in the PiCIE terms.

This module holds the method's views, features and losses; :mod:`.stages` its pipeline's own stages and
:mod:`.method` the method object and its config section.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset

WEIGHTINGS = ("frequency", "inverse", "none")


def base_transform(size: int) -> T.Compose:
    """Resize the short side to ``size`` and centre-crop a ``size`` square (PiCIE's base and evaluation
    transform); the image stays uint8."""
    return T.Compose([T.RandomRescale(short_side=(size, size)), T.CenterCrop(size)])


def photometric(grayscale_p: float) -> list[T.Transform]:
    """One view's invariance transforms (official: jitter 0.3/0.3/0.3/0.1 with p 0.8, blur sigma in
    [0.1, 2] with p 0.5, grayscale)."""
    out: list[T.Transform] = [T.ColorJitter(0.3, 0.3, 0.3, 0.1, p=0.8), T.GaussianBlur((0.1, 2.0), p=0.5)]
    if grayscale_p > 0:
        out.append(T.RandomGrayscale(grayscale_p))
    return out


class PiCIEViews(Dataset):
    """The two views of each image of ``base`` (a :class:`SegDataset` whose transform gives the base image).

    Item ``i``: ``image1`` (photometric set 1, then the random resized crop and flip ``G``), ``image2``
    (photometric set 2, the whole base image resized to the view size; absent for MDC), ``params`` (``G``'s
    params as JSON, to replay on view 2's features), ``index``, and once :attr:`labels` ``[N, views, h, w]``
    is set, ``label1`` (and ``label2``). All draws come from ``seeded_rng(seed, epoch, i)``.
    """

    def __init__(self, base: SegDataset, view_size: int, min_scale: float = 0.5, flip_p: float = 0.5,
                 grayscale_p: float = 0.2, two_views: bool = True, seed: int = 0):  # fmt: skip
        self.base, self.seed, self.two_views = base, seed, two_views
        self.epoch = 0
        self.labels: np.ndarray | None = None
        geometric = [T.RandomResizedCrop(view_size, scale=(min_scale, 1.0)), T.RandomHorizontalFlip(flip_p)]
        self.view1 = T.Compose([*photometric(grayscale_p), *geometric, T.Normalize()])
        self.view2 = T.Compose([
            *photometric(grayscale_p), T.RandomRescale(short_side=(view_size, view_size)), T.Normalize(),
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        image = self.base[index]["image"]
        rng = T.seeded_rng(self.seed, self.epoch, index)
        v1, params = self.view1({"image": image}, rng)
        out = {"image1": v1["image"], "params": json.dumps([p for p in params if T.is_geometric(p)]),
               "index": index}  # fmt: skip
        if self.two_views:
            out["image2"] = self.view2({"image": image}, rng)[0]["image"]
        if self.labels is not None:
            for v in range(self.labels.shape[1]):
                out[f"label{v + 1}"] = torch.from_numpy(np.asarray(self.labels[index, v], dtype=np.int64))
        return out


def view_features(model: nn.Module, batch: dict, two_views: bool = True) -> list[torch.Tensor]:
    """The features of each view in view 1's frame: ``[model(image1), G(model(image2))]``, each
    ``[N, C, h, w]`` with unit norm per pixel (re-normalised after the replay's interpolation, as the
    official code normalises after its transform)."""
    f1 = model(batch["image1"])["features"]
    if not two_views:
        return [f1]
    params = [json.loads(p) for p in batch["params"]]
    f2 = T.replay_batch(params, model(batch["image2"])["features"], out_size=tuple(f1.shape[-2:]))
    return [f1, F.normalize(f2, dim=1)]


def centroid_logits(features: torch.Tensor, centroids: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """The frozen centroid classifier: ``f.c - |c|^2 / 2`` per cluster (``[N, K, h, w]``), whose argmax is
    the nearest centroid in squared Euclidean distance; ``bias=False`` gives the official ``f.c``."""
    logits = torch.einsum("nchw,kc->nkhw", features, centroids.to(features.dtype))
    if bias:
        logits = logits - 0.5 * (centroids * centroids).sum(1).to(logits.dtype)[None, :, None, None]
    return logits


def cluster_weights(counts: torch.Tensor, kind: str = "frequency") -> torch.Tensor | None:
    """Cross-entropy class weights from cluster sizes: ``frequency`` (size / total, the official code),
    ``inverse`` (1 / size, scaled to sum to K; empty clusters get 0) or ``none`` (None: unweighted).

    >>> cluster_weights(torch.tensor([1.0, 3.0])).tolist(), cluster_weights(torch.tensor([1.0, 3.0]), "inverse").tolist()
    ([0.25, 0.75], [1.5, 0.5])
    """
    if kind not in WEIGHTINGS:
        raise ValueError(f"cluster weights must be one of {', '.join(WEIGHTINGS)}, got {kind!r}")
    counts = counts.double()
    if kind == "none":
        return None
    if kind == "frequency":
        return (counts / counts.sum().clamp_min(1)).float()
    inv = torch.where(counts > 0, 1 / counts.clamp_min(1), torch.zeros_like(counts))
    return (inv * len(counts) / inv.sum().clamp_min(1e-12)).float()


def picie_loss(features: list[torch.Tensor], labels: list[torch.Tensor], centroids: list[torch.Tensor],
               weights: list[torch.Tensor | None], bias: bool = True) -> dict[str, torch.Tensor]:  # fmt: skip
    """Eq. 7: half the mean of the within-view cross-entropies plus half the mean of the cross-view ones
    (view ``a``'s features against view ``b``'s labels under view ``b``'s centroids and weights). With one
    view (MDC) the within-view term alone."""

    def ce(f: torch.Tensor, b: int) -> torch.Tensor:
        w = weights[b].to(f.device) if weights[b] is not None else None
        return F.cross_entropy(centroid_logits(f, centroids[b], bias).float(), labels[b], weight=w)

    within = torch.stack([ce(features[v], v) for v in range(len(features))]).mean()
    if len(features) == 1:
        return {"loss": within, "within": within.detach()}
    cross = (ce(features[0], 1) + ce(features[1], 0)) / 2
    return {"loss": (within + cross) / 2, "within": within.detach(), "cross": cross.detach()}


class ClusterSegmenter(nn.Module):
    """A trained PiCIE network with its evaluation clusters as a segmenter (what ``lesseg predict`` uses).

    Images are resized to ``short_side`` (the evaluation resolution) and the nearest-centroid scores brought
    back to the input size. With ``cluster_to_class`` (the Hungarian matching of the ``cluster_eval``
    stage) the logits are per class: each class takes the best score among its clusters (a class without a
    cluster gets none). Without it, the logits are per cluster.

    Args:
        model: the feature network (``{"features": ...}``).
        centroids: ``[K, C]`` evaluation centroids.
        cluster_to_class: class of each cluster, -1 for unmatched ones; None: predict clusters.
        num_classes: classes of the dataset (used with ``cluster_to_class``).
        short_side: the evaluation resolution (``data.crop_size``).
    """

    def __init__(self, model: nn.Module, centroids: torch.Tensor, cluster_to_class: list[int] | None = None,
                 num_classes: int | None = None, short_side: int = 320):  # fmt: skip
        super().__init__()
        self.model, self.short_side = model, short_side
        self.register_buffer("centroids", centroids.float().clone())
        self.mapping = cluster_to_class
        if cluster_to_class is not None:
            if num_classes is None:
                raise ValueError("num_classes is needed with cluster_to_class")
            lut = torch.zeros(num_classes, len(cluster_to_class), dtype=torch.bool)
            for k, c in enumerate(cluster_to_class):
                if c >= 0:
                    lut[c, k] = True
            self.register_buffer("members", lut)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        scale = self.short_side / min(size)
        inner = (
            F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False) if scale != 1 else x
        )
        scores = centroid_logits(self.model(inner)["features"], self.centroids)
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
        if self.mapping is None:
            return {"logits": scores}
        masked = scores[:, None].masked_fill(~self.members[None, :, :, None, None], float("-inf"))
        return {"logits": masked.amax(2)}
