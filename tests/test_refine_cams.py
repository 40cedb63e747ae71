"""CAM inference (batched, multi-scale, flipped) and CAM -> pseudo-label conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lesseg.data.classes import ClassInfo
from lesseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lesseg.models import create_model
from lesseg.refine import (
    CamResult,
    cams_to_labels,
    coverage,
    infer_cams,
    load_cams,
    save_cams,
    save_pseudo_label,
    threshold_sweep,
)

SCALES = (0.5, 1.0, 1.5, 2.0)


class FakeCAM(nn.Module):
    """Deterministic stand-in classifier: 3x3 conv (zero padding) + ReLU + 1x1 conv, then 16x16 average
    pooling with ceil_mode, so an unpadded input of size h gives ceil(h / 16) cells, like a ResNet."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, num_classes, 1, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            self.head.weight.abs_()  # positive maps: none vanishes under the ReLU

    def forward(self, x):
        cams = F.avg_pool2d(self.head(F.relu(self.conv(x))), 16, ceil_mode=True)
        return {"logits": cams.mean((2, 3)), "cams": cams}


def _images(seed=0, sizes=((48, 64), (40, 40), (33, 50))):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return create_model("cam_classifier", backbone="resnet18", num_classes=3)


def _reference(model, image, tags, scales=SCALES, stride=16):
    """The official recipe written plainly: one image, no padding, one forward per scale."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    H, W = image.shape[:2]
    up = (math.ceil(H / stride) * stride, math.ceil(W / stride) * stride)
    x0 = torch.tensor(image).permute(2, 0, 1).float()
    total = 0
    model.eval()  # infer_cams restores the training mode it found
    with torch.no_grad():
        for s in scales:
            size = (round(s * H), round(s * W))
            x = x0 if size == (H, W) else F.interpolate(x0[None], size, mode="bicubic", antialias=True)[0]
            x = (x.clamp(0, 255) - mean) / std
            cams = F.relu(model(torch.stack([x, x.flip(-1)]))["cams"])
            m = cams[0] + cams[1].flip(-1)
            total = total + F.interpolate(m[None], up, mode="bilinear", align_corners=False)[0]
    cam = total[tags, :H, :W]
    return (cam / (cam.amax((1, 2), keepdim=True) + 1e-5)).numpy()


def _count_forwards(model):
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("which", ["fake", "resnet"])
def test_batched_equals_one_at_a_time_and_matches_the_official_recipe(which, resnet):
    model = FakeCAM() if which == "fake" else resnet
    images, tags = _images(), [[0, 2], [1, 2], [0, 1, 2]]
    calls, handle = _count_forwards(model)
    batched = infer_cams(model, images, tags, scales=SCALES, batch_size=8)
    assert len(calls) == len(SCALES)  # one pass per scale for the whole group, not one per image
    handle.remove()
    canvas = (max(i.shape[0] for i in images), max(i.shape[1] for i in images))
    for b, im, t in zip(batched, images, tags):
        assert b.classes.tolist() == t and b.classes.dtype == np.int64
        assert b.cams.dtype == np.float32 and b.cams.shape == (len(t), *im.shape[:2])
        assert (b.cams.max((1, 2)) > 0.99).all()  # non-trivial maps
        same_canvas = infer_cams(model, [im], [t], scales=SCALES, pad_to=canvas)[0]
        np.testing.assert_allclose(b.cams, same_canvas.cams, atol=1e-6)
        alone = infer_cams(model, [im], [t], scales=SCALES)[0]  # no padding: the official recipe
        np.testing.assert_allclose(alone.cams, _reference(model, im, t), atol=1e-5)


def test_padding_stays_close_to_unpadded(resnet):
    # Batched maps differ from unpadded ones only where a receptive field reaches padding. Observed with
    # this group (48x64, 40x40, 33x50; 4 scales + flip), max / mean abs diff per padded image:
    # * random-init ResNet-18 (timm zero-inits the last BN of each residual branch, so receptive fields
    #   are small): 33x50 0.137 / 0.014, 40x40 0 / 0;
    # * FakeCAM (3x3 conv, ceil-mode average pooling whose last window shrinks when unpadded): 0.28 / 0.065;
    # * ResNet-18 with every BN randomised (residual branches on, receptive fields far wider than these
    #   tiny images; a random net is chaotic): up to 0.96 / 0.32 -- a worst case, not a trained net.
    # The unpadded largest image (48x64) is identical in all cases; equally sized images are never padded.
    images, tags = _images(), [[0, 2], [1, 2], [0, 1, 2]]
    batched = infer_cams(resnet, images, tags, scales=SCALES)
    diffs = [np.abs(b.cams - _reference(resnet, im, t)) for b, im, t in zip(batched, images, tags)]
    assert diffs[0].max() < 1e-5  # the largest image is not padded at any scale
    assert max(d.max() for d in diffs) < 0.2 and max(d.mean() for d in diffs) < 0.02


def test_forward_count_and_values(resnet):
    images = _images(1, sizes=[(40, 40), (48, 64), (32, 48), (40, 56), (24, 40)])
    tags = [[0], [1, 2], [2], [0, 1], [0, 1, 2]]
    calls, handle = _count_forwards(resnet)
    out = infer_cams(resnet, images, tags, scales=(1.0, 1.5), batch_size=2)
    handle.remove()
    assert len(calls) == math.ceil(5 / 2) * 2
    for res, im, t in zip(out, images, tags):
        assert res.classes.tolist() == t and res.cams.shape == (len(t), *im.shape[:2])
        assert res.cams.min() >= 0 and res.cams.max() <= 1
        for m in res.cams:
            if m.max() > 0:
                assert m.max() > 0.99  # M / (M + 1e-5) for a map of maximum M (small for a random net)


def test_flip_equivariance_and_untagged(resnet):
    image = _images(2, sizes=[(40, 64)])[0]  # width a multiple of 16: the crop to W is symmetric
    out = infer_cams(resnet, [image, image[:, ::-1].copy(), image], [[0, 2], [0, 2], []], scales=SCALES)
    np.testing.assert_allclose(out[1].cams, out[0].cams[:, :, ::-1], atol=1e-5)
    assert out[2].classes.shape == (0,) and out[2].cams.shape == (0, 40, 64)
    calls, handle = _count_forwards(resnet)
    infer_cams(resnet, [image], [[]], scales=SCALES)
    handle.remove()
    assert calls == []  # nothing to compute for an untagged image


def test_bad_inputs(resnet):
    image = _images(sizes=[(32, 32)])[0]
    with pytest.raises(ValueError, match="out of range"):
        infer_cams(resnet, [image], [[3]], scales=(1.0,))
    with pytest.raises(ValueError, match="uint8"):
        infer_cams(resnet, [image.astype(np.float32)], [[0]])
    with pytest.raises(ValueError, match="output stride"):
        infer_cams(resnet, [image], [[0]], scales=(1.0,), stride=8)


def test_save_load_round_trip(tmp_path):
    res = CamResult(np.array([0, 2]), np.random.default_rng(0).random((2, 5, 7), dtype=np.float32))
    save_cams(tmp_path / "a.npz", res)
    back = load_cams(tmp_path / "a.npz")
    assert back.classes.tolist() == [0, 2] and back.cams.dtype == np.float32
    np.testing.assert_allclose(back.cams, res.cams, atol=1e-3)  # stored as float16


VOC_LIKE = ClassInfo(("background", "cat", "dog", "car"), background="background")
NO_BG = ClassInfo(("sky", "grass", "road"))


def _res(classes, cams):
    return CamResult(np.array(classes, dtype=np.int64), np.array(cams, dtype=np.float32))


def test_labels_with_background():
    # outputs 0, 2 = dataset classes 1 ("cat") and 3 ("car")
    res = _res([0, 2], [[[0.9, 0.2, 0.5, 0.6]], [[0.1, 0.25, 0.5, 0.7]]])
    assert cams_to_labels(res, VOC_LIKE, bg_threshold=0.3).tolist() == [[1, 0, 1, 3]]  # tie -> first
    assert cams_to_labels(res, VOC_LIKE, bg_threshold=0.55).tolist() == [[1, 0, 0, 3]]
    # band 0.15: margins 0.6, 0.05, 0.0, 0.1 (0.7 - 0.6; the bg plane 0.3 is third)
    assert cams_to_labels(res, VOC_LIKE, bg_threshold=0.3, ignore_band=0.15).tolist() == [[1, 255, 255, 255]]
    # band 0.08: pixel 1's margin is to the bg plane (0.3 - 0.25 = 0.05)
    assert cams_to_labels(res, VOC_LIKE, bg_threshold=0.3, ignore_band=0.08).tolist() == [[1, 255, 255, 3]]
    assert cams_to_labels(_res([], np.zeros((0, 1, 3))), VOC_LIKE, 0.3).tolist() == [[0, 0, 0]]
    with pytest.raises(ValueError, match="bg_threshold is required"):
        cams_to_labels(res, VOC_LIKE)
    with pytest.raises(ValueError, match="model outputs"):
        cams_to_labels(_res([3], np.zeros((1, 1, 1))), VOC_LIKE, 0.3)


def test_labels_without_background():
    res = _res([1, 2], [[[0.9, 0.2, 0.45]], [[0.1, 0.25, 0.5]]])
    assert cams_to_labels(res, NO_BG).tolist() == [[1, 2, 2]]
    assert cams_to_labels(res, NO_BG, ignore_band=0.1).tolist() == [[1, 255, 255]]
    one = _res([0], [[[0.0, 0.3, 1.0]]])
    assert cams_to_labels(one, NO_BG, ignore_band=0.5).tolist() == [[0, 0, 0]]  # single tag: no rival
    none = cams_to_labels(_res([], np.zeros((0, 2, 2))), NO_BG)
    assert none.dtype == np.int64 and (none == 255).all()
    with pytest.raises(ValueError, match="no background class"):
        cams_to_labels(res, NO_BG, bg_threshold=0.3)


def test_coverage_and_palette_png(tmp_path):
    label = np.array([[0, 1, 255], [3, 255, 2]], dtype=np.int64)
    assert coverage(label, 255) == pytest.approx(4 / 6)
    assert coverage(np.zeros((0, 0)), 255) == 0.0
    save_pseudo_label(tmp_path / "x.png", label, VOC_LIKE)
    with Image.open(tmp_path / "x.png") as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), label)
        assert im.getpalette()[3:6] == [128, 0, 0]  # VOC colour of class 1


def test_threshold_sweep_picks_best():
    classes = ClassInfo(("background", "cat"), background="background")
    res = _res([0], [[[0.1, 0.3, 0.5, 0.7, 0.9]]])
    gt = np.array([[0, 0, 1, 1, 1]])  # right exactly for thresholds in [0.3, 0.5)
    sweep = threshold_sweep([res], [gt], classes, thresholds=(0.2, 0.4, 0.6))
    assert max(sweep, key=sweep.get) == 0.4 and sweep[0.4] == pytest.approx(1.0)
    assert sweep[0.2] == pytest.approx((1 / 2 + 3 / 4) / 2)
    full = threshold_sweep(iter([res]), iter([gt]), classes)
    assert len(full) == 15 and max(full, key=full.get) in (0.3, 0.35, 0.4, 0.45)
    with pytest.raises(ValueError, match="background"):
        threshold_sweep([res], [gt], NO_BG)
