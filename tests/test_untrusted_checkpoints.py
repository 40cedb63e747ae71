"""A run folder is data, never code: a checkpoint whose pickle would call a function (planted in a shared or
downloaded run folder) is refused with an error naming the file, in each place lesseg reads one, and its
command never runs."""

import os

import pytest
import torch
from PIL import Image

from lesseg.cli import main
from lesseg.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from lesseg.errors import DataError
from tiny_data import make_predicting_run, run_args, tiny_scenes


class _RunsACommand:
    """Pickles as a call of os.system: what a tampered checkpoint holds."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def plant(path, marker):
    """A checkpoint at ``path`` that, unpickled without weights_only, creates ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _RunsACommand(f"touch {marker}")}, path)
    torch.load(path, weights_only=False)  # the plant is live: a plain load runs its command ...
    assert marker.is_file()
    marker.unlink()  # ... and lesseg's loads must not


def refused(capsys, path) -> str:
    err = capsys.readouterr().err
    assert str(path) in err and "refused to load" in err, err
    assert "it would call posix.system" in err or "it would call nt.system" in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return tiny_scenes(tmp_path_factory.mktemp("d") / "textured")


def test_resuming_refuses_a_planted_last_checkpoint(tmp_path, scenes, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "runs" / "r"
    plant(run / "checkpoints" / "classifier_last.pt", marker)
    assert main(run_args(scenes, tmp_path / "runs")) == 2  # not a silent fresh start that exits 0
    refused(capsys, run / "checkpoints" / "classifier_last.pt")
    assert not marker.exists()


def test_a_later_stage_refuses_a_planted_final_checkpoint(tmp_path, scenes, capsys):
    marker = tmp_path / "ran"
    args = run_args(scenes, tmp_path)
    assert main([*args, "--stage", "classifier"]) == 0
    final = tmp_path / "r" / "checkpoints" / "classifier_final.pt"
    plant(final, marker)
    capsys.readouterr()
    assert main(args) == 2  # the cams stage loads the classifier
    refused(capsys, final)
    assert not marker.exists()


def test_predict_refuses_a_planted_segmenter(tmp_path, capsys):
    marker = tmp_path / "ran"
    run = make_predicting_run(tmp_path / "run")
    plant(run / "checkpoints" / "segmenter_final.pt", marker)
    image = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(image)
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "out")]) == 2
    refused(capsys, run / "checkpoints" / "segmenter_final.pt")
    assert not marker.exists()


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(3), np.random.seed(4), random.seed(5)
    np.random.standard_normal()  # numpy's cached Gaussian is part of the state
    path = save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng()})
    expected = (torch.rand(3), np.random.standard_normal(3), [random.random() for _ in range(3)])
    restore_rng(load_checkpoint(path)["rng"])
    got = (torch.rand(3), np.random.standard_normal(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_a_truncated_checkpoint_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(100)}})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=r"c\.pt: cannot read checkpoint"):
        load_checkpoint(path)
