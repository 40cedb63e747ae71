"""The refinement stages in a run: affinity labels, boundary branch, random walk, and the four
pseudo-label variants scored on train (CRF rows only with the crf extra)."""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from lesseg.cli import main
from lesseg.data.synth import generate
from lesseg.refine import load_cams

HAS_CRF = importlib.util.find_spec("pydensecrf") is not None
TINY = ["data.crop_size=48", "data.scale_range=[0.9,1.1]", "data.batch_size=8", "data.workers=0",
        "train.epochs=1", "cams.scales=[1.0]", "segmenter.train.epochs=1", "boundary.train.epochs=1",
        "eval.gallery=2", "eval.references=false"]  # fmt: skip


# the no-background run also walks on images resized x2 (boundary.image_scale): the maps still come back at
# the image's size
@pytest.mark.parametrize(("background", "image_scale"), [("textured", 1.0), ("none", 2.0)])
def test_random_walk_pipeline(tmp_path, background, image_scale, capsys):
    data = tmp_path / "data"
    generate(data, images=16, classes=4, seed=0, size=48, background=background)
    # with the extra, the segmenter's val predictions also go through the test-time CRF
    crf = ["segmenter.test_crf_iterations=2"] if HAS_CRF else ["affinity_labels.crf_iterations=0"]
    args = ["run", "configs/cam/synthetic.yaml", f"data.root={data}", f"run_dir={tmp_path}",
            "pseudo_labels.source=random_walk", "eval.refinement=true", f"boundary.image_scale={image_scale}",
            *crf, *TINY]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    for stage in ("affinity_labels", "boundary", "random_walk", "refine_eval", "pseudo_labels"):
        assert f"stage {stage}: running" in out
    run = tmp_path / "cam_synthetic"
    metrics = json.loads((run / "metrics.json").read_text())
    rows = metrics["refinement"]
    assert set(rows) == {"cam", "cam_crf", "random_walk", "random_walk_crf"}
    assert 0 <= rows["random_walk"]["miou"] <= 1 and rows["random_walk"]["coverage"] == 1.0
    if HAS_CRF:
        assert 0 <= rows["cam_crf"]["miou"] <= 1
    else:
        assert "lesseg[crf]" in rows["cam_crf"]["skipped"]
    assert metrics["pseudo_labels"]["source"] == "random_walk"
    assert metrics["segmenter"]["test_crf_iterations"] == (2 if HAS_CRF else 0)
    assert metrics["pseudo_labels"]["miou"] == pytest.approx(rows["random_walk"]["miou"])
    for p in sorted((run / "random_walk").iterdir()):
        res = load_cams(p)
        assert res.cams.shape[1:] == (48, 48) and (res.cams >= 0).all() and res.cams.max() <= 1 + 1e-3
    labels = [np.asarray(Image.open(p)) for p in sorted((run / "affinity_labels").iterdir())]
    assert any((m == 255).any() for m in labels)  # unconfident pixels are ignored
    assert all(m.shape == (48, 48) for m in labels)
    if HAS_CRF:  # the test-time CRF is part of evaluate's hash: changing it re-runs evaluate, not training
        assert (
            main(
                [
                    *(a for a in args if not a.startswith("segmenter.test_crf")),
                    "segmenter.test_crf_iterations=0",
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "stage evaluate: running" in out and "stage segmenter: running" not in out
        assert json.loads((run / "metrics.json").read_text())["segmenter"]["test_crf_iterations"] == 0
