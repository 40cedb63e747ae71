"""IRN boundary branch: BoundaryNet, affinity labels, affinity loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lesseg.data.classes import ClassInfo
from lesseg.models.backbones import create_backbone
from lesseg.models.boundary import BoundaryNet
from lesseg.refine.affinity_labels import affinity_labels, downsample_labels
from lesseg.refine.affinity_loss import affinity_loss, pair_labels
from lesseg.refine.cams import CamResult

IGN = 255


@pytest.fixture(scope="module")
def net() -> BoundaryNet:
    torch.manual_seed(0)
    return BoundaryNet(create_backbone("resnet18", output_stride=16))


# --- BoundaryNet -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(64, 64), (70, 90)])
def test_boundary_shape(net: BoundaryNet, h: int, w: int) -> None:
    out = net(torch.randn(2, 3, h, w))
    assert set(out) == {"boundary_logits"}
    assert out["boundary_logits"].shape == (2, 1, math.ceil(h / 4), math.ceil(w / 4))
    with torch.no_grad():
        prob = net.boundary(torch.randn(1, 3, h, w))
    assert prob.shape == (1, 1, math.ceil(h / 4), math.ceil(w / 4))
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0


def test_backbone_frozen_and_in_eval(net: BoundaryNet) -> None:
    net.train()
    assert net.training and net.head.training and net.branches[0].training
    assert not net.encoder.training
    assert all(not m.training for m in net.encoder.modules())
    bn = next(m for m in net.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    running_mean = bn.running_mean.clone()
    net.zero_grad(set_to_none=True)
    net(torch.randn(2, 3, 48, 48))["boundary_logits"].mean().backward()
    assert torch.equal(bn.running_mean, running_mean)  # BN statistics fixed
    assert all(p.grad is None and not p.requires_grad for p in net.encoder.parameters())
    assert net.head.weight.grad is not None and net.branches[0][0].weight.grad is not None
    net.eval().train(True)
    assert not net.encoder.training


def test_param_groups_only_new_layers(net: BoundaryNet) -> None:
    groups = net.param_groups()
    assert set(groups) == {"backbone_weight", "backbone_bias", "new_weight", "new_bias"}
    assert groups["backbone_weight"] == [] and groups["backbone_bias"] == []
    encoder_ids = {id(p) for p in net.encoder.parameters()}
    grouped = [p for g in groups.values() for p in g]
    assert not any(id(p) in encoder_ids for p in grouped)
    new = [p for p in net.parameters() if id(p) not in encoder_ids]
    assert {id(p) for p in grouped} == {id(p) for p in new} and len(grouped) == len(new)
    assert all(p.ndim > 1 for p in groups["new_weight"]) and all(p.ndim == 1 for p in groups["new_bias"])
    # one branch per backbone level: conv + GroupNorm(4, 32); the head sees 32 * levels channels
    assert len(net.branches) == len(net.encoder.channels)
    assert net.head.in_channels == 32 * len(net.encoder.channels)


def test_unfrozen_backbone_trains_with_fixed_bn_statistics() -> None:
    torch.manual_seed(0)
    net = BoundaryNet(create_backbone("resnet18", output_stride=16), freeze_backbone=False).train()
    assert not net.encoder.training
    bn = next(m for m in net.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    running_mean = bn.running_mean.clone()
    net(torch.randn(2, 3, 48, 48))["boundary_logits"].mean().backward()
    assert torch.equal(bn.running_mean, running_mean)
    assert all(p.grad is not None for p in net.encoder.parameters() if p.requires_grad)
    groups = net.param_groups()
    encoder = {id(p) for p in net.encoder.parameters()}
    assert {id(p) for p in groups["backbone_weight"] + groups["backbone_bias"]} == encoder
    assert not any(id(p) in encoder for p in groups["new_weight"] + groups["new_bias"])
    with torch.no_grad():  # inference builds no graph through the backbone either
        assert not net(torch.randn(1, 3, 48, 48))["boundary_logits"].requires_grad


def test_boundary_rejects_bad_input(net: BoundaryNet) -> None:
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="Backbone"):
        BoundaryNet("resnet18")  # type: ignore[arg-type]


# --- affinity labels ---------------------------------------------------------------------------------------

BG_CLASSES = ClassInfo(("background", "cat", "dog", "bird"), background="background")
#                    px:   0     1     2     3     4     5     6     7
CAT = np.array([0.05, 0.20, 0.50, 0.30, 0.00, 0.45, 0.10, 0.40], np.float32)
BIRD = np.array([0.00, 0.05, 0.10, 0.35, 0.60, 0.50, 0.00, 0.00], np.float32)
# model outputs 0 (cat) and 2 (bird) -> dataset classes 1 and 3; maps as 1 x 8 images
BG_RESULT = CamResult(np.array([0, 2]), np.stack([CAT, BIRD])[:, None, :])


def test_affinity_labels_with_background() -> None:
    # fg map (plane 0.40, ties to bg): bg bg cat bg bird bird bg bg
    # bg map (plane 0.10, ties to bg): bg cat cat bird bird bird bg cat
    # -> fg label where fg; bg where both bg; ignore where bg only under the fg map
    expected = [[0, IGN, 1, IGN, 3, 3, 0, IGN]]
    assert affinity_labels(BG_RESULT, BG_CLASSES).tolist() == expected
    assert affinity_labels(BG_RESULT, BG_CLASSES, 0.40, 0.10).dtype == np.int64
    # other thresholds: fg 0.55 keeps only px 4; bg 0.0 makes every pixel with a positive score foreground
    expected = [[IGN, IGN, IGN, IGN, 3, IGN, IGN, IGN]]
    assert affinity_labels(BG_RESULT, BG_CLASSES, fg_threshold=0.55, bg_threshold=0.0).tolist() == expected


def test_affinity_labels_without_tags_is_background() -> None:
    empty = CamResult(np.zeros(0, np.int64), np.zeros((0, 2, 3), np.float32))
    assert affinity_labels(empty, BG_CLASSES).tolist() == [[0, 0, 0], [0, 0, 0]]
    calls = []
    labels = affinity_labels(empty, BG_CLASSES, crf=lambda *a: calls.append(a), image=np.zeros((2, 3, 3)))
    assert labels.tolist() == [[0, 0, 0], [0, 0, 0]] and calls == []


def test_affinity_labels_crf_called_on_both_maps() -> None:
    image = np.zeros((1, 8, 3), np.uint8)
    calls = []

    def fake_crf(im, labels, num_labels):
        calls.append((im, labels.copy(), num_labels))
        return np.where(labels == 2, 1, labels)  # the "CRF" merges bird into cat

    out = affinity_labels(BG_RESULT, BG_CLASSES, crf=fake_crf, image=image)
    assert len(calls) == 2
    assert calls[0][0] is image and calls[1][0] is image
    assert [c[2] for c in calls] == [3, 3]  # background + 2 tags
    assert calls[0][1].tolist() == [[0, 0, 1, 0, 2, 2, 0, 0]]  # compact fg-threshold map
    assert calls[1][1].tolist() == [[0, 1, 1, 2, 2, 2, 0, 1]]  # compact bg-threshold map
    # refined fg map: bg bg cat bg cat cat bg bg; refined bg map: bg cat cat cat cat cat bg cat
    assert out.tolist() == [[0, IGN, 1, IGN, 1, 1, 0, IGN]]


def test_affinity_labels_crf_errors() -> None:
    with pytest.raises(ValueError, match="image is required"):
        affinity_labels(BG_RESULT, BG_CLASSES, crf=lambda im, lab, n: lab)
    with pytest.raises(ValueError, match="crf returned labels"):
        affinity_labels(BG_RESULT, BG_CLASSES, crf=lambda im, lab, n: lab + 5, image=np.zeros((1, 8, 3)))
    with pytest.raises(ValueError, match="bg_threshold <= fg_threshold"):
        affinity_labels(BG_RESULT, BG_CLASSES, fg_threshold=0.1, bg_threshold=0.4)


NOBG_CLASSES = ClassInfo(("sky", "tree", "road"))


def test_affinity_labels_without_background() -> None:
    #                 px:  0     1     2     3     4     5
    sky = np.array([0.90, 0.50, 0.20, 0.35, 0.30, 0.10], np.float32)
    road = np.array([0.10, 0.45, 0.10, 0.20, 0.30, 0.70], np.float32)
    result = CamResult(np.array([0, 2]), np.stack([sky, road])[:, None, :])  # outputs 0, 2: sky, road
    # t = 0.3, m = 0.1: px1 margin 0.05, px2 score 0.2, px4 margin 0 -> ignore
    labels = affinity_labels(result, NOBG_CLASSES, min_score=0.3, min_margin=0.1)
    assert labels.tolist() == [[0, IGN, IGN, 0, IGN, 2]]
    # t = 0.5, m = 0.0: only px 0, 1, 5 reach the score
    labels = affinity_labels(result, NOBG_CLASSES, min_score=0.5, min_margin=0.0)
    assert labels.tolist() == [[0, 0, IGN, IGN, IGN, 2]]
    # single tag: its class where the score is >= t (no margin)
    single = CamResult(np.array([1]), np.array([[[0.2, 0.3, 0.8]]], np.float32))
    assert affinity_labels(single, NOBG_CLASSES, min_score=0.3).tolist() == [[IGN, 1, 1]]
    empty = CamResult(np.zeros(0, np.int64), np.zeros((0, 1, 2), np.float32))
    assert affinity_labels(empty, NOBG_CLASSES).tolist() == [[IGN, IGN]]
    with pytest.raises(ValueError, match="crf"):
        affinity_labels(result, NOBG_CLASSES, crf=lambda im, lab, n: lab, image=np.zeros((1, 6, 3)))


def test_downsample_labels() -> None:
    labels = np.arange(64).reshape(8, 8)
    out = downsample_labels(labels, (2, 4))
    # centres: rows floor((i + 0.5) * 4) = 2, 6; cols floor((j + 0.5) * 2) = 1, 3, 5, 7
    assert out.tolist() == [[17, 19, 21, 23], [49, 51, 53, 55]]
    batch = torch.from_numpy(np.stack([labels, labels + 100]))
    out_t = downsample_labels(batch, 2)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (2, 2, 2)
    assert out_t[1].tolist() == [[118, 122], [150, 154]]
    assert downsample_labels(labels, 8).tolist() == labels.tolist()
    with pytest.raises(ValueError, match="size"):
        downsample_labels(labels, 0)


# --- affinity loss -----------------------------------------------------------------------------------------

LABELS = torch.tensor([[[0, 0, 1], [IGN, 1, 1]]])  # 1 x 2 x 3
OFFSETS = torch.tensor([[0, 1], [1, 0]])  # right neighbour, pixel below
AFFINITY = torch.tensor(
    [[[[0.9, 0.2, 0.7], [0.3, 0.8, 0.5]], [[0.4, 0.1, 0.6], [0.5, 0.5, 0.5]]]], requires_grad=True
)


def test_pair_labels() -> None:
    partner = pair_labels(LABELS, OFFSETS)
    assert partner.shape == (1, 2, 2, 3)
    assert partner[0, 0].tolist() == [[0, 1, IGN], [1, 1, IGN]]
    assert partner[0, 1].tolist() == [[IGN, 1, 1], [IGN, IGN, IGN]]
    # negative and far offsets
    assert pair_labels(torch.tensor([[1, 2, 3]]), torch.tensor([[0, -1], [5, 0]]), 9).tolist() == [
        [[9, 1, 2]],
        [[9, 9, 9]],
    ]


def test_affinity_loss_by_hand() -> None:
    eps = 1e-5
    # pairs (pixel -> partner): offset (0, 1): (0,0)-(0,1) bg-bg a=0.9; (0,1)-(0,2) neg a=0.2;
    # (1,0) ignore; (1,1)-(1,2) fg-fg a=0.8; last column: partner outside.
    # offset (1, 0): (0,0)-(1,0) ignore; (0,1)-(1,1) neg a=0.1; (0,2)-(1,2) fg-fg a=0.6; row 1: outside.
    pos_bg = -math.log(0.9 + eps)
    pos_fg = (-math.log(0.8 + eps) - math.log(0.6 + eps)) / 2
    neg = (-math.log(1 + eps - 0.2) - math.log(1 + eps - 0.1)) / 2
    out = affinity_loss(AFFINITY, LABELS, OFFSETS, background_index=0)
    assert set(out) == {"loss", "pos_bg", "pos_fg", "neg"}
    assert out["pos_bg"].item() == pytest.approx(pos_bg, rel=1e-5)
    assert out["pos_fg"].item() == pytest.approx(pos_fg, rel=1e-5)
    assert out["neg"].item() == pytest.approx(neg, rel=1e-5)
    assert out["loss"].item() == pytest.approx((pos_bg / 2 + pos_fg / 2 + neg) / 2, rel=1e-5)
    out["loss"].backward()
    assert AFFINITY.grad is not None
    assert int((AFFINITY.grad != 0).sum()) == 5  # only the five valid pairs get a gradient
    AFFINITY.grad = None

    # no background class: every same-label pair is a positive
    out = affinity_loss(AFFINITY, LABELS, OFFSETS, background_index=None)
    pos = (-math.log(0.9 + eps) - math.log(0.8 + eps) - math.log(0.6 + eps)) / 3
    assert out["pos_bg"].item() == 0.0
    assert out["pos_fg"].item() == pytest.approx(pos, rel=1e-5)
    assert out["loss"].item() == pytest.approx((pos + neg) / 2, rel=1e-5)


def test_affinity_loss_empty_sets() -> None:
    affinity = AFFINITY.detach().clone().requires_grad_(True)
    out = affinity_loss(affinity, torch.full_like(LABELS, IGN), OFFSETS, background_index=0)
    for value in out.values():
        assert value.item() == 0.0 and not torch.isnan(value)
    out["loss"].backward()
    assert torch.equal(affinity.grad, torch.zeros_like(affinity))
    # no background pixel: pos_bg is empty (0) but keeps its half weight
    labels = torch.tensor([[[1, 1, 2], [2, 2, 2]]])
    out = affinity_loss(affinity.detach(), labels, OFFSETS, background_index=0)
    assert out["pos_bg"].item() == 0.0
    assert out["loss"].item() == pytest.approx((out["pos_fg"].item() / 2 + out["neg"].item()) / 2)


def test_affinity_loss_errors() -> None:
    with pytest.raises(ValueError, match="offsets has 1 rows"):
        affinity_loss(AFFINITY, LABELS, OFFSETS[:1], background_index=0)
    with pytest.raises(ValueError, match="labels must be"):
        affinity_loss(AFFINITY, LABELS[0], OFFSETS, background_index=0)
    with pytest.raises(ValueError, match="integer"):
        affinity_loss(AFFINITY, LABELS.float(), OFFSETS, background_index=0)


def test_config_defaults_match_the_measured_thresholds() -> None:
    from lesseg.config import AffinityLabelConfig
    from lesseg.refine.affinity_labels import BG_THRESHOLD, FG_THRESHOLD, MIN_MARGIN, MIN_SCORE

    c = AffinityLabelConfig()
    assert (c.fg_threshold, c.bg_threshold, c.min_score, c.min_margin) == (
        FG_THRESHOLD, BG_THRESHOLD, MIN_SCORE, MIN_MARGIN,
    )  # fmt: skip
