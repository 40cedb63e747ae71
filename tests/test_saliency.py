"""Saliency pseudo-labels (MCIS's official gen_gt.py recipe): each rule by hand, and the stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lesseg.data.classes import ClassInfo
from lesseg.refine.cams import CamResult
from lesseg.refine.saliency import saliency_labels

CLASSES = ClassInfo(("background", "cat", "dog"), background="background")


def test_two_confident_classes_are_ignored_and_salient_background_too():
    cams = np.array([[[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 0.5, 0.0]]], dtype=np.float32)  # cat, dog
    sal = np.array([[255, 255, 255, 10]], dtype=np.uint8)
    label = saliency_labels(CamResult(np.array([0, 1]), cams), CLASSES, sal)
    # px0: both > 0.99 -> ignore; px1: cat; px2: dog (0.5 > background 0); px3: background, not salient
    assert label.tolist() == [[255, 1, 2, 0]]


def test_tiny_foreground_ignores_the_whole_image():
    cams = np.zeros((1, 20, 20), np.float32)
    cams[0, 0, 0] = 1.0  # one foreground pixel of 400: 0.25% < 1%
    sal = np.zeros((20, 20), np.uint8)
    sal[0, 0] = 255
    assert (saliency_labels(CamResult(np.array([0]), cams), CLASSES, sal) == 255).all()


def test_errors():
    res = CamResult(np.array([0]), np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="saliency map is 3x2"):
        saliency_labels(res, CLASSES, np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="background class"):
        saliency_labels(res, ClassInfo(("a", "b")), np.zeros((2, 2), np.uint8))


def test_saliency_stage_from_a_folder(tmp_path, capsys):
    from lesseg.cli import main
    from lesseg.data import read_dataset
    from lesseg.data.synth import generate

    data = tmp_path / "data"
    generate(data, images=10, classes=3, seed=0, size=48, background="textured")
    source = read_dataset(data)
    sal_dir = tmp_path / "saliency"
    sal_dir.mkdir()
    for r in source.split("train")[:-1]:  # perfect saliency from the masks, one image left out
        Image.fromarray(((source.load_mask(r) != 0) * 255).astype(np.uint8)).save(sal_dir / f"{r.id}.png")
    base = ["run", "configs/cam/synthetic.yaml", f"data.root={data}", f"run_dir={tmp_path}", "data.crop_size=48",
            "data.batch_size=4", "data.workers=0", "train.epochs=1", "cams.scales=[1.0]",
            "pseudo_labels.source=saliency", f"pseudo_labels.saliency_dir={sal_dir}"]  # fmt: skip
    for stage in ("classifier", "cams"):
        assert main([*base, "--stage", stage]) == 0
    assert main([*base, "--stage", "pseudo_labels"]) != 0
    last = source.split("train")[-1]
    assert f"saliency/{last.id}.png: saliency map missing" in capsys.readouterr().err
    Image.fromarray(((source.load_mask(last) != 0) * 255).astype(np.uint8)).save(sal_dir / f"{last.id}.png")
    assert main([*base, "--stage", "pseudo_labels"]) == 0
    metrics = json.loads((tmp_path / "cam_synthetic" / "metrics.json").read_text())["pseudo_labels"]
    assert metrics["source"] == "saliency" and 0 < metrics["coverage"] < 1
