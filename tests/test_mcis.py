"""MCIS: co-attention by hand (a non-symmetric W_P catches a transposed softmax)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesseg.models.coattention import CoAttention


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_coattention_2x3_by_hand():
    # C = 2 channels; image m has 2 positions (1x2), image n has 3 (1x3)
    f_m = np.array([[1.0, 0.0], [0.5, 2.0]])  # [C, P_m]
    f_n = np.array([[0.0, 1.0, -1.0], [1.0, 0.5, 0.0]])  # [C, P_n]
    w_p = np.array([[1.0, 2.0], [0.0, 1.0]])  # not symmetric
    s = f_m.T @ w_p @ f_n  # [P_m, P_n]
    # by hand: positions m0 = (1, 0.5), m1 = (0, 2); f_m^T W_P = [[1, 2.5], [0, 2]]; times f_n:
    assert np.allclose(s, [[2.5, 2.25, -1.0], [2.0, 1.0, 0.0]])
    z_n = f_m @ _softmax(s, axis=0)  # n's positions attend over m's
    z_m = f_n @ _softmax(s.T, axis=0)  # m's positions attend over n's
    co = CoAttention(2)
    with torch.no_grad():
        co.weight.copy_(torch.tensor(w_p))
    t = lambda a, w: torch.tensor(a, dtype=torch.float64).reshape(1, 2, 1, w)  # noqa: E731
    co = co.double()
    with torch.no_grad():
        out_m, out_n = co(t(f_m, 2), t(f_n, 3))
    assert np.allclose(out_m.reshape(2, 2).numpy(), z_m) and np.allclose(out_n.reshape(2, 3).numpy(), z_n)
    # the transposed mistake (W_P^T) gives a different answer here
    wrong = f_m @ _softmax(f_m.T @ w_p.T @ f_n, axis=0)
    assert not np.allclose(wrong, z_n)


def test_attention_sums_to_one_over_the_partner_positions():
    torch.manual_seed(0)
    co = CoAttention(8)
    a_m, a_n = co.attention(torch.randn(3, 8, 4, 5), torch.randn(3, 8, 2, 3))
    assert a_m.shape == (3, 20, 6) and a_n.shape == (3, 6, 20)
    assert torch.allclose(a_m.sum(1), torch.ones(3, 6)) and torch.allclose(a_n.sum(1), torch.ones(3, 20))


def test_coattention_errors():
    co = CoAttention(4)
    with pytest.raises(ValueError, match=r"f_n must be \[N, 4, H, W\]"):
        co(torch.zeros(1, 4, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="same number of images"):
        co(torch.zeros(1, 4, 2, 2), torch.zeros(2, 4, 2, 2))


def test_pair_sampler_pairs_images_sharing_a_class(tmp_path):
    from lesseg.data import read_dataset
    from lesseg.data.dataset import SegDataset
    from lesseg.data.pairs import PairDataset
    from lesseg.data.splits import Supervision
    from lesseg.data.synth import generate

    generate(tmp_path, images=30, classes=5, seed=0, size=32, background="textured")
    source = read_dataset(tmp_path)
    pairs = PairDataset(SegDataset(source, "train", supervision=Supervision(masks="none")), seed=3)
    tags = [set(source.tags_of(r) or ()) for r in source.split("train")]
    for epoch in range(3):
        pairs.set_epoch(epoch)
        for i in range(len(pairs)):
            j = pairs.partner_of(i)
            assert tags[i] & tags[j] or (not tags[i] and j == i)
            assert j != i or not any(tags[i] & tags[k] for k in range(len(tags)) if k != i)
    first = [pairs.partner_of(i) for i in range(len(pairs))]
    assert first == [pairs.partner_of(i) for i in range(len(pairs))]  # same epoch, same pairs
    pairs.set_epoch(0)
    assert first != [pairs.partner_of(i) for i in range(len(pairs))]  # another epoch, other pairs
    sample = pairs[0]
    j = pairs.partner_of(0)
    assert sample["id_partner"] == source.split("train")[j].id and sample["image_partner"].shape[0] == 3
    assert torch.equal(sample["tags_partner"] > 0, pairs.base[j]["tags"] > 0)


class _FixedPairs(torch.nn.Module):
    """Stands in for MCISNet: fixed logits, so each loss term can be checked against its class set."""

    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.partners_seen: list = []

    def forward(self, x, partners=None):
        n = x.shape[0]
        self.partners_seen = [tuple(p.shape[-2:]) for p in partners]
        logit = lambda k: torch.full((n, self.c), float(k))  # noqa: E731
        pair = lambda b: {"partner_logits": logit(b), "co_logits": logit(b + 1), "partner_co_logits": logit(b + 2),  # noqa: E731
                          "contrast_logits": logit(b + 3), "partner_contrast_logits": logit(b + 4)}  # fmt: skip
        return {"logits": logit(0), "pairs": [pair(10 * (k + 1)) for k in range(len(partners))]}


def _mcis(overrides=()):
    from lesseg.config import load_config
    from lesseg.data.classes import ClassInfo
    from lesseg.methods import get_method

    cfg = load_config("configs/mcis/synthetic.yaml", list(overrides))
    return get_method("mcis")(cfg, classes=ClassInfo(classes=("a", "b", "c")))


def test_each_loss_gets_its_class_set():
    from lesseg.engine.trainer import StepContext
    from lesseg.methods.mcis import pair_targets

    mlsm = torch.nn.functional.multilabel_soft_margin_loss
    y = torch.tensor([[1.0, 1.0, 0.0]])  # a, b
    y_p = torch.tensor([[0.0, 1.0, 1.0]])  # b, c
    common, only_x, only_p = pair_targets(y, y_p)
    assert (
        common.tolist() == [[0, 1, 0]] and only_x.tolist() == [[1, 0, 0]] and only_p.tolist() == [[0, 0, 1]]
    )
    batch = {"image": torch.zeros(1, 3, 32, 32), "tags": y, "image_partner": torch.zeros(1, 3, 32, 32),
             "tags_partner": y_p}  # fmt: skip
    model = _FixedPairs(3)
    full = lambda k: torch.full((1, 3), float(k))  # noqa: E731
    out = _mcis(["method.self_pairs=true"]).training_step(
        model, batch, StepContext(epoch=1, step=0, total_steps=1)
    )
    assert model.partners_seen == [(32, 32), (32, 32), (24, 24), (64, 64)]  # partner, flip, 0.75x, 2x
    assert out["single"].item() == pytest.approx((mlsm(full(0), y) + mlsm(full(10), y_p)).item())
    assert out["co"].item() == pytest.approx((mlsm(full(11), common) + mlsm(full(12), common)).item())
    assert out["contrast"].item() == pytest.approx((mlsm(full(13), only_x) + mlsm(full(14), only_p)).item())
    self_terms = sum(mlsm(full(b), y) + mlsm(full(b + 1), y) for b in (20, 30, 40))
    assert out["self_pairs"].item() == pytest.approx(self_terms.item())
    total = out["single"] + out["co"] + out["contrast"] + out["self_pairs"]
    assert out["loss"].item() == pytest.approx(total.item())
    # the first epoch has no contrastive term (official); no self-pairs when switched off
    first = _mcis(["method.self_pairs=false"]).training_step(model, batch, StepContext(0, 0, 1))
    assert first["contrast"].item() == 0.0 and first["self_pairs"].item() == 0.0
    assert model.partners_seen == [(32, 32)]


class _CoSegStub(torch.nn.Module):
    """Returns set co-attention maps (one class, 2x2): first the self-pair call, then the partners'."""

    def forward(self, x, partners):
        t = lambda rows: torch.tensor(rows, dtype=torch.float32)[None, None]  # noqa: E731
        if len(partners) == 3:  # flip, 0.75x, 2x
            return {"cams": torch.zeros(1, 1, 2, 2), "pairs": [
                {"co_cams": t([[0, 1], [0, 0]]), "partner_co_cams": t([[0, 0], [1, 0]])},  # flipped back: bottom right
                {"co_cams": t([[0, 0], [0, 0]]), "partner_co_cams": torch.full((1, 1, 2, 2), -5.0)},  # dropped
                {"co_cams": t([[0, 0], [0, 0]]), "partner_co_cams": torch.full((1, 1, 4, 4), 2.0)},
            ]}  # fmt: skip
        maps = [t([[1, 0], [0, 0]]), t([[0, 0], [0, 1]])]
        return {"cams": torch.zeros(1, 1, 2, 2), "pairs": [{"co_cams": m} for m in maps[: len(partners)]]}


def test_cosegmentation_fusion_by_hand():
    from lesseg.methods.mcis import cosegmentation_cams

    image = torch.zeros(1, 3, 32, 32)
    cams = cosegmentation_cams(_CoSegStub(), image, [0], {0: [image, image]}, (2, 2))
    # partner average [[.5, 0], [0, .5]] -> [[1, 0], [0, 1]]; self maps kept: flip's own [[0, 1], [0, 0]], the
    # flip's flipped back [[0, 0], [0, 1]], the 2x one (all 1); the 0.75x one has sigmoid(mean) < 0.1.
    # Sum [[2, 2], [1, 3]] / 5 maps, then max-normalised:
    assert torch.allclose(cams[0], torch.tensor([[2 / 3, 2 / 3], [1 / 3, 1.0]]), atol=1e-4)


def test_cosegmentation_stage(tmp_path):
    from lesseg.cli import main
    from lesseg.data.synth import generate
    from lesseg.refine import load_cams

    data = tmp_path / "data"
    generate(data, images=10, classes=3, seed=0, size=64, background="textured")
    args = ["run", "configs/mcis/synthetic.yaml", f"data.root={data}", f"run_dir={tmp_path}", "data.crop_size=64",
            "data.batch_size=4", "data.workers=0", "train.epochs=1", "--stage", "classifier"]  # fmt: skip
    assert main(args) == 0
    assert main([*args[:-2], "--stage", "cams"]) == 0
    files = sorted((tmp_path / "mcis_synthetic" / "cams").iterdir())
    assert len(files) == 8  # the train split
    for f in files:
        res = load_cams(f)
        assert res.cams.shape[1:] == (64, 64) and len(res.classes) == res.cams.shape[0]
        assert (res.cams >= 0).all() and (res.cams <= 1 + 1e-3).all()


# the official 256 crops with their 2x self-pairs take ~45 s on 2 cores: the default suite trains on 64 crops
@pytest.mark.parametrize("crop", [64, pytest.param(256, marks=pytest.mark.slow)])
def test_official_voc_config_trains_two_steps(tmp_path, crop):
    import json

    from fake_trees import make_fake_voc
    from lesseg.api import train
    from lesseg.config import load_config

    root = make_fake_voc(tmp_path / "VOCdevkit" / "VOC2012")
    cfg = load_config("configs/mcis/voc12.yaml", [
        f"data.root={root}", f"run_dir={tmp_path / 'runs'}", "model.pretrained=false", "data.batch_size=2",
        "data.workers=0", "train.epochs=2", "train.log_every=1", f"data.crop_size={crop}",
    ])  # fmt: skip
    assert (cfg.model.backbone, cfg.model.output_stride) == ("vgg16", 8)
    run_dir = train(cfg)
    steps = [s for s in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if "loss" in s]
    assert [s["step"] for s in steps] == [1, 2] and all(s["co"] > 0 and s["self_pairs"] > 0 for s in steps)


def test_inference_settings_do_not_retrain_the_classifier():
    from lesseg.config import load_config
    from lesseg.data.classes import ClassInfo
    from lesseg.methods import get_method
    from lesseg.pipeline import Pipeline

    def hashes(*overrides):
        cfg = load_config("configs/mcis/synthetic.yaml", list(overrides))
        stages = get_method("mcis")(cfg, classes=ClassInfo(("a", "b"))).stages()
        return {s.name: Pipeline(stages).stage_hash(s.name, cfg) for s in stages}

    coseg, single, more = hashes(), hashes("method.cam_inference=single"), hashes("method.partners=5")
    assert coseg["classifier"] == single["classifier"] == more["classifier"]
    assert len({coseg["cams"], single["cams"], more["cams"]}) == 3
    assert hashes("method.self_pairs=true")["classifier"] != coseg["classifier"]


def test_extra_layers_have_the_official_init():
    """He-normal fan-out on the extra convolutions and the CAM head (official ``_initialize_weights``): the
    features keep their scale through the three extra layers instead of shrinking ~2.5x per layer."""
    from lesseg.models import MCISNet

    torch.manual_seed(0)
    model = MCISNet("resnet18", num_classes=5, output_stride=16, channels=256)
    convs = [m for m in model.decoder if isinstance(m, torch.nn.Conv2d)]
    for conv in [*convs, model.head]:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
        assert torch.count_nonzero(conv.bias) == 0
    f = torch.randn(4, convs[0].in_channels, 8, 8).relu()
    with torch.no_grad():
        out = model.decoder(f)
    assert 0.5 < out.pow(2).mean().sqrt() / f.pow(2).mean().sqrt() < 2.0
