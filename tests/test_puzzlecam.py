"""Puzzle-CAM: tiling, its losses by hand, the alpha ramp, the optimiser options and the official config."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from fake_trees import make_fake_voc
from lesseg.config import load_config
from lesseg.data.classes import ClassInfo
from lesseg.engine.trainer import StepContext
from lesseg.errors import ConfigError
from lesseg.methods import get_method
from lesseg.methods.puzzlecam import (
    OFFICIAL_MOMENTUM,
    PuzzleCAMClassifier,
    alpha_at,
    reconstruction_loss,
    stitch_tiles,
    tile_images,
)


@pytest.mark.parametrize("grid", [(2, 2), (1, 3), (3, 2)])
def test_tiles_round_trip_exactly(grid):
    x = torch.randn(3, 5, 12, 18)
    tiles = tile_images(x, grid)
    assert tiles.shape == (3 * grid[0] * grid[1], 5, 12 // grid[0], 18 // grid[1])
    assert torch.equal(stitch_tiles(tiles, grid), x)


def test_tiles_are_tile_major_in_raster_order():
    x = torch.arange(2 * 16.0).reshape(2, 1, 4, 4)
    tiles = tile_images(x, (2, 2))
    # tile k of image n sits at index k * N + n (the official tile_features concatenates tile by tile)
    assert torch.equal(tiles[0], x[0, :, :2, :2]) and torch.equal(tiles[1], x[1, :, :2, :2])
    assert torch.equal(tiles[2], x[0, :, :2, 2:]) and torch.equal(tiles[4], x[0, :, 2:, :2])
    assert torch.equal(tiles[7], x[1, :, 2:, 2:])


def test_tiling_errors():
    with pytest.raises(ValueError, match="does not split into a 2x2 grid"):
        tile_images(torch.zeros(1, 1, 5, 4), (2, 2))
    with pytest.raises(ValueError, match="grid must be two integers >= 1"):
        tile_images(torch.zeros(1, 1, 4, 4), (0, 2))
    with pytest.raises(ValueError, match="do not make whole 2x2 grids"):
        stitch_tiles(torch.zeros(3, 1, 2, 2), (2, 2))


def test_reconstruction_loss_by_hand():
    full = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]], [[3.0, 3.0], [3.0, 3.0]]]])  # N=1, C=2, 2x2
    stitched = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    # only class 0 is tagged: |1| + |-2| + |0.5| + |-1| = 4.5 over 1*2*2*2 = 8 elements
    assert reconstruction_loss(full, stitched, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(4.5 / 8)
    # both tagged: (4.5 + 12) / 8
    assert reconstruction_loss(full, stitched, torch.ones(1, 2)).item() == pytest.approx(16.5 / 8)
    with pytest.raises(ValueError, match="tags must be"):
        reconstruction_loss(full, stitched, torch.ones(2, 2))


def test_alpha_ramps_to_four_over_the_first_half():
    assert [alpha_at(p) for p in (0.0, 0.125, 0.25, 0.5, 0.9, 1.0)] == [0.0, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert alpha_at(0.3, alpha_max=2.0, ramp=0.0) == 2.0


def _method(overrides=()):
    cfg = load_config("configs/puzzlecam/synthetic.yaml", ["data.crop_size=64", *overrides])
    return get_method("puzzlecam")(cfg, classes=ClassInfo(classes=("a", "b", "c")))


def test_training_step_losses_by_hand():
    torch.manual_seed(0)
    method = _method()
    model = PuzzleCAMClassifier("resnet18", num_classes=3, output_stride=16)
    batch = {"image": torch.randn(2, 3, 64, 64), "tags": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])}
    out = method.training_step(model, batch, StepContext(epoch=0, step=1, total_steps=8))  # alpha = 1
    full = model(batch["image"])
    stitched = stitch_tiles(model(tile_images(batch["image"], (2, 2)))["cams"], (2, 2))
    assert stitched.shape == full["cams"].shape == (2, 3, 4, 4)
    cls = torch.nn.functional.multilabel_soft_margin_loss(full["logits"], batch["tags"])
    p_cls = torch.nn.functional.multilabel_soft_margin_loss(stitched.mean((2, 3)), batch["tags"])
    re = ((full["cams"] - stitched).abs() * batch["tags"][:, :, None, None]).mean()
    assert out["alpha"].item() == 1.0
    for name, value in (("cls", cls), ("p_cls", p_cls), ("re", re), ("loss", cls + p_cls + re)):
        assert out[name].item() == pytest.approx(value.item(), rel=1e-5), name
    assert re.item() > 0  # tiles see no context: their maps differ from the full image's


def test_crop_must_divide_into_tiles_of_whole_cells():
    with pytest.raises(ConfigError, match=r"data.crop_size=72 must be a multiple of .* = 32"):
        _method(["data.crop_size=72"])


def test_momentum_options():
    official = _method().optim_config()
    assert official.momentum == pytest.approx(OFFICIAL_MOMENTUM) and official.nesterov
    real = _method(["method.momentum=real"]).optim_config()
    assert real.momentum == 0.9 and real.lr == pytest.approx(official.lr * 0.1)
    with pytest.warns(UserWarning, match="method.momentum=real"):
        _method(["optim.momentum=0.9"]).optim_config()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _method().optim_config()
        meant = _method(["optim.momentum=0.9", "method.momentum=config"]).optim_config()
    assert meant.momentum == 0.9 and meant.lr == pytest.approx(official.lr)


@pytest.mark.parametrize("crop", [128, pytest.param(512, marks=pytest.mark.slow)])
def test_official_voc_config_trains_two_steps(tmp_path, crop):
    """The official recipe (ResNet-50, output stride 16, 512 crops) trains; in `make test` on 128 crops,
    which the recipe's 2x2 grid at stride 16 also divides (a 512 step costs ~20 s on 2 cores)."""
    root = make_fake_voc(tmp_path / "VOCdevkit" / "VOC2012")
    from lesseg.api import train

    official = load_config("configs/puzzlecam/voc12.yaml")
    assert (official.model.backbone, official.model.output_stride, official.data.crop_size) == (
        "resnet50",
        16,
        512,
    )
    cfg = load_config("configs/puzzlecam/voc12.yaml", [
        f"data.root={root}", f"run_dir={tmp_path / 'runs'}", "model.pretrained=false", "data.batch_size=2",
        "data.workers=0", "train.epochs=2", "train.log_every=1", f"data.crop_size={crop}",
    ])  # fmt: skip
    run_dir = train(cfg)
    steps = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "loss" in s]
    assert [s["step"] for s in steps] == [1, 2]
    assert all(s["re"] >= 0 and s["p_cls"] > 0 for s in steps)
    assert (run_dir / "checkpoints" / "classifier_final.pt").is_file()


def test_select_by_train_masks_keeps_the_best_epoch(tmp_path):
    from lesseg.api import train
    from lesseg.data.synth import generate
    from lesseg.engine.checkpoint import load_checkpoint

    data = tmp_path / "data"
    generate(data, images=12, classes=3, seed=0, size=64, background="textured")
    cfg = load_config("configs/puzzlecam/synthetic.yaml", [
        f"data.root={data}", f"run_dir={tmp_path}", "data.crop_size=64", "data.batch_size=4", "data.workers=0",
        "train.epochs=3", "method.select_by_train_masks=true",
    ])  # fmt: skip
    run_dir = train(cfg)
    best = load_checkpoint(run_dir / "checkpoints" / "classifier_best.pt")
    final = load_checkpoint(run_dir / "checkpoints" / "classifier_final.pt")["model"]
    assert all(torch.equal(final[k], best["model"][k]) for k in final)
    selection = json.loads((run_dir / "metrics.json").read_text())["classifier_selection"]
    assert selection["epoch"] == best["epoch"] in (0, 1, 2)
    assert (
        selection["train_mask_miou"] == pytest.approx(best["train_mask_miou"])
        and 0 < best["train_mask_miou"] <= 1
    )
