"""SimFormer: the set losses on a hand case, the pair sampler, SimNet's pair labels, the distillation loss,
no novel pixel read by training, exact resume, bad input, and a short run that learns base and novel."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lesseg.api import run
from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data.dataset import SegDataset
from lesseg.data.pairs import WeakShotPairDataset
from lesseg.data.synth import generate
from lesseg.engine.checkpoint import load_checkpoint
from lesseg.errors import ConfigError, DataError
from lesseg.methods.simformer.crosim import base_pair_labels
from lesseg.methods.simformer.losses import set_losses, similarity_distillation_loss
from lesseg.methods.simformer.method import crop_targets


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("simformer") / "data"
    generate(root, images=24, classes=6, size=40, seed=3)
    return root


def small(root, tmp_path, *extra):
    return load_config("configs/simformer/synthetic.yaml", [
        f"data.root={root}", f"run_dir={tmp_path / 'runs'}", "data.crop_size=32", "data.batch_size=4",
        "data.workers=0", "train.epochs=1", "eval.gallery=1", "method.points=8", "eval.references=false", *extra,
    ])  # fmt: skip


def final_weights(run_dir, stage="train"):
    return load_checkpoint(run_dir / "checkpoints" / f"{stage}_final.pt")["model"]


# ------------------------------------------------------------------------------------------- losses


def test_set_losses_on_a_hand_case():
    """One image, two queries, no decoder layers before the last: a base target (class 0, the left
    column) and a novel one (class 1, no mask). Query 0 is the left column, query 1 says class 1."""
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]])  # 2 classes + no object
    masks = torch.tensor([[[[4.0, -4.0], [4.0, -4.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    left = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    targets = [{"labels": torch.tensor([0, 1]), "masks": left, "valid": torch.ones(2, 2, dtype=torch.bool)}]
    out = set_losses({"pred_logits": logits, "pred_masks": masks}, targets, 2, complementary_weight=0.2)
    ce0 = -torch.log_softmax(logits[0, 0], 0)[0]
    ce1 = -torch.log_softmax(logits[0, 1], 0)[1]
    assert out["classification"].item() == pytest.approx(((ce0 + ce1) / 2).item(), rel=1e-6)
    p = torch.sigmoid(torch.tensor(4.0)).item()
    # every pixel is right with probability p: two positives (alpha 0.25), two negatives (0.75)
    focal = (2 * 0.25 + 2 * 0.75) / 4 * (1 - p) ** 2 * -math.log(p)
    dice = 1 - (2 * 2 * p + 1) / (2 * p + 2 * (1 - p) + 2 + 1)
    assert out["mask"].item() == pytest.approx(20 * focal + dice, rel=1e-5)
    # complementary: max(query 1's logit 0, -2.94) = 0 everywhere, towards the right column
    q = 0.5
    comp_focal = (2 * 0.25 * (1 - q) ** 2 * math.log(2) + 2 * 0.75 * q**2 * math.log(2)) / 4
    comp_dice = 1 - (2 * 2 * q + 1) / (4 * q + 2 + 1)  # sum p = 4q, sum target = 2, overlap 2q
    assert out["complementary"].item() == pytest.approx(0.2 * (20 * comp_focal + comp_dice), rel=1e-5)


def test_deep_supervision_repeats_the_losses_on_every_layer():
    torch.manual_seed(0)
    layer = {"pred_logits": torch.randn(1, 3, 4), "pred_masks": torch.randn(1, 3, 4, 4)}
    mask = torch.zeros(1, 8, 8)
    mask[0, :4] = 1
    targets = [{"labels": torch.tensor([0, 2]), "masks": mask, "valid": torch.ones(8, 8, dtype=torch.bool)}]
    one = set_losses(layer, targets, 3, complementary_weight=0.2)
    three = set_losses({**layer, "aux_outputs": [layer, layer]}, targets, 3, complementary_weight=0.2)
    for k in one:
        assert three[k].item() == pytest.approx(3 * one[k].item(), rel=1e-6)


def test_distillation_loss_against_hand_values():
    s, t = torch.tensor([0.2, 0.6]), torch.tensor([0.9, 0.1])
    cce = (-0.4 * math.log(1.2) - 0.4 * math.log(2 - 0.6)) / 2  # hinge at 0.5: pull up, then push down
    assert similarity_distillation_loss(s, t, "cce").item() == pytest.approx(cce, rel=1e-6)
    ce = -(0.9 * math.log(0.2) + 0.1 * math.log(0.8) + 0.1 * math.log(0.6) + 0.9 * math.log(0.4)) / 2
    assert similarity_distillation_loss(s, t, "ce").item() == pytest.approx(ce, rel=1e-5)
    with pytest.raises(ValueError, match="cce"):
        similarity_distillation_loss(s, t, "l2")


def test_simnet_pair_labels_of_a_tiny_hand_made_pair():
    """Image a: points of class 1, 1, novel (hidden: 255); image b: 1, 2, 255."""
    la, lb = torch.tensor([[1, 1, 255]]), torch.tensor([[1, 2, 255]])
    same, counted = base_pair_labels(la, lb, 255)
    assert same[0].int().tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert counted[0].int().tolist() == [[1, 1, 1], [1, 1, 1], [1, 1, 0]]


def test_crop_targets_novel_by_tag_and_with_masks_when_retraining():
    mask = torch.tensor([[0, 3], [255, 3]])
    tags = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0])  # novel 1 and 4
    valid = torch.ones(2, 2, dtype=torch.bool)
    t = crop_targets(mask, tags, valid, 255)
    assert t["labels"].tolist() == [0, 3, 1, 4] and len(t["masks"]) == 2
    assert t["masks"][1].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    retrain = crop_targets(torch.tensor([[0, 4], [255, 4]]), tags, valid, 255, novel_have_masks=True)
    assert retrain["labels"].tolist() == [0, 4] and len(retrain["masks"]) == 2


# --------------------------------------------------------------------------------------- pair sampler


def test_pair_sampler_shares_exactly_one_novel_class_when_one_exists(scenes):
    pairs = WeakShotPairDataset(SegDataset(read_dataset(scenes), "train"), novel=(3, 4), seed=0)
    pairs.tags = [(1, 3, 4), (3, 4), (2, 3), (1, 4), (1,), (2,)]
    pairs.by_class = {}
    for i, tags in enumerate(pairs.tags):
        for c in tags:
            pairs.by_class.setdefault(c, []).append(i)
    for epoch in range(40):
        pairs.epoch = epoch
        partner = pairs.partner_of(0)  # novel 3 -> image 2 (not 1: it has 4 too); novel 4 -> image 3
        assert partner in (2, 3)
        assert len({3, 4} & set(pairs.tags[partner])) == 1
        assert pairs.partner_of(1) in (2, 3, 0)  # image 1: novel 3 -> 2, novel 4 -> 3 (0 shares both)
        assert pairs.partner_of(4) in (0, 3)  # no novel tag: any image sharing a class
    assert {pairs.partner_of(1) for pairs.epoch in range(40)} <= {2, 3}
    assert len(pairs) == len(pairs.base) // 2
    pairs.epoch = 0
    anchors = [pairs.anchor_of(i) for i in range(len(pairs))]
    assert len(set(anchors)) == len(anchors)  # a permutation's first half


# ---------------------------------------------------------------------------------------- the pipeline


def test_scrambled_novel_pixels_give_bit_identical_weights(tmp_path, scenes):
    from lesseg.data.imageio import load_label_png, save_label_png

    extra = ("data.novel=2/5",)
    run(small(scenes, tmp_path, "name=original", *extra), log=lambda _: None)
    novel = json.loads((tmp_path / "runs/original/splits/base_novel.json").read_text())["novel"]
    assert len(novel) == 2
    scrambled = tmp_path / "scrambled"
    shutil.copytree(scenes, scrambled)  # tags come from image_labels.csv, so they stay as they are
    rng = np.random.default_rng(0)
    changed = 0
    for r in read_dataset(scrambled).split("train"):
        mask = load_label_png(r.mask).copy()
        where = np.isin(mask, novel)
        mask[where] = rng.choice([*novel, 255], size=int(where.sum()))
        changed += int(where.sum())
        save_label_png(r.mask, mask.astype(np.uint8))
    assert changed > 0
    run(small(scrambled, tmp_path, "name=scrambled", *extra), log=lambda _: None)
    for stage in ("train", "retrain"):
        a, b = (
            final_weights(tmp_path / "runs/original", stage),
            final_weights(tmp_path / "runs/scrambled", stage),
        )
        assert all(torch.equal(a[k], b[k]) for k in a), stage


def test_a_killed_run_resumes_exactly(tmp_path, scenes, monkeypatch):
    from lesseg.methods.simformer import SimFormerMethod

    extra = ("train.checkpoint_every=2", "train.epochs=2", "method.retrain=false")
    run(small(scenes, tmp_path, "name=straight", *extra), log=lambda _: None)

    class Killed(Exception):
        pass

    step = SimFormerMethod.training_step
    calls = []

    def dies_at_step_3(self, model, batch, ctx, **kw):
        calls.append(ctx.step)
        if ctx.step == 3 and len(calls) == 4:
            raise Killed
        return step(self, model, batch, ctx, **kw)

    monkeypatch.setattr(SimFormerMethod, "training_step", dies_at_step_3)
    with pytest.raises(Killed):
        run(small(scenes, tmp_path, "name=killed", *extra), log=lambda _: None)
    run(small(scenes, tmp_path, "name=killed", *extra), log=lambda _: None)
    assert calls[4] == 2  # resumed from the step-2 checkpoint
    a, b = final_weights(tmp_path / "runs/straight"), final_weights(tmp_path / "runs/killed")
    assert "simnet.positive_history" in a  # SimNet's running class balance resumes too
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input_gets_one_clear_error_each(tmp_path, scenes):
    names = json.loads((scenes / "classes.json").read_text())["classes"]
    with pytest.raises(ConfigError, match="at least one non-background class must stay base"):
        run(small(scenes, tmp_path, "data.novel=0.99"), log=lambda _: None)
    listed = tmp_path / "novel.txt"
    listed.write_text("# nothing\n")
    with pytest.raises(DataError, match="empty"):
        run(small(scenes, tmp_path, f"data.novel={listed}"), log=lambda _: None)
    listed.write_text(f"{names[1][:-1]}\n")
    with pytest.raises(DataError, match=f"unknown class '{names[1][:-1]}' \\(did you mean '{names[1]}'"):
        run(small(scenes, tmp_path, f"data.novel={listed}"), log=lambda _: None)
    untagged = tmp_path / "untagged"
    shutil.copytree(scenes, untagged)
    csv = untagged / "image_labels.csv"
    rows = csv.read_text().splitlines()
    csv.write_text(
        "\n".join([rows[0]] + [r.replace(names[1], "").replace("  ", " ") for r in rows[1:]]) + "\n"
    )
    listed.write_text(f"{names[1]}\n")
    with pytest.raises(
        ConfigError, match=f"novel class\\(es\\) \\['{names[1]}'\\] are no training image's tag"
    ):
        run(small(untagged, tmp_path, f"data.novel={listed}"), log=lambda _: None)
    with pytest.raises(ConfigError, match="needs a supervision split"):
        run(small(scenes, tmp_path, "data.novel=null"), log=lambda _: None)
    with pytest.raises(ConfigError, match="model.name=simformer"):
        run(small(scenes, tmp_path, "model.name=maskformer"), log=lambda _: None)
    with pytest.raises(ConfigError, match="even batch size"):
        run(small(scenes, tmp_path, "data.batch_size=3"), log=lambda _: None)


def test_a_short_synthetic_run_learns_base_and_novel(tmp_path):
    """Random init, 120 scenes of 64 px, a quarter of the 5 object classes novel, stage one for 10 epochs
    (~25 s on 2 cores). Measured: base 0.357, novel 0.263 with 2 threads (0.371 / 0.409 with 1), against
    0.104 for random among the tags over all classes."""
    root = tmp_path / "data"
    generate(root, images=120, classes=6, size=64, seed=0)
    cfg = load_config("configs/simformer/synthetic.yaml", [f"data.root={root}", f"run_dir={tmp_path / 'runs'}",
                                                           "data.workers=0", "train.epochs=10", "method.retrain=false",
                                                           "eval.references=false"])  # fmt: skip
    metrics = json.loads((run(cfg, log=lambda _: None) / "metrics.json").read_text())
    refs = metrics["references"]["random_tags"]["val"]["miou"]
    metrics = metrics["segmenter"]
    assert metrics["subsets"]["base"] > 0.25 and metrics["subsets"]["novel"] > 0.15
    assert metrics["miou"] > refs + 0.1


def test_crop_tags_are_the_novel_classes_the_augmented_crop_shows(scenes):
    from lesseg.data import transforms as T
    from lesseg.data.splits import Supervision

    source = read_dataset(scenes)
    novel = (2, 3)
    crop = T.Compose([T.RandomCrop(16), T.Normalize()])
    hidden = SegDataset(source, "train", transform=crop, supervision=Supervision(novel_classes=novel),
                        crop_novel_tags=True)  # fmt: skip
    full = SegDataset(source, "train", transform=crop)
    seen = 0
    for i in range(len(full)):
        a, b = hidden[i], full[i]  # the same crop: one seed, one (epoch, index)
        in_crop = {int(c) for c in b["mask"].unique()} & set(novel)
        assert {int(c) for c in a["crop_tags"].nonzero().flatten()} == in_crop
        assert not torch.isin(a["mask"], torch.tensor(novel)).any()  # novel pixels still hidden
        seen += len(in_crop) < len({c for c in novel if b["tags"][c]})  # a tagged class cropped away
    assert seen > 0


def test_the_official_crop_tags_train_end_to_end(tmp_path, scenes):
    run_dir = run(small(scenes, tmp_path, "method.novel_tags=crop"), log=lambda _: None)
    assert "subsets" in json.loads((run_dir / "metrics.json").read_text())["segmenter"]


def test_references_train_the_upper_bound_and_the_cam_baseline(tmp_path, scenes):
    cam = tmp_path / "cam.yaml"
    cam.write_text(f"_base_: {(Path('configs/cam/synthetic.yaml')).resolve()}\n"
                   "data: {crop_size: 32, batch_size: 4, workers: 0}\ntrain: {epochs: 1}\ncams: {scales: [1.0], flip: false}\n")  # fmt: skip
    run_dir = run(
        small(
            scenes, tmp_path, "method.retrain=false", f"method.baseline_cams={cam}", "eval.references=true"
        ),
        log=lambda _: None,
    )
    refs = json.loads((run_dir / "metrics.json").read_text())["references"]
    for name in ("upper_bound", "weak_baseline"):
        assert 0 < refs[name]["val"]["miou"] <= 1 and set(refs[name]["val"]["subsets"]) >= {"base", "novel"}
    assert (run_dir / "references/cam_baseline/checkpoints/classifier_final.pt").is_file()
    labels = sorted((run_dir / "references/weak_baseline_labels").glob("*.png"))
    assert len(labels) == len(read_dataset(scenes).split("train"))
    novel = json.loads((run_dir / "splits/base_novel.json").read_text())["novel_names"]
    page = (run_dir / "report.html").read_text()
    assert all(f"{name} (novel)" in page for name in novel)  # the report marks the novel classes


@pytest.mark.parametrize(
    "dataset, make", [("ade20k", "make_fake_ade20k"), ("cocostuff10k", "make_fake_cocostuff10k")]
)
def test_official_configs_train_on_fake_trees_and_predict(tmp_path, dataset, make):
    import fake_trees
    from lesseg.api import load_run

    official = load_config(f"configs/simformer/{dataset}.yaml")
    o, d, m = official.optim, official.data, official.method
    assert (official.model.backbone, official.model.output_stride, d.batch_size, o.name, o.lr, o.grad_clip) == (
        "resnet50", 32, 8, "adamw", 1e-4, 0.01)  # fmt: skip
    assert (o.lr_mult["backbone_weight"], m.num_queries, m.dec_layers, m.hidden_dim, m.crosim, m.retrain) == (
        0.1, 100, 6, 256, True, True)  # fmt: skip
    assert (d.crop_size, m.complementary_weight, official.train.epochs) == (
        {"ade20k": (512, 0.20, 64), "cocostuff10k": (640, 0.15, 54)}[dataset]
    )
    root = getattr(fake_trees, make)(tmp_path)
    novel = tmp_path / "novel.txt"
    novel.write_text("flag\n" if dataset == "ade20k" else "wood\n")  # the fake trees carry few classes
    cfg = load_config(f"configs/simformer/{dataset}.yaml", [
        f"data.root={root}", f"run_dir={tmp_path / 'runs'}", "model.pretrained=false", "model.backbone=resnet18",
        "data.batch_size=2", "data.workers=0", "train.epochs=1", "data.crop_size=32", f"data.novel={novel}",
        "method.num_queries=4", "method.dec_layers=1", "method.points=4", "eval.gallery=1",
    ])  # fmt: skip
    run_dir = run(cfg, log=lambda _: None)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"stage_one", "segmenter", "references"} <= set(metrics)
    assert set(metrics["segmenter"]["subsets"]) >= {"base", "novel"}
    assert load_run(run_dir).predict(np.zeros((50, 70, 3), np.uint8)).shape == (50, 70)


def test_a_crop_with_novel_targets_only():
    """A crop where no base class is visible (all novel or unlabelled): classification and the
    complementary loss only."""
    layer = {"pred_logits": torch.zeros(1, 3, 4), "pred_masks": torch.zeros(1, 3, 4, 4)}
    targets = [
        {
            "labels": torch.tensor([2]),
            "masks": torch.zeros(0, 8, 8),
            "valid": torch.ones(8, 8, dtype=torch.bool),
        }
    ]
    out = set_losses(layer, targets, 3, complementary_weight=0.2)
    assert out["mask"].item() == 0 and out["complementary"].item() > 0 and out["classification"].item() > 0


def test_bce_mask_loss_option_on_the_hand_case():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]])
    masks = torch.tensor([[[[4.0, -4.0], [4.0, -4.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    left = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    targets = [{"labels": torch.tensor([0, 1]), "masks": left, "valid": torch.ones(2, 2, dtype=torch.bool)}]
    out = set_losses({"pred_logits": logits, "pred_masks": masks}, targets, 2, mask_loss="bce")
    p = torch.sigmoid(torch.tensor(4.0)).item()
    assert out["mask"].item() == pytest.approx(20 * -math.log(p) + 1 - (4 * p + 1) / 5, rel=1e-5)
    with pytest.raises(ValueError, match="focal"):
        set_losses({"pred_logits": logits, "pred_masks": masks}, targets, 2, mask_loss="l1")
