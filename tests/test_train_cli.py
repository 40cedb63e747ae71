"""`lesseg train`: a config file plus overrides trains, saves its config, and refuses a mismatched resume."""

import json

import pytest
import yaml

from lesseg.cli import main
from lesseg.data.synth import generate

TINY = ["model.backbone=resnet18", "data.crop_size=32", "data.batch_size=4", "data.workers=0",
        "train.epochs=1", "train.log_every=1"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "synth"
    generate(out, images=20, classes=4, seed=0, size=40, background="none")
    return out


def test_train_writes_weights_config_and_log(tmp_path, data, capsys):
    args = ["train", "configs/cam/synthetic.yaml", f"data.root={data}", f"run_dir={tmp_path}", *TINY]
    assert main(args) == 0
    run = tmp_path / "cam_synthetic"
    assert (run / "checkpoints" / "classifier_final.pt").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["crop_size"] == 32 and saved["method"]["name"] == "cam"
    steps = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and all(s["loss"] > 0 for s in steps)
    assert all(s["stage"] == "classifier" for s in steps)
    # a changed config trains afresh instead of resuming the other run's checkpoint
    assert main([*args, "optim.lr=0.05"]) == 0
    steps = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and steps[0]["lr"] == 0.05
    assert "resumed" not in (run / "log.jsonl").read_text()


def test_print_config_and_unknown_key(capsys):
    assert main(["train", "configs/cam/msrc21.yaml", "--print-config", "optim.lr=0.02"]) == 0
    assert "lr: 0.02" in capsys.readouterr().out
    assert main(["train", "configs/cam/msrc21.yaml", "optim.lrr=0.02"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)" in err and err.count("\n") == 1
