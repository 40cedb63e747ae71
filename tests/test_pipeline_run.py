"""`lesseg run` end to end on tiny synthetic scenes: every stage's artifacts, caching, references, the report,
`predict`, and that no training stage reads a training mask."""

import base64
import contextlib
import io
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from chromium import find_chromium, run_chromium
from lesseg.api import load_run, run_context
from lesseg.cli import main
from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data.synth import generate
from lesseg.pipeline import Pipeline, RunContext
from lesseg.stages import weak_supervision_stages

TINY = ["data.crop_size=48", "data.scale_range=[0.9,1.1]", "data.batch_size=8", "data.workers=0",
        "train.epochs=1", "cams.scales=[1.0,1.5]", "cams.batch_size=4", "segmenter.train.epochs=1",
        "eval.gallery=3"]  # fmt: skip
STAGES = ["classifier", "cams", "cam_eval", "pseudo_labels", "segmenter", "evaluate", "references", "report"]


def _synth(root, background):
    generate(root, images=16, classes=4, seed=0, size=48, background=background)
    return root


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    return _synth(tmp_path_factory.mktemp("d") / "textured", "textured")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, textured):
    """A whole run on scenes with a background class (run once per module), its `lesseg run` arguments
    and what it printed. Tests that run stages again work on a copy (:func:`own_copy`)."""
    runs = tmp_path_factory.mktemp("runs")
    args = ["run", "configs/cam/synthetic.yaml", f"data.root={textured}", f"run_dir={runs}", *TINY]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return args, runs / "cam_synthetic", out.getvalue()


def own_copy(finished_run, tmp_path):
    """A copy of the finished run under ``tmp_path`` and the arguments that address it."""
    args, run, _ = finished_run
    shutil.copytree(run, tmp_path / run.name)
    return [a if not a.startswith("run_dir=") else f"run_dir={tmp_path}" for a in args], tmp_path / run.name


def test_run_writes_every_stage_and_caches(finished_run, tmp_path, capsys):
    out = finished_run[2]
    args, run = own_copy(finished_run, tmp_path)
    assert all(f"stage {s}: running" in out for s in STAGES)
    assert "cams " in out and "segmenter " in out and "report: " in out

    state = json.loads((run / "stages.json").read_text())
    assert list(state) == STAGES
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["cams"]["miou"] <= 1 and metrics["cams"]["bg_threshold"] == 0.25
    assert 0 <= metrics["cams"]["best_threshold_miou"] <= 1
    assert metrics["cams"]["best_threshold_miou"] >= metrics["cams"]["miou"] - 1e-9  # 0.25 is in the sweep
    assert metrics["pseudo_labels"]["coverage"] == 1.0  # no ignore band
    assert metrics["pseudo_labels"]["miou"] == pytest.approx(metrics["cams"]["miou"])
    refs = metrics["references"]
    assert set(refs) == {"untrained", "random_tags", "largest_class"}
    assert set(refs["untrained"]) == {"cams", "pseudo_labels", "segmenter"}

    # pseudo-labels are palette PNGs whose pixel values are class indices
    cfg = load_config(run / "config.yaml")
    source = read_dataset(cfg.data.root)
    for r in source.split("train"):
        with Image.open(run / "pseudo_labels" / f"{r.id}.png") as im:
            assert im.mode == "P" and im.size == Image.open(r.image).size
            values = np.unique(np.asarray(im))
        assert set(values.tolist()) <= {0, *(source.tags_of(r) or ())}  # background or the image's tags

    # a second run skips everything; a new threshold re-runs what depends on it, not the training
    assert main(args) == 0
    out = capsys.readouterr().out
    assert all(f"stage {s}: up to date" in out for s in STAGES)
    assert main([*args, "pseudo_labels.bg_threshold=0.4"]) == 0
    out = capsys.readouterr().out
    assert "stage classifier: up to date" in out and "stage cams: up to date" in out
    assert "stage pseudo_labels: running" in out and "stage segmenter: running" in out
    assert json.loads((run / "metrics.json").read_text())["cams"]["bg_threshold"] == 0.4
    # ...and the segmenter trains afresh on the new labels instead of resuming its finished checkpoint
    assert "resumed" not in (run / "log.jsonl").read_text()


def test_references_by_hand(finished_run):
    """random_tags and largest_class recomputed independently, on the val split."""
    _, run, _ = finished_run
    cfg = load_config(run / "config.yaml")
    source = read_dataset(cfg.data.root)
    masks = [source.load_mask(r) for r in source.split("val")]
    inter, union = np.zeros(4), np.zeros(4)
    for m in masks:
        largest = np.bincount(m[m != 255].ravel(), minlength=4).argmax()
        valid = m != 255
        for c in range(4):
            p, g = (np.full(m.shape, largest) == c) & valid, (m == c) & valid
            inter[c] += (p & g).sum()
            union[c] += (p | g).sum()
    present = union > 0
    expected = (inter[present] / union[present]).mean()
    refs = json.loads((run / "metrics.json").read_text())["references"]
    assert refs["largest_class"]["val"]["miou"] == pytest.approx(expected)
    # random among (tags + background): each class's IoU is well below 1 and the mIoU sits near chance
    assert 0.05 < refs["random_tags"]["val"]["miou"] < 0.5


def test_report_renders_with_gallery(finished_run, tmp_path):
    _, run, _ = finished_run
    html = (run / "report.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == 3 * 5  # 3 gallery rows: image, CAM, pseudo-label, prediction, ground truth
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri))).verify()
    assert '<table class="metrics">' in html and "references" in html and "random init" in html
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not installed (apt-get install chromium); .ci/run installs it")
    shot = tmp_path / "shot.png"
    run_chromium(
        binary, tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", (run / "report.html").as_uri()
    )
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB")).astype(np.int64)
    assert pixels.std() > 20
    dom = run_chromium(binary, tmp_path, "--dump-dom", (run / "report.html").as_uri())
    assert '<table class="metrics">' in dom and len(re.findall(r"<img\b", dom)) == 15


def test_predict_cli_and_api(finished_run, textured, tmp_path, capsys):
    _, run, _ = finished_run
    images = tmp_path / "new"
    images.mkdir()
    for p in sorted((textured / "images").iterdir())[:3]:
        shutil.copy(p, images / p.name)
    out = tmp_path / "out"
    assert main(["predict", str(run), str(images), "--out", str(out), "--flip"]) == 0
    assert "3 masks" in capsys.readouterr().out
    predictor = load_run(run, flip=True)
    for p in sorted(images.iterdir()):
        with Image.open(out / f"{p.stem}.png") as im:
            assert im.mode == "P"
            mask = np.asarray(im)
        image = np.asarray(Image.open(p).convert("RGB"))
        assert mask.shape == image.shape[:2] and mask.max() < 4
        np.testing.assert_array_equal(mask, predictor.predict(image))
        width, height = Image.open(out / f"{p.stem}_overlay.png").size
        assert width == image.shape[1] and height > image.shape[0]  # the overlay, then its legend
    assert main(["predict", str(tmp_path / "nope"), str(images), "--out", str(out)]) == 2
    assert "nope: no such run folder" in capsys.readouterr().err


def _scramble_masks(root):
    """Every mask's pixels shuffled in place: same classes (so the same tags), no spatial information."""
    rng = np.random.default_rng(1)
    for p in sorted((root / "masks").iterdir()):
        with Image.open(p) as im:
            palette, mask = im.getpalette(), np.asarray(im).copy()
        flat = mask.reshape(-1)
        flat[:] = flat[rng.permutation(flat.size)]
        out = Image.fromarray(mask)
        if palette:
            out.putpalette(palette)
        out.save(p)


@pytest.mark.parametrize("background", ["textured", "none"])
def test_training_stages_never_read_train_masks(tmp_path, background):
    """Classifier, CAMs and pseudo-labels come out bit-identical when every training mask is scrambled."""
    clean = _synth(tmp_path / "clean", background)
    scrambled = shutil.copytree(clean, tmp_path / "scrambled")
    _scramble_masks(scrambled)
    runs = []
    for root in (clean, scrambled):
        cfg = load_config("configs/cam/synthetic.yaml", [f"data.root={root}", f"run_dir={tmp_path}",
                                                         f"name=run_{root.name}", "train.device=cpu", *TINY])  # fmt: skip
        ctx = run_context(cfg, tmp_path / f"run_{root.name}")
        stages = [
            s for s in weak_supervision_stages(cfg) if s.name in ("classifier", "cams", "pseudo_labels")
        ]
        Pipeline(stages).run(ctx, log=lambda _: None)
        runs.append(ctx.run_dir)
    a, b = (torch.load(r / "checkpoints" / "classifier_final.pt", weights_only=True)["model"] for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    files = sorted(
        p.relative_to(runs[0]) for p in runs[0].rglob("*") if p.parent.name in ("cams", "pseudo_labels")
    )
    assert len(files) == 2 * len(read_dataset(clean).split("train"))
    for f in files:
        assert (runs[0] / f).read_bytes() == (runs[1] / f).read_bytes(), f
    # and the masks did change: the evaluation sees them
    m0, m1 = (json.loads((r / "metrics.json").read_text())["pseudo_labels"]["miou"] for r in runs)
    assert m0 != m1


def test_stage_option_and_errors(finished_run, tmp_path, capsys):
    args, run = own_copy(finished_run, tmp_path)
    assert main([*args, "pseudo_labels.bg_threshold=0.4", "--stage", "cam_eval"]) == 0
    out = capsys.readouterr().out
    assert "stage cam_eval: running" in out and "stage cams:" not in out and "stage report:" not in out
    assert main([*args, "pseudo_labels.ignore_band=0.05", "--stage", "pseudo_labels"]) == 0
    banded = json.loads((run / "metrics.json").read_text())["pseudo_labels"]
    assert 0.0 < banded["coverage"] < 1.0  # low-margin pixels left out, and reported
    labels = [np.asarray(Image.open(p)) for p in sorted((run / "pseudo_labels").iterdir())]
    assert np.mean([(m == 255).mean() for m in labels]) == pytest.approx(1 - banded["coverage"], abs=0.02)
    capsys.readouterr()
    assert main([*args, "--stage", "cam"]) == 2
    err = capsys.readouterr().err
    assert "unknown stage 'cam'" in err and "did you mean" in err and "cams" in err
    assert main([*args, "--print-config", "segmenter.init_from_classifier=false"]) == 0
    assert "init_from_classifier: false" in capsys.readouterr().out


def test_segmenter_init_from_classifier(tmp_path):
    from lesseg.engine.checkpoint import save_checkpoint
    from lesseg.errors import ConfigError
    from lesseg.models import create_model
    from lesseg.stages.segmenter import build_segmenter, init_encoder_from_classifier

    cfg = load_config("configs/cam/synthetic.yaml")
    ctx = RunContext(cfg, tmp_path)
    torch.manual_seed(0)
    classifier = create_model("cam_classifier", backbone="resnet18", num_classes=7, output_stride=16)
    save_checkpoint(tmp_path / "checkpoints" / "classifier_final.pt", {"model": classifier.state_dict()})
    seg = build_segmenter(cfg.segmenter.model, 8)
    init_encoder_from_classifier(ctx, seg)
    a, b = classifier.encoder.state_dict(), seg.encoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cfg.segmenter.model.backbone = "resnet34"
    with pytest.raises(ConfigError, match="same backbone.*resnet18.*resnet34"):
        init_encoder_from_classifier(ctx, build_segmenter(cfg.segmenter.model, 8))


@pytest.mark.slow
def test_demo_beats_references_by_a_margin(tmp_path):
    """`make demo`'s claim: with its seed, CAM, pseudo-label and segmenter mIoU each beat the best reference
    (untrained network, random among tags) by at least 0.10. About 5 minutes on 2 cores."""
    from lesseg.api import run
    from lesseg.eval import headline, read_metrics

    generate(tmp_path / "textured", images=200, classes=8, size=128, seed=0, background="textured")
    cfg = load_config(
        "configs/cam/synthetic.yaml", [f"data.root={tmp_path / 'textured'}", f"run_dir={tmp_path}"]
    )
    rows = headline(read_metrics(run(cfg, log=lambda _: None)))
    assert [r["stage"] for r in rows] == ["cams", "pseudo_labels", "segmenter"]
    for r in rows:
        assert r["margin"] >= 0.10, r


def test_eval_scores_any_split_without_touching_the_run(finished_run, textured, tmp_path, capsys):
    _, run, _ = finished_run
    data = shutil.copytree(textured, tmp_path / "data")
    val_ids = (data / "val.txt").read_text().split()
    (data / "test.txt").write_text("\n".join(val_ids[:2]) + "\n")  # a split the run never saw
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "stages.json")}
    assert main(["eval", str(run), "--split", "val"]) == 0
    assert main(["eval", str(run), "--split", "test", "--data-root", str(data)]) == 0
    out = capsys.readouterr().out
    assert "random_tags" in out and "written to" in out
    assert {name: (run / name).read_bytes() for name in before} == before  # nothing retrained or rewritten
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval"]["val"]["scales 1"]["miou"] == metrics["segmenter"]["miou"]  # to the last digit
    test = metrics["eval"]["test"]["scales 1"]
    assert test["images"] == 2 and test["data_root"] == str(data) and 0 <= test["miou"] <= 1
    assert set(test["references"]) == {"random_tags", "largest_class"}
    assert main(["eval", str(run), "--split", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err


def test_the_val_split_leaves_training_stages_alone(textured):
    from lesseg.api import pipeline_stages
    from lesseg.registry import get_method

    def hashes(*overrides):
        cfg = load_config("configs/cam/synthetic.yaml", [f"data.root={textured}", *overrides])
        stages = pipeline_stages(get_method("cam")(cfg, read_dataset(textured)))
        return {s.name: Pipeline(stages).stage_hash(s.name, cfg) for s in stages}

    val, test = hashes(), hashes("data.val_split=test")
    assert [s for s in val if val[s] != test[s]] == ["evaluate", "references", "report"]
