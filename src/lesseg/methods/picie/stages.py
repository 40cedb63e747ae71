"""PiCIE's own stages (PiCIE and MDC):

features (train; the training images' views are clustered at the start of every epoch) -> cluster_eval
(fresh k-means on the un-augmented training images, val predicted and Hungarian-matched to the classes)
-> report (report.html).

Each epoch's clusters and labels are stored in ``checkpoints/features_clusters.pt``: a run killed inside an
epoch trains on with the labels that epoch started with, instead of clustering features that have moved.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lesseg.cluster import StreamingKMeans
from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.data.imageio import load_image
from lesseg.data.splits import Supervision
from lesseg.engine.checkpoint import load_checkpoint, save_checkpoint
from lesseg.engine.distributed import barrier
from lesseg.engine.trainer import TrainSettings, loader_context
from lesseg.eval import ConfusionMatrix, record_metrics
from lesseg.eval.matching import hungarian_match, majority_match
from lesseg.methods.picie.core import (
    ClusterSegmenter,
    base_transform,
    centroid_logits,
    cluster_weights,
    view_features,
)
from lesseg.pipeline import RunContext, Stage
from lesseg.predict import normalize_image
from lesseg.progress import track
from lesseg.stages import classifier_keys
from lesseg.stages.common import device_of, is_main, load_weights, train_and_save
from lesseg.stages.report import write_run_report


def clustering_stages(cfg) -> list[Stage]:
    eval_keys = ("data.val_split", "method.eval_clusters", "method.eval_crop", "method.eval_resolution",
                 "method.kmeans_init_batches", "method.kmeans_init_sample", "method.kmeans_iterations",
                 "method.kmeans_backend")  # fmt: skip
    return [
        Stage("features", train_features, classifier_keys(cfg)),
        Stage("cluster_eval", evaluate_clusters, eval_keys, ("features",)),
        Stage("report", write_run_report, ("eval.gallery",), ("cluster_eval",)),
    ]


# ------------------------------------------------------------------------------------------- training


def train_features(ctx: RunContext) -> None:
    cfg, method = ctx.cfg, ctx.method
    base = SegDataset(ctx.source, cfg.data.train_split, transform=method.train_transform(),
                      supervision=method.supervision(), seed=cfg.train.seed)  # fmt: skip
    dataset = method.train_dataset(base)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every process
    model = method.build_model()
    settings = TrainSettings.from_config(cfg)
    clustering = EpochClustering(ctx, method, dataset, settings.key + ctx.inputs_key)
    train_and_save(ctx, "features", settings, model, method.training_step, dataset, epoch_start=clustering)
    if is_main(ctx):
        record_metrics(ctx.run_dir, "features", {"epochs": clustering.history})


class EpochClustering:
    """The trainer's ``epoch_start``: cluster the epoch's views (rank 0), store centroids and labels, and
    hand them to the method (centroids, weights) and the dataset (labels)."""

    def __init__(self, ctx: RunContext, method, dataset, key: str):
        self.ctx, self.method, self.dataset, self.key = ctx, method, dataset, key
        self.path = ctx.path("checkpoints", "features_clusters.pt")
        self.history: list[dict] = []

    def _stored(self, epoch: int) -> dict | None:
        if not self.path.is_file():
            return None
        state = load_checkpoint(self.path)
        return state if state.get("key") == self.key and state.get("epoch") == epoch else None

    def __call__(self, model: torch.nn.Module, epoch: int) -> None:
        ctx = self.ctx
        state = self._stored(epoch)
        if state is None and is_main(ctx):
            start = time.perf_counter()
            state = cluster_views(model, self.dataset, self.method, device_of(ctx))
            state.update(key=self.key, epoch=epoch, seconds=round(time.perf_counter() - start, 2))
            save_checkpoint(self.path, state)
        if ctx.env is not None:
            barrier(ctx.env)
        if state is None:
            state = self._stored(epoch)
        m = self.method
        device = device_of(ctx)
        m.centroids = [c.to(device) for c in state["centroids"]]
        m.weights = [cluster_weights(n, self.method.cfg.method.cluster_weights) for n in state["counts"]]
        self.dataset.labels = state["labels"].numpy()
        self.history.append({"epoch": epoch, "inertia": state["inertia"], "seconds": state.get("seconds"),
                             "cluster_sizes": [n.tolist() for n in state["counts"]]})  # fmt: skip


def _loader(dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      multiprocessing_context=loader_context(workers))  # fmt: skip


@torch.no_grad()
def cluster_views(model: torch.nn.Module, dataset, method, device: torch.device) -> dict:
    """One pass over the epoch's views: streaming k-means per view, then every pixel's nearest centroid
    (the argmax of :func:`centroid_logits` with its bias: the label the training classifier is asked to
    give). The model runs in eval mode (fixed BN statistics), so the labels are a function of the views.
    Features are kept from the first pass up to ``method.feature_cache_mb``; past that, a second pass
    recomputes them. Returns ``centroids`` and ``counts`` per view, ``labels`` ``[N, views, h, w]``."""
    cfg = method.cfg
    m = cfg.method
    was_training = model.training
    model.eval()
    dataset.labels = None
    views = 2 if method.two_views else 1
    kms = [StreamingKMeans(method.k, m.kmeans_init_batches, m.kmeans_init_sample, m.kmeans_iterations,
                           seed=cfg.train.seed + v, backend=m.kmeans_backend) for v in range(views)]  # fmt: skip
    loader = _loader(dataset, m.cluster_batch_size, cfg.data.workers)
    budget, cache = m.feature_cache_mb * 2**20, []
    for batch in track(loader, "clustering the views", unit="batch"):
        feats = view_features(model, {k: _to(v, device) for k, v in batch.items()}, method.two_views)
        for km, f in zip(kms, feats):
            km.add(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
        if cache is not None:
            cache.append([f.cpu() for f in feats])
            if sum(f.numel() * 4 for b in cache for f in b) > budget:
                cache = None
    centroids = [km.finish() for km in kms]
    batches = cache if cache is not None else (
        view_features(model, {k: _to(v, device) for k, v in b.items()}, method.two_views) for b in loader
    )  # fmt: skip
    labels = []
    for feats in batches:
        per_view = [
            centroid_logits(f.to(device), c.to(device)).argmax(1).cpu() for f, c in zip(feats, centroids)
        ]
        labels.append(torch.stack(per_view, 1))
    labels = torch.cat(labels)
    dtype = torch.uint8 if method.k <= 256 else torch.int16
    counts = [torch.bincount(labels[:, v].flatten(), minlength=method.k) for v in range(views)]
    model.train(was_training)
    return {"centroids": [c.cpu() for c in centroids], "counts": counts, "labels": labels.to(dtype),
            "inertia": [km.inertia for km in kms]}  # fmt: skip


def _to(v, device):
    return v.to(device) if torch.is_tensor(v) else v


# ----------------------------------------------------------------------------------------- evaluation


def eval_transform(cfg) -> T.Compose:
    """Un-augmented images: short side at ``data.crop_size``, centre-cropped when ``method.eval_crop=center``
    (official), normalised."""
    size = cfg.data.crop_size
    if cfg.method.eval_crop == "center":
        return T.Compose([*base_transform(size).transforms, T.Normalize()])
    return T.Compose([T.RandomRescale(short_side=(size, size)), T.Normalize()])


@torch.no_grad()
def fit_eval_clusters(model: torch.nn.Module, dataset: SegDataset, cfg, k: int, device) -> torch.Tensor:
    """Fresh k-means (``k`` clusters) on the features of ``dataset``'s images (the official final protocol)."""
    m = cfg.method
    km = StreamingKMeans(k, m.kmeans_init_batches, m.kmeans_init_sample, m.kmeans_iterations,
                         seed=cfg.train.seed, backend=m.kmeans_backend)  # fmt: skip
    batch = m.cluster_batch_size if m.eval_crop == "center" else 1  # whole images differ in size
    for b in track(_loader(dataset, batch, cfg.data.workers), "evaluation k-means", unit="batch"):
        f = model(b["image"].to(device))["features"]
        km.add(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
    return km.finish()


@torch.no_grad()
def predict_clusters(model: torch.nn.Module, centroids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Cluster index per pixel ``[N, H, W]`` of normalised ``images``: nearest-centroid scores upsampled
    bilinearly to the input size (the official evaluation upsamples the classifier's scores), argmax."""
    f = model(images)["features"]
    scores = centroid_logits(f, centroids.to(f.device))
    return F.interpolate(scores, size=images.shape[-2:], mode="bilinear", align_corners=False).argmax(1)


def _center_square(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return x[top : top + side, left : left + side]


def _val_at_label_resolution(source, split: str, centre: bool):
    """(normalised image [1,3,H,W], mask [H,W]) of each val image with a mask, at the mask's resolution
    (the centre square of both with ``centre``)."""
    for r in source.split(split):
        if r.mask is None:
            continue
        image, mask = load_image(r.image), source.load_mask(r)
        if centre:
            image, mask = _center_square(image), _center_square(mask)
        yield normalize_image(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(mask))


def resolution_note(cfg) -> str:
    """How cluster_eval scored, in words (recorded in metrics.json and the report)."""
    m, size = cfg.method, cfg.data.crop_size
    crop = ", centre square" if m.eval_crop == "center" else ""
    if m.eval_resolution == "labels":
        return f"each mask's own resolution{crop} (network input: short side {size})"
    return f"the network's input, short side {size}{crop}, labels nearest-resized to it (official)"


def evaluate_clusters(ctx: RunContext) -> None:
    cfg, source, method = ctx.cfg, ctx.source, ctx.method
    classes = source.classes
    device = device_of(ctx)
    model = load_weights(ctx, "features", method.build_model()).to(device).eval()
    k = cfg.method.eval_clusters or classes.num_classes
    start = time.perf_counter()
    train = SegDataset(source, cfg.data.train_split, transform=eval_transform(cfg),
                       supervision=Supervision(masks="none", tags=False))  # fmt: skip
    centroids = fit_eval_clusters(model, train, cfg, k, device)
    fit_seconds = time.perf_counter() - start
    result: dict = {"clusters": k, "kmeans_seconds": round(fit_seconds, 2), "train_images": len(train)}
    mapping = None
    split = cfg.data.val_split
    result.update(split=split, eval_resolution=resolution_note(cfg))
    if any(r.mask is not None for r in source.split(split)):
        cm = ConfusionMatrix(classes.num_classes, num_preds=k, ignore_index=classes.ignore_index)
        start, n = time.perf_counter(), 0
        if cfg.method.eval_resolution == "labels":
            scorer = ClusterSegmenter(model, centroids, None, short_side=cfg.data.crop_size).to(device)
            pairs = _val_at_label_resolution(source, split, cfg.method.eval_crop == "center")
            for image, mask in track(
                pairs, f"scoring {split}", total=sum(r.mask is not None for r in source.split(split))
            ):
                cm.update(scorer(image.to(device))["logits"].argmax(1)[0].cpu(), mask)
                n += 1
        else:
            val = SegDataset(source, split, transform=eval_transform(cfg))
            for b in track(_loader(val, 1, cfg.data.workers), f"scoring {split}"):
                if bool(b["has_mask"][0]):
                    cm.update(predict_clusters(model, centroids, b["image"].to(device)).cpu(), b["mask"])
                    n += 1
        match = hungarian_match(cm, classes.classes)
        result.update(match.to_dict(), val_images=n, images_per_s=round(n / (time.perf_counter() - start), 2))
        if k > classes.num_classes:
            result["majority"] = majority_match(cm, classes.classes).to_dict()
        mapping = match.mapping
    else:
        result["note"] = f"split {split!r} has no masks: clusters are not matched to classes"
    if is_main(ctx):
        save_checkpoint(ctx.path("checkpoints", "clusters.pt"),
                        {"centroids": centroids.cpu(), "cluster_to_class": mapping})  # fmt: skip
        record_metrics(ctx.run_dir, "cluster_eval", result)
