"""ADE20K-150 and COCO-Stuff-10K readers on fake trees in MaskFormer's layouts, and SimFormer's splits."""

from types import SimpleNamespace

import numpy as np
import pytest

from fake_trees import (
    ADE_SPLITS,
    COCO10K_SPLITS,
    H,
    W,
    _write_gray,
    make_fake_ade20k,
    make_fake_cocostuff10k,
)
from lesseg.cli import main
from lesseg.data.check import check_dataset
from lesseg.data.readers.ade20k import ADE20K_CLASSES
from lesseg.data.source import read_dataset
from lesseg.data.splits import run_splits
from lesseg.errors import ConfigError, DataError

IGN = 255


@pytest.mark.parametrize("detectron2", [False, True])
def test_ade20k_splits_and_decoding(tmp_path, detectron2):
    root = make_fake_ade20k(tmp_path, detectron2=detectron2)
    source = read_dataset(root)
    assert source.format == "ade20k" and source.problems == []
    assert source.classes.num_classes == 150 and len(set(ADE20K_CLASSES)) == 150
    assert source.classes.background is None
    assert set(source.splits) == {"training", "validation", "train", "val"}
    for split, ids in ADE_SPLITS.items():
        assert [r.id for r in source.split(split)] == ids
    assert source.split("val") == source.split("validation")
    mask = source.load_mask(source.split("train")[0])
    expected = np.array([[0] * 4 + [2] * 4] * 3 + [[12] * 4 + [IGN] * 4] * 3)
    np.testing.assert_array_equal(mask, expected)  # raw 1 wall -> 0, 3 sky -> 2, 13 person -> 12, 0 -> ignore
    names = source.classes.classes
    assert (names[0], names[2], names[12], names[149]) == ("wall", "sky", "person", "flag")
    assert [source.tags_of(r) for r in source.split("training")] == [(0, 2, 12), (149,)]
    assert check_dataset(source).clean


def test_cocostuff10k_splits_and_decoding(tmp_path):
    root = make_fake_cocostuff10k(tmp_path)
    source = read_dataset(root)
    assert source.format == "cocostuff10k" and source.problems == []
    assert source.classes.num_classes == 171
    assert set(source.splits) == {"train", "test", "val"}
    for split, ids in COCO10K_SPLITS.items():
        assert [r.id for r in source.split(split)] == ids
    assert source.split("val") == source.split("test")
    names = source.classes.classes
    assert (names[0], names[2], names[80], names[170]) == ("person", "car", "banner", "wood")
    assert [source.tags_of(r) for r in source.split("train")] == [(0, 80, 170), (2,)]
    assert check_dataset(source).clean


@pytest.mark.parametrize("make, split, folder", [
    (make_fake_ade20k, "training", "annotations/training"),
    (make_fake_cocostuff10k, "train", "annotations_detectron2/train"),
])  # fmt: skip
def test_missing_annotation_is_named(tmp_path, make, split, folder):
    root = make(tmp_path)
    first = read_dataset(root).split(split)[0]
    first.mask.unlink()
    source = read_dataset(root)
    assert source.problems == [f"{root / folder / first.mask.name}: label file missing for image "
                               f"{split}/{first.image.name}"]  # fmt: skip
    assert source.problems[0].splits == (split,)


@pytest.mark.parametrize("make, split", [(make_fake_ade20k, "validation"), (make_fake_cocostuff10k, "test")])
def test_mis_sized_annotation_is_named_by_data_check(tmp_path, capsys, make, split):
    root = make(tmp_path)
    record = read_dataset(root).split(split)[0]
    _write_gray(record.mask, np.ones((H - 1, W), np.uint8))
    assert main(["data", "check", str(root)]) != 0
    out = capsys.readouterr().out
    assert f"{record.mask}: mask size {W}x{H - 1} differs from its image {record.image.name} ({W}x{H})" in out


def test_ade20k_value_above_150_is_refused(tmp_path):
    root = make_fake_ade20k(tmp_path)
    record = read_dataset(root).split("training")[1]
    _write_gray(record.mask, np.full((H, W), 151, np.uint8))
    with pytest.raises(
        DataError, match=r"ADE_train_00000002\.png: label values outside the 150 classes: 151"
    ):
        read_dataset(root).load_mask(record)


def test_cocostuff10k_as_distributed_asks_for_the_conversion(tmp_path):
    root = tmp_path / "coco_stuff_10k"
    (root / "imageLists").mkdir(parents=True)
    (root / "annotations").mkdir()
    with pytest.raises(DataError, match="prepare_coco_stuff_10k_sem_seg.py"):
        read_dataset(root)


@pytest.mark.parametrize("make, prefix, count, novel", [
    (make_fake_ade20k, "ade20k", 4, 38),
    (make_fake_cocostuff10k, "cocostuff10k", 9, 43),
])  # fmt: skip
def test_shipped_official_splits_resolve_by_name(tmp_path, make, prefix, count, novel):
    source = read_dataset(make(tmp_path))
    sizes = []
    for k in range(1, count + 1):
        data = SimpleNamespace(labeled=None, novel=f"{prefix}_split{k}", novel_seed=0, train_split="train")
        split = run_splits(data, source).base_novel
        assert sorted(split.base + split.novel) == list(range(source.classes.num_classes))
        sizes.append(len(split.novel))
    assert sizes[:4] == [novel] * 4  # a quarter of the classes, as in the paper
    if prefix == "cocostuff10k":
        assert sizes[4:] == [51, 59, 68, 76, 85]  # the novel-ratio analysis splits 0.30 ... 0.50
    first = run_splits(SimpleNamespace(labeled=None, novel=f"{prefix}_split1", novel_seed=0, train_split="train"),
                       source).base_novel  # fmt: skip
    names = [source.classes.classes[i] for i in first.novel]
    assert names[:3] == (
        ["building", "floor", "road"] if prefix == "ade20k" else ["motorcycle", "train", "fire hydrant"]
    )


def test_unknown_split_name_lists_the_shipped_ones(tmp_path):
    source = read_dataset(make_fake_ade20k(tmp_path))
    data = SimpleNamespace(labeled=None, novel="ade20k_split7", novel_seed=0, train_split="train")
    with pytest.raises(
        ConfigError, match=r"data.novel='ade20k_split7'.*shipped splits: ade20k_split1, ade20k_split2"
    ):
        run_splits(data, source)
