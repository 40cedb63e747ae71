"""A new method is one file plus its config: `supervised_method.py` (registered by importing it, known to no
other file of lesseg) trains on the labeled split, is evaluated, predicts and reports through the shared
stages; supervision regimes are data (`data.labeled`, `data.novel`), saved with the run, validated."""

import json
from pathlib import Path

import pytest
from PIL import Image

import supervised_method  # noqa: F401  (registers "supervised_only")
from lesseg.api import pipeline_stages
from lesseg.cli import main
from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data.classes import ClassInfo
from lesseg.data.splits import run_splits
from lesseg.pipeline import Pipeline
from lesseg.registry import get_method
from tiny_data import tiny_scenes

CONFIG = """_base_: {base}
name: sup
method:
  name: supervised_only
data:
  labeled: 1/2
  crop_size: 48
  scale_range: [0.9, 1.1]
  batch_size: 2
  workers: 0
segmenter:
  train:
    epochs: 1
eval:
  gallery: 2
"""


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return tiny_scenes(tmp_path_factory.mktemp("d") / "textured")


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "supervised.yaml"
    path.write_text(CONFIG.format(base=Path("configs/base.yaml").resolve()))
    return path


def test_a_method_of_its_own_trains_evaluates_predicts_and_reports(tmp_path, scenes, config, capsys):
    args = ["run", str(config), f"data.root={scenes}", f"run_dir={tmp_path}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert [s for s in ("supervision", "train", "evaluate", "references", "report") if f"stage {s}: done" in out] \
        == ["supervision", "train", "evaluate", "references", "report"]  # fmt: skip
    run = tmp_path / "sup"
    train_ids = [r.id for r in read_dataset(scenes).split("train")]
    labeled = json.loads((run / "splits" / "labeled.json").read_text())
    assert len(labeled["labeled"]) == round(len(train_ids) / 2) and labeled["spec"] == "1/2"
    assert sorted(labeled["labeled"] + labeled["unlabeled"]) == sorted(train_ids)
    steps = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert max(s["step"] for s in steps if "loss" in s) == len(labeled["labeled"]) // 2  # labeled images only
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["segmenter"]["miou"] <= 1 and "random_tags" in metrics["references"]
    assert (run / "report.html").is_file() and "supervised_only" in (run / "report.html").read_text()

    photo = tmp_path / "photo.png"
    Image.open(next((scenes / "images").iterdir())).save(photo)
    assert main(["predict", str(run), str(photo), "--out", str(tmp_path / "pred")]) == 0
    assert (tmp_path / "pred" / "photo.png").is_file()


def test_regimes_a_method_does_not_train_with_are_clear_errors(tmp_path, scenes, config, capsys):
    cases = [
        (["run", str(config), f"data.root={scenes}", f"run_dir={tmp_path}", "data.labeled=null"],
         "method supervised_only needs a supervision split (data.labeled or data.novel); it trains with semi"),
        (["run", "configs/cam/synthetic.yaml", f"data.root={scenes}", f"run_dir={tmp_path}", "data.labeled=1/8"],
         "method cam does not train with a few pixel masks (data.labeled) and the other images' tags or "
         "nothing (data.labeled=1/8); it trains with tags: image-level tags"),
        (["run", "configs/picie/synthetic.yaml", f"data.root={scenes}", f"run_dir={tmp_path}", "data.novel=1/4"],
         "method picie does not train with masks of base classes, tags of novel ones"),
        (["run", str(config), f"data.root={scenes}", f"run_dir={tmp_path}", "data.labeled=nope.txt"],
         "data.labeled='nope.txt' is neither a fraction (e.g. 1/8) nor an existing file of image ids"),
        (["run", str(config), f"data.root={scenes}", f"run_dir={tmp_path}", "data.labeled=2"],
         "labeled fraction '2' must lie in (0, 1]"),
    ]  # fmt: skip
    for args, message in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err, err


def test_a_labeled_list_file_and_novel_classes(tmp_path, scenes):
    ids = [r.id for r in read_dataset(scenes).split("train")]
    (tmp_path / "few.txt").write_text(f"{ids[0]}\n# a comment\n{ids[3]}\n")
    cfg = load_config(
        "configs/cam/synthetic.yaml", [f"data.root={scenes}", f"data.labeled={tmp_path / 'few.txt'}"]
    )
    method = get_method("supervised_only")(cfg, read_dataset(scenes))
    assert method.splits.labeled.labeled == tuple(sorted([ids[0], ids[3]]))
    assert method.supervision().exposes_mask(ids[0]) and not method.supervision().exposes_mask(ids[1])
    source = read_dataset(scenes)
    names = source.classes.classes
    (tmp_path / "novel.txt").write_text(f"{names[2]}\n")
    cfg = load_config(
        "configs/cam/synthetic.yaml", [f"data.root={scenes}", f"data.novel={tmp_path / 'novel.txt'}"]
    )
    assert run_splits(cfg.data, source).base_novel.novel == (2,)
    (tmp_path / "novel.txt").write_text("unicorn\n")
    with pytest.raises(Exception, match=r"data.novel=.*unknown class 'unicorn'"):
        run_splits(cfg.data, source)


def test_the_split_is_part_of_every_stage_hash():
    def hashes(*overrides):
        cfg = load_config("configs/cam/synthetic.yaml", ["method.name=supervised_only", *overrides])
        stages = pipeline_stages(get_method("supervised_only")(cfg, classes=ClassInfo(("a", "b"))))
        return {s.name: Pipeline(stages).stage_hash(s.name, cfg) for s in stages}

    a, b = hashes("data.labeled=1/2"), hashes("data.labeled=1/2", "data.labeled_seed=1")
    assert list(a) == ["supervision", "train", "evaluate", "references", "report"]
    assert all(a[k] != b[k] for k in a)
