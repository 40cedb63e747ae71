"""Dense CRF refinement (optional extra ``crf``): edges snap to image edges, outputs are valid, errors are clear.

Every test but the missing-package one needs ``pydensecrf2`` and skips without it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from lesseg.data.classes import ClassInfo
from lesseg.errors import LessegError
from lesseg.predict import Predictor
from lesseg.refine.crf import CrfUnavailableError, crf_on_labels, dense_crf

SKIP_REASON = "dense CRF needs the crf extra: pip install 'lesseg[crf]'"
H, W = 24, 32
IMAGE_EDGE = 16  # first bright column
LABEL_EDGE = 12  # first column labelled foreground: 4 px left of the image edge


@pytest.fixture
def dcrf():
    return pytest.importorskip("pydensecrf.densecrf", reason=SKIP_REASON)


def step_image() -> np.ndarray:
    """Left half dark, right half bright."""
    image = np.full((H, W, 3), 30, dtype=np.uint8)
    image[:, IMAGE_EDGE:] = 220
    return image


def step_labels(edge: int = LABEL_EDGE) -> np.ndarray:
    labels = np.zeros((H, W), dtype=np.int64)
    labels[:, edge:] = 1
    return labels


def edges(labels: np.ndarray) -> set[int]:
    """The first foreground column of each row."""
    return {int(np.argmax(row != row[0])) for row in labels}


def test_missing_package_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes `import` raise ImportError, installed or not.
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match=r"pip install 'lesseg\[crf\]'") as info:
        crf_on_labels(step_image(), step_labels(), 2)
    assert isinstance(info.value, CrfUnavailableError) and isinstance(info.value, LessegError)
    assert "pydensecrf.densecrf" in str(info.value) and "g++" in str(info.value)
    with pytest.raises(CrfUnavailableError):
        dense_crf(step_image(), np.full((2, H, W), 0.5, dtype=np.float32))


def test_label_crf_moves_the_label_edge_to_the_image_edge(dcrf):
    labels = step_labels()
    for iterations in (10, 1):  # affinity labels, final pseudo-labels (Puzzle-CAM)
        refined = crf_on_labels(step_image(), labels, num_labels=2, iterations=iterations)
        assert refined.shape == (H, W) and refined.dtype == np.int64
        assert all(abs(e - IMAGE_EDGE) <= 1 for e in edges(refined)), (iterations, refined[H // 2])
        assert set(np.unique(refined)) == {0, 1}


def test_read_only_image_as_pil_decodes_it(dcrf):
    image = step_image()
    image.flags.writeable = False  # np.asarray(PIL image) is read-only
    out = crf_on_labels(image, step_labels(), 2)
    assert edges(out) == {IMAGE_EDGE}


def test_label_crf_maps_back_to_label_values_and_fills_ignored_pixels(dcrf):
    labels = np.where(step_labels() == 1, 15, 0)
    labels[:, 8:20] = 255  # a band of unknown pixels across the image edge
    refined = crf_on_labels(step_image(), labels, 2, ignore_index=255, label_values=[15, 0])
    assert set(np.unique(refined)) == {0, 15}
    assert all(abs(e - IMAGE_EDGE) <= 1 for e in edges(refined)), refined[H // 2]


def test_dense_crf_returns_distributions_and_moves_a_soft_edge(dcrf):
    x = np.arange(W, dtype=np.float64)
    fg = 1.0 / (1.0 + np.exp(-(x - LABEL_EDGE + 0.5) / 2.0))  # soft edge between columns 11 and 12
    probs = np.stack([np.broadcast_to(1 - fg, (H, W)), np.broadcast_to(fg, (H, W))]).astype(np.float32)
    assert edges(probs.argmax(0)) == {LABEL_EDGE}
    post = dense_crf(step_image(), probs)
    assert post.shape == (2, H, W) and post.dtype == np.float32
    assert np.all(post >= 0) and np.allclose(post.sum(axis=0), 1.0, atol=1e-4)
    assert all(abs(e - IMAGE_EDGE) <= 1 for e in edges(post.argmax(0))), post.argmax(0)[H // 2]


def test_uniform_image_and_confident_unaries_keep_the_labels(dcrf):
    # Without colour edges the bilateral kernel is a wide Gaussian (sxy 50-80 px); balanced regions with
    # confident unaries stay as they are.
    image = np.full((H, W, 3), 128, dtype=np.uint8)
    halves = step_labels(IMAGE_EDGE)
    stripes = np.repeat((np.arange(W) // 11)[None], H, axis=0)  # three classes, 11/11/10 columns
    for labels, n in ((halves, 2), (stripes, 3)):
        assert np.array_equal(crf_on_labels(image, labels, n, gt_prob=0.9), labels)
        probs = np.full((n, H, W), 0.01 / (n - 1), dtype=np.float32)
        np.put_along_axis(probs, labels[None], 0.99, axis=0)
        assert np.array_equal(dense_crf(image, probs).argmax(0), labels)


def test_zero_iterations_return_the_input(dcrf):
    probs = np.stack([np.full((H, W), 0.3), np.full((H, W), 0.7)]).astype(np.float32)
    assert np.allclose(dense_crf(step_image(), probs, iterations=0), probs, atol=1e-5)
    assert np.array_equal(crf_on_labels(step_image(), step_labels(), 2, iterations=0), step_labels())


@pytest.mark.parametrize(
    ("image", "probs", "match"),
    [
        (np.zeros((H, W, 3), np.float32), np.full((2, H, W), 0.5), "image must be a uint8"),
        (np.zeros((H, W), np.uint8), np.full((2, H, W), 0.5), "grayscale"),
        (np.zeros((H, W, 3), np.uint8), np.full((2, H, W + 1), 0.5), "differ in size"),
        (np.zeros((H, W, 3), np.uint8), np.full((H, W), 0.5), r"\[C, H, W\]"),
        (np.zeros((H, W, 3), np.uint8), np.full((2, H, W), 0.6), "sum to 1"),
        (np.zeros((H, W, 3), np.uint8), np.full((2, H, W), -1.0), "non-negative"),
        (np.zeros((H, W, 3), np.uint8), np.ones((2, H, W), np.int64), "float"),
    ],
)
def test_dense_crf_rejects_bad_input(image, probs, match):
    with pytest.raises(ValueError, match=match):
        dense_crf(image, probs)


def test_dense_crf_rejects_bad_iterations():
    with pytest.raises(ValueError, match="iterations"):
        dense_crf(step_image(), np.full((2, H, W), 0.5), iterations=-1)


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (step_labels() + 1, {}, r"values \[2\] outside the labels \(0 \.\. 1"),
        (step_labels()[:, :-1], {}, "differ in size"),
        (step_labels().astype(np.float32), {}, "integer"),
        (step_labels(), {"gt_prob": 1.0}, "gt_prob"),
        (step_labels(), {"num_labels": 0}, "num_labels"),
        (step_labels(), {"label_values": [0, 1, 2]}, "label_values has 3 values"),
        (step_labels(), {"label_values": [1, 1]}, "distinct"),
        (step_labels(), {"ignore_index": 1}, "ignore_index 1 is also a label"),
        (step_labels() * 7, {"label_values": [0, 15]}, r"values \[7\] outside the labels \(label_values"),
    ],
)
def test_crf_on_labels_rejects_bad_input(labels, kwargs, match):
    kwargs = {"num_labels": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        crf_on_labels(step_image(), labels, **kwargs)


class _SoftStep(torch.nn.Module):
    """A "segmenter" whose logits change class smoothly at LABEL_EDGE, 4 px left of the image edge."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cols = torch.arange(x.shape[-1], dtype=torch.float32) - LABEL_EDGE + 0.5
        fg = (0.3 * cols).expand(x.shape[0], 1, x.shape[2], x.shape[3])
        return {"logits": torch.cat([torch.zeros_like(fg), fg], dim=1)}


def test_predictor_test_time_crf_snaps_to_the_image_edge(dcrf):
    classes = ClassInfo(classes=("background", "thing"), background="background")
    plain = Predictor(_SoftStep(), classes, device="cpu").predict(step_image())
    assert edges(plain) == {LABEL_EDGE}
    crf = Predictor(_SoftStep(), classes, device="cpu", crf_iterations=10).predict(step_image())
    assert all(abs(e - IMAGE_EDGE) <= 1 for e in edges(crf)) and crf.dtype == np.int64


def test_predictor_crf_errors(monkeypatch):
    with pytest.raises(ValueError, match="crf_iterations must be an integer >= 0"):
        Predictor(_SoftStep(), ClassInfo(classes=("a", "b")), device="cpu", crf_iterations=-1)
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(CrfUnavailableError, match=r"lesseg\[crf\]"):  # at construction, not mid-run
        Predictor(_SoftStep(), ClassInfo(classes=("a", "b")), device="cpu", crf_iterations=10)


def test_run_without_the_extra_refuses_crf_options_before_training(monkeypatch, tmp_path):
    from lesseg.api import run
    from lesseg.config import load_config
    from lesseg.data.synth import generate
    from lesseg.errors import ConfigError

    generate(tmp_path / "data", images=8, classes=3, seed=0, size=32)
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    cfg = load_config("configs/cam/synthetic.yaml", [f"run_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}",
                                                     "pseudo_labels.crf_iterations=1"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"pseudo_labels.crf_iterations > 0 .*lesseg\[crf\].*set them to 0"):
        run(cfg)
    assert not (tmp_path / "runs" / cfg.name / "checkpoints").exists()  # refused before training
    # a run that stops before the pseudo-labels does not need the CRF
    with pytest.raises(ConfigError, match="unknown stage"):
        run(cfg, until="nope")
    assert "pseudo_labels" not in str(_refusal(run, cfg, until="cam_eval", epochs=0))


def _refusal(run, cfg, until, epochs):
    import dataclasses

    short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    try:
        run(short, until=until)
    except Exception as e:  # noqa: BLE001 - the test reads whatever it raised
        return e
    return ""
