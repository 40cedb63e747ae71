"""The fully supervised upper bound (method ``supervised``): the CAM family's segmenter, same network and
budget, trained on the true masks; with ``data.labeled`` on the labeled images' masks only."""

import json

import pytest

from lesseg.api import run
from lesseg.config import load_config
from lesseg.data.synth import generate

TINY = ["method.name=supervised", "data.crop_size=64", "data.batch_size=4", "data.workers=0",
        "segmenter.init_from_classifier=false", "segmenter.model.backbone=resnet18", "segmenter.train.epochs=6",
        "segmenter.optim.lr=0.03", "eval.gallery=1"]  # fmt: skip


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("d") / "scenes"
    generate(root, images=48, classes=4, seed=1, size=64, background="none")
    return root


def test_fully_supervised_segmenter_learns_past_the_mask_references(tmp_path, scenes):
    cfg = load_config(
        "configs/cam/synthetic.yaml", [f"data.root={scenes}", f"run_dir={tmp_path}", "name=full", *TINY]
    )
    m = json.loads((run(cfg, log=lambda _: None) / "metrics.json").read_text())
    steps = [json.loads(ln) for ln in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    n_train = len((scenes / "train.txt").read_text().split())
    assert max(s["step"] for s in steps if "loss" in s) == 6 * (n_train // 4)  # every training image
    # random init, 66 steps on 38 images: measured 0.246 against 0.213 (largest class) and 0.159 (random tag)
    refs = {name: r["val"]["miou"] for name, r in m["references"].items()}
    assert m["segmenter"]["miou"] > max(refs["largest_class"] + 0.02, refs["random_tags"] + 0.06), (m, refs)


def test_with_a_labeled_split_it_trains_on_those_masks_alone(tmp_path, scenes):
    cfg = load_config("configs/cam/synthetic.yaml",
                      [f"data.root={scenes}", f"run_dir={tmp_path}", "name=semi", *TINY, "data.labeled=1/4",
                       "segmenter.train.epochs=1"])  # fmt: skip
    run(cfg, log=lambda _: None)
    labeled = json.loads((tmp_path / "semi" / "splits" / "labeled.json").read_text())["labeled"]
    steps = [json.loads(ln) for ln in (tmp_path / "semi" / "log.jsonl").read_text().splitlines()]
    assert len(labeled) == round(38 / 4) and max(s["step"] for s in steps if "loss" in s) == len(labeled) // 4
