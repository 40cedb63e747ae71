import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lesseg.eval import ConfusionMatrix, hungarian_match, majority_match, read_metrics, record_metrics


def test_hand_computed_iou_accuracy_and_ignore():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 1, 1, 2, 0, 2]), torch.tensor([0, 0, 1, 1, 2, 2, 255]))
    assert cm.mat.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    m = cm.metrics(["a", "b", "c"])
    assert m.per_class_iou == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 1 / 2})
    assert m.miou == pytest.approx(0.5)
    assert m.pixel_acc == pytest.approx(4 / 6)
    assert m.num_pixels == 6


def test_miou_averages_only_classes_present_in_ground_truth():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 2], [1, 1]]), np.array([[0, 0], [1, 1]]))
    m = cm.metrics()
    assert m.per_class_iou == {"0": 0.5, "1": 1.0, "2": None}
    assert m.miou == pytest.approx(0.75)


def test_accumulates_over_batches_like_one_big_batch():
    rng = np.random.default_rng(0)
    pred, gt = rng.integers(0, 4, (2, 5, 7, 7)), rng.integers(0, 4, (2, 5, 7, 7))
    one, many = ConfusionMatrix(4), ConfusionMatrix(4)
    one.update(pred, gt)
    for p, g in zip(pred, gt):
        many.update(p, g)
    assert torch.equal(one.mat, many.mat)


def test_bad_inputs_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="predictions must lie in 0..2"):
        cm.update(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(ValueError, match="no IoU until clusters are matched"):
        ConfusionMatrix(3, num_preds=4).metrics()


def test_hungarian_beats_greedy():
    # greedy takes the largest cell (class 0 <- cluster 0, 5 px) and then has only 0 left: 5 px right.
    # the optimum pairs class 0 <- cluster 1 and class 1 <- cluster 0: 8 px right.
    conf = np.array([[5, 4], [4, 0]])
    m = hungarian_match(conf)
    assert m.mapping == [1, 0]
    assert m.metrics.pixel_acc == pytest.approx(8 / 13)


def test_hungarian_more_clusters_than_classes():
    conf = np.array([[5, 4, 0], [4, 0, 1]])  # 2 classes, 3 clusters
    m = hungarian_match(conf, ["a", "b"])
    assert m.mapping == [1, 0, -1]  # cluster 2 is unmatched: its pixel counts as wrong
    assert m.metrics.per_class_iou == pytest.approx({"a": 4 / 9, "b": 4 / 10})
    assert m.metrics.pixel_acc == pytest.approx(8 / 14)
    assert not m.optimistic
    assert m.apply(torch.tensor([0, 1, 2])).tolist() == [1, 0, 255]


def test_hungarian_fewer_clusters_than_classes():
    conf = np.array([[6, 0], [0, 5], [1, 1]])  # class 2 gets no cluster: IoU 0, still averaged
    m = hungarian_match(conf)
    assert m.mapping == [0, 1]
    assert m.metrics.per_class_iou["2"] == 0.0
    assert m.metrics.miou == pytest.approx((6 / 7 + 5 / 6 + 0) / 3)


def test_majority_vote_is_many_to_one_and_flagged_optimistic():
    m = majority_match(np.array([[5, 4, 0], [4, 0, 1]]))
    assert m.mapping == [0, 0, 1]
    assert m.optimistic
    assert m.metrics.per_class_iou == pytest.approx({"0": 9 / 13, "1": 1 / 5})
    d = m.to_dict()
    assert d["matching"] == "majority" and d["optimistic"] is True and d["cluster_to_class"] == [0, 0, 1]


def test_metrics_json_nested_by_stage(tmp_path):
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    record_metrics(tmp_path, "cams", cm.metrics(["x", "y"]))
    record_metrics(tmp_path, "segmenter", {"miou": 0.25})
    record_metrics(tmp_path, "cams", {"miou": 0.5})
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data == read_metrics(tmp_path)
    assert data["cams"] == {"miou": 0.5} and data["segmenter"] == {"miou": 0.25}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def _reduce_worker(rank, world, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([rank, 1]), torch.tensor([0, 1]))  # rank 0: both right; rank 1: one wrong
    cm.reduce_from_all_processes()
    out[rank] = cm.mat.clone()
    dist.destroy_process_group()


def test_all_reduce_sums_over_processes():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_reduce_worker, args=(2, port, out), nprocs=2)
    assert out[0].tolist() == out[1].tolist() == [[1, 1], [0, 2]]


def test_subset_miou_and_harmonic_mean():
    from lesseg.eval import subset_miou

    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 0, 1, 2, 3]), torch.tensor([0, 1, 1, 2, 2]))
    m = cm.metrics(["a", "b", "c", "d"])  # IoU a 1/2, b 1/2, c 1/2, d absent from the ground truth
    out = subset_miou(m, {"base": ["a", "b"], "novel": ["c", "d"]})
    assert out == {"base": 0.5, "novel": 0.5, "harmonic": 0.5}
    assert subset_miou(m, {"novel": ["d"], "base": ["a"]})["harmonic"] is None  # d never occurs
    assert subset_miou(m.to_dict(), {"all": ["a", "b", "c"]}) == {"all": 0.5}  # one subset: no harmonic
    with pytest.raises(ValueError, match=r"unknown class\(es\) \['e'\]; classes: a, b, c, d"):
        subset_miou(m, {"base": ["e"]})


def test_a_semi_supervised_segmenter_is_read_against_its_supervised_only_baseline():
    from lesseg.eval.metrics_file import format_headline, headline

    metrics = {"segmenter": {"miou": 0.5}, "references": {"random_tags": {"val": {"miou": 0.2}},
                                                         "supervised_only": {"val": {"miou": 0.6}}}}  # fmt: skip
    (row,) = headline(metrics)
    assert (row["reference_name"], row["reference"]) == ("supervised_only val", 0.6)
    assert round(row["margin"], 6) == -0.1
    assert "BELOW the supervised_only val reference" in format_headline(metrics)
