"""PiCIE: the equivariance replay, the per-epoch labels, the loss, the official configs on fake trees,
evaluation and prediction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fake_trees import make_fake_cityscapes, make_fake_cocostuff
from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.data.splits import Supervision
from lesseg.data.synth import generate
from lesseg.methods.picie import (
    PiCIEMethod,
    PiCIEViews,
    base_transform,
    centroid_logits,
    cluster_weights,
    picie_loss,
    view_features,
)
from lesseg.methods.picie.stages import EpochClustering, cluster_views


class Pooled(torch.nn.Module):
    """A stand-in network: the image itself (stride 1) or its 4x4 average (stride 4) as "features"."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return {"features": F.avg_pool2d(x, self.stride) if self.stride > 1 else x}


def make_tiny_folder_dataset(root, n: int = 8, size: int = 40):
    """Synthetic scenes without background: 6 train + 2 val images."""
    generate(root, images=n, classes=4, seed=0, size=size, background="none", val_fraction=0.25)
    return root


def _views(tmp_path, view=32, base=32, grayscale_p=0.0, two_views=True, seed=0):
    source = read_dataset(make_tiny_folder_dataset(tmp_path / "data", n=8, size=40))
    base_ds = SegDataset(
        source, "train", transform=base_transform(base), supervision=Supervision(masks="none")
    )
    return PiCIEViews(base_ds, view, grayscale_p=grayscale_p, two_views=two_views, seed=seed)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_replayed_features_of_view_2_equal_features_of_view_1_for_an_identity_network(tmp_path, index):
    """Equivariance replay: for an identity network, the features of the transformed image (view 1) equal
    the transform replayed on the features of the whole image (view 2), pixel for pixel (same colours in
    both views: the photometric sets are replaced by the identity here)."""
    views = _views(tmp_path)
    views.view1.transforms = [t for t in views.view1.transforms if t.geometric or t.name == "normalize"]
    views.view2.transforms = [t for t in views.view2.transforms if t.geometric or t.name == "normalize"]
    batch = next(iter(DataLoader(torch.utils.data.Subset(views, [index]), batch_size=1)))
    f1, f2 = view_features(Pooled(1), batch)
    params = json.loads(batch["params"][0])
    assert params[0]["name"] == "resized_crop" and params[0]["box"] != [0, 0, 32, 32]  # a real crop
    # view_features re-normalises per pixel; compare the un-normalised replay as well
    raw = T.replay_batch([params], batch["image2"], out_size=(32, 32))
    step = 1 / 255 / 0.224  # view 1's crop is stored as uint8: equal up to one grey level, normalised
    assert (batch["image1"] - raw).abs().max() <= step
    assert torch.equal(f1, batch["image1"]) and torch.allclose(f2, F.normalize(raw, dim=1), atol=1e-6)
    assert (batch["image1"] - raw).abs().mean() < step / 4


def test_replay_at_stride_4_matches_a_smooth_image_closely():
    """On a stride-4 network (4x4 average pooling) and a smooth image, transforming then pooling is close to
    pooling then replaying (they differ only by interpolation order)."""
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    image = torch.stack([0.03 * xs + 0.01 * ys, -0.02 * ys + 2, 0.005 * xs * ys / 64])[None]
    params = [{"name": "resized_crop", "geometric": True, "size": [64, 64], "box": [8, 12, 40, 44],
               "out": [64, 64], "flip": True}]  # fmt: skip
    view1 = F.avg_pool2d(T.replay(params, image[0], "map")[None], 4)
    view2 = T.replay_batch([params], F.avg_pool2d(image, 4), out_size=(16, 16))
    assert view1.shape == view2.shape == (1, 3, 16, 16)
    assert (view1 - view2).abs().max() < 0.05  # ramps of slope <= 0.03 per pixel


def test_views_are_seeded_per_epoch_and_image(tmp_path):
    views = _views(tmp_path, grayscale_p=0.5)
    a, b = views[2], views[2]
    assert torch.equal(a["image1"], b["image1"]) and torch.equal(a["image2"], b["image2"])
    assert not torch.equal(a["image1"], a["image2"][:, : a["image1"].shape[1]])
    views.set_epoch(1)
    assert not torch.equal(views[2]["image1"], a["image1"])


@pytest.mark.parametrize("cache_mb", [1024, 0])
def test_cached_labels_are_the_frozen_centroid_classifier_argmax_on_the_replayed_views(tmp_path, cache_mb):
    """The labels cached at the start of an epoch equal, for 100% of pixels, the argmax of the centroid
    classifier on the views the training pass of that epoch reads (same seeded transforms, replayed
    geometry), whether the features were kept from the clustering pass or recomputed."""
    from lesseg.models import create_model

    views = _views(tmp_path, view=32, base=40)
    cfg = load_config("configs/picie/synthetic.yaml", [
        "method.clusters=5", "method.cluster_batch_size=2", "method.kmeans_init_batches=2",
        f"method.feature_cache_mb={cache_mb}", "data.workers=0",
    ])  # fmt: skip
    method = PiCIEMethod(cfg, classes=views.base.classes)
    torch.manual_seed(0)
    model = create_model("picie_fpn", backbone="resnet18", output_stride=32).eval()
    views.set_epoch(3)
    state = cluster_views(model, views, method, torch.device("cpu"))
    assert state["labels"].shape == (6, 2, 8, 8) and state["labels"].dtype == torch.uint8
    views.labels = state["labels"].numpy()
    agree = total = 0
    with torch.no_grad():
        for batch in DataLoader(views, batch_size=4):
            feats = view_features(model, batch)
            for v, (f, c) in enumerate(zip(feats, state["centroids"])):
                pred = centroid_logits(f, c).argmax(1)
                agree += int((pred == batch[f"label{v + 1}"]).sum())
                total += pred.numel()
    assert agree == total == 6 * 2 * 64
    assert [int(n.sum()) for n in state["counts"]] == [6 * 64, 6 * 64]


def test_centroid_classifier_argmax_is_the_nearest_centroid():
    torch.manual_seed(0)
    f = F.normalize(torch.randn(2, 8, 5, 5), dim=1)
    c = torch.randn(4, 8) * torch.tensor([0.2, 1.0, 2.0, 0.5])[:, None]  # different norms
    nearest = torch.cdist(f.permute(0, 2, 3, 1).reshape(-1, 8), c).argmin(1).reshape(2, 5, 5)
    assert torch.equal(centroid_logits(f, c).argmax(1), nearest)
    assert not torch.equal(centroid_logits(f, c, bias=False).argmax(1), nearest)  # the official logits


def test_loss_against_hand_computed_values():
    """One pixel, K=2, features [1, 0]; centroids of view 1 (1,0),(0,1) and of view 2 (0,1),(1,0);
    labels view 1 = 0, view 2 = 1; no bias, no weights: every CE is that of logits (1, 0) on its max."""
    f = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    c1, c2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    l1, l2 = torch.tensor([[[0]]]), torch.tensor([[[1]]])
    out = picie_loss([f, f], [l1, l2], [c1, c2], [None, None], bias=False)
    right = math.log(1 + math.exp(-1))  # CE of logits (1, 0) on class 0
    assert out["within"].item() == pytest.approx(right)
    assert out["cross"].item() == pytest.approx(right)  # f with c2 on l2 = 1: logits (0, 1): right too
    assert out["loss"].item() == pytest.approx(right)
    # a wrong label: view 1 says 1 -> within 1 = CE of (1, 0) on 1, cross 2->1 the same
    wrong = math.log(1 + math.exp(1))
    out = picie_loss([f, f], [torch.tensor([[[1]]]), l2], [c1, c2], [None, None], bias=False)
    assert out["within"].item() == pytest.approx((wrong + right) / 2)
    assert out["cross"].item() == pytest.approx((right + wrong) / 2)
    assert out["loss"].item() == pytest.approx((wrong + right) / 2)
    # MDC: one view, within only; bias -|c|^2/2 shifts both logits equally here (unit centroids)
    assert picie_loss([f], [l1], [c1], [None])["loss"].item() == pytest.approx(right)


def test_cluster_weights():
    counts = torch.tensor([10.0, 30.0, 0.0, 60.0])
    assert cluster_weights(counts).tolist() == pytest.approx([0.1, 0.3, 0.0, 0.6])
    inv = cluster_weights(counts, "inverse")
    assert inv[2] == 0 and inv.sum().item() == pytest.approx(4) and inv[0] / inv[1] == pytest.approx(3)
    assert cluster_weights(counts, "none") is None
    with pytest.raises(ValueError, match="frequency, inverse, none"):
        cluster_weights(counts, "balanced")


def test_epoch_clusters_are_reused_when_a_run_resumes_inside_the_epoch(tmp_path, monkeypatch):
    """A run killed inside an epoch must train on with the labels the epoch started with, not re-cluster
    features that have moved since."""
    import lesseg.methods.picie.stages as clustering
    from lesseg.pipeline import RunContext

    views = _views(tmp_path)
    cfg = load_config("configs/picie/synthetic.yaml", ["method.clusters=3"])
    method = PiCIEMethod(cfg, classes=views.base.classes)
    ctx = RunContext(cfg, tmp_path / "run", None)
    labels = torch.zeros(6, 2, 8, 8, dtype=torch.uint8)
    calls = []

    def fake(model, dataset, method, device):
        calls.append(1)
        return {"centroids": [torch.eye(3, 128)] * 2, "counts": [torch.tensor([1, 2, 3])] * 2,
                "labels": labels + len(calls), "inertia": [0.1, 0.2]}  # fmt: skip

    monkeypatch.setattr(clustering, "cluster_views", fake)
    EpochClustering(ctx, method, views, "key")(torch.nn.Identity(), 0)
    again = EpochClustering(ctx, method, views, "key")
    again(torch.nn.Identity(), 0)  # resumed inside epoch 0: loaded, not recomputed
    assert len(calls) == 1 and int(views.labels.max()) == 1
    again(torch.nn.Identity(), 1)  # the next epoch clusters again
    assert len(calls) == 2 and int(views.labels.max()) == 2
    EpochClustering(ctx, method, views, "other settings")(torch.nn.Identity(), 1)
    assert len(calls) == 3


@pytest.mark.parametrize("dataset", ["cocostuff27", "cityscapes27"])
def test_official_configs_run_two_steps_then_evaluate_on_fake_trees(tmp_path, dataset):
    from lesseg.api import load_run, run

    if dataset == "cocostuff27":
        root, split = make_fake_cocostuff(tmp_path / "coco"), ["data.train_split=train2017"]
    else:
        root, split = make_fake_cityscapes(tmp_path / "cityscapes"), []
    cfg = load_config(f"configs/picie/{dataset}.yaml", [
        f"data.root={root}", f"run_dir={tmp_path / 'runs'}", "model.pretrained=false", "data.batch_size=1",
        "data.workers=0", "train.epochs=1", "train.log_every=1", "data.crop_size=64", "method.base_size=72",
        "method.cluster_batch_size=1", "method.kmeans_init_batches=1", *split,
    ])  # fmt: skip
    assert (cfg.method.clusters, cfg.model.backbone, cfg.optim.name) == (27, "resnet18", "adam")
    run_dir = run(cfg, log=lambda _: None)
    steps = [s for s in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if "loss" in s]
    assert [s["step"] for s in steps] == [1, 2] and all(s["cross"] > 0 and s["within"] > 0 for s in steps)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ev = metrics["cluster_eval"]
    assert ev["clusters"] == 27 and sorted(c for c in ev["cluster_to_class"] if c >= 0) == list(range(27))
    assert 0 <= ev["miou"] <= 1 and ev["val_images"] >= 1
    mask = load_run(run_dir, device="cpu").predict(np.zeros((12, 20, 3), dtype=np.uint8))
    assert mask.shape == (12, 20) and mask.max() < 27


def test_mdc_trains_on_one_view(tmp_path):
    from lesseg.api import run

    root = make_tiny_folder_dataset(tmp_path / "data", n=8, size=40)
    cfg = load_config("configs/picie/synthetic.yaml", [
        f"data.root={root}", f"run_dir={tmp_path / 'runs'}", "method.variant=mdc", "data.batch_size=2",
        "data.workers=0", "train.epochs=1", "train.log_every=1", "data.crop_size=32", "method.base_size=40",
        "method.cluster_batch_size=2", "method.kmeans_init_batches=1", "method.eval_clusters=6",
    ])  # fmt: skip
    run_dir = run(cfg, log=lambda _: None)
    steps = [s for s in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if "loss" in s]
    assert len(steps) == 3 and all("cross" not in s for s in steps)
    sizes = json.loads((run_dir / "metrics.json").read_text())["features"]["epochs"][0]["cluster_sizes"]
    assert len(sizes) == 1  # one view clustered
    ev = json.loads((run_dir / "metrics.json").read_text())["cluster_eval"]
    # over-clustering: 6 clusters for 4 classes; Hungarian leaves 2 unmatched, majority vote matches all
    assert ev["clusters"] == 6 and sorted(ev["cluster_to_class"]).count(-1) == 2
    assert min(ev["majority"]["cluster_to_class"]) >= 0 and ev["majority"]["optimistic"]
    assert ev["majority"]["miou"] >= ev["miou"]
    assert "clusters" in (run_dir / "report.html").read_text()  # the gallery's cluster panels
    # scored where the labels are (40 px masks from a 32 px network input), and said so
    assert ev["split"] == "val" and ev["eval_resolution"].startswith("each mask's own resolution")
    assert "own resolution" in (run_dir / "report.html").read_text()
    assert 2 * 40 * 40 - 2 <= ev["num_pixels"] <= 2 * 40 * 40  # two val masks at 40x40


@pytest.mark.parametrize("resolution", ["labels", "input"])
def test_cluster_eval_at_label_or_input_resolution(tmp_path, resolution):
    from lesseg.api import run

    root = make_tiny_folder_dataset(tmp_path / "data", n=8, size=40)
    cfg = load_config("configs/picie/synthetic.yaml", [
        f"data.root={root}", f"run_dir={tmp_path / 'runs'}", "data.batch_size=2", "data.workers=0",
        "train.epochs=0", "data.crop_size=16", "method.base_size=40", "method.cluster_batch_size=2",
        "method.kmeans_init_batches=1", f"method.eval_resolution={resolution}", "eval.gallery=0",
    ])  # fmt: skip
    ev = json.loads((run(cfg, log=lambda _: None) / "metrics.json").read_text())["cluster_eval"]
    side = 40 if resolution == "labels" else 16  # whole 40 px masks, or resized to the 16 px input
    assert ev["num_pixels"] in range(2 * side * side - 2, 2 * side * side + 1)


def test_evaluation_settings_do_not_retrain_the_network():
    from lesseg.data.classes import ClassInfo
    from lesseg.pipeline import Pipeline

    def hashes(*overrides):
        cfg = load_config("configs/picie/synthetic.yaml", list(overrides))
        stages = PiCIEMethod(cfg, classes=ClassInfo(("a", "b"))).stages()
        return {s.name: Pipeline(stages).stage_hash(s.name, cfg) for s in stages}

    base, over = hashes(), hashes("method.eval_clusters=6", "method.eval_crop=center")
    assert base["features"] == over["features"] and base["cluster_eval"] != over["cluster_eval"]
    assert hashes("method.cluster_weights=inverse")["features"] != base["features"]
