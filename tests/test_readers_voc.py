import numpy as np
import pytest
from PIL import Image

from fake_trees import VOC_AUG, VOC_PLAIN, VOC_SPLITS, VOC_TRAIN_AUG, make_fake_voc
from lesseg.data.readers.voc import VOC_CLASSES
from lesseg.data.source import read_dataset
from lesseg.errors import DataError


@pytest.fixture
def voc(tmp_path):
    return make_fake_voc(tmp_path / "VOCdevkit" / "VOC2012")


def test_detects_voc_from_any_of_the_three_roots(voc):
    for root in (voc, voc.parent, voc.parent.parent):
        source = read_dataset(root)
        assert source.format == "voc"
        assert source.root == voc
        assert source.problems == []
        assert source.required_splits == ("train",)


def test_classes_and_splits(voc):
    source = read_dataset(voc)
    assert source.classes.classes == VOC_CLASSES
    assert source.classes.num_classes == 21
    assert source.classes.background == "background"
    assert source.classes.background_index == 0
    assert set(source.splits) == {"train", "val", "trainval", "test", "train_aug"}
    for split, ids in VOC_SPLITS.items():
        assert [r.id for r in source.split(split)] == ids
    assert [r.id for r in source.split("train_aug")] == VOC_TRAIN_AUG  # first token's stem of DeepLab lines
    rec = source.split("train")[0]
    assert rec.image == voc / "JPEGImages" / "2007_000032.jpg"
    assert rec.tags is None


def test_plain_masks_are_palette_indices_with_void_border(voc):
    assert Image.open(voc / "SegmentationClass" / "2007_000032.png").mode == "P"
    source = read_dataset(voc, masks="plain")
    rec = source.split("train")[0]
    assert rec.mask == voc / "SegmentationClass" / "2007_000032.png"
    mask = source.load_mask(rec)
    np.testing.assert_array_equal(mask, VOC_PLAIN["2007_000032"].astype(np.int64))
    assert mask.dtype == np.int64
    assert (mask == 255).any() and set(np.unique(mask)) == {0, 1, 15, 255}
    # the aug-only image has no mask in plain mode, which is a problem of the train_aug split
    aug_only = {r.id: r for r in source.split("train_aug")}["2011_003276"]
    assert aug_only.mask is None
    assert any("2011_003276" in p and "train_aug.txt" in p for p in source.problems)


def test_aug_masks_preferred_by_default(voc):
    for masks in ("auto", "aug"):
        source = read_dataset(voc, masks=masks)
        rec = source.split("train")[0]
        assert rec.mask == voc / "SegmentationClassAug" / "2007_000032.png"
        np.testing.assert_array_equal(source.load_mask(rec), VOC_AUG["2007_000032"])
        dog = {r.id: r for r in source.split("train_aug")}["2011_003276"]
        assert source.tags_of(dog) == (VOC_CLASSES.index("dog"),)


def test_auto_falls_back_to_plain_without_aug(tmp_path):
    root = make_fake_voc(tmp_path / "VOC2012", aug=False)
    source = read_dataset(tmp_path)
    assert set(source.splits) == {"train", "val", "trainval", "test"}
    assert source.split("val")[0].mask == root / "SegmentationClass" / "2007_000033.png"
    assert source.problems == []
    with pytest.raises(DataError, match="SegmentationClassAug"):
        read_dataset(root, masks="aug")


def test_tags_from_masks_never_background(voc):
    source = read_dataset(voc)
    tags = {r.id: source.tags_of(r) for r in source.split("trainval")}
    assert tags == {"2007_000032": (1, 15), "2007_000033": (1,), "2007_000039": (20,)}
    for r in source.split("train_aug"):
        assert 0 not in source.tags_of(r)


def test_test_split_has_no_mask(voc):
    source = read_dataset(voc)
    (rec,) = source.split("test")
    assert rec.id == "2008_000001" and rec.mask is None
    assert source.load_mask(rec) is None and source.tags_of(rec) is None


def test_label_map_validity(voc):
    source = read_dataset(voc)
    raw = np.array([[0, 20, 255], [21, 100, 3]], dtype=np.uint8)
    assert source.label_map.invalid_values(raw) == [21, 100]
    np.testing.assert_array_equal(source.label_map.decode(raw)[0], [0, 20, 255])


def test_bad_masks_option_lists_valid_values(voc):
    with pytest.raises(DataError, match="auto, aug, plain"):
        read_dataset(voc, masks="sbd")


def test_missing_image_is_a_problem_naming_the_list(voc):
    (voc / "JPEGImages" / "2007_000039.jpg").unlink()
    source = read_dataset(voc)
    assert [r.id for r in source.split("train")] == ["2007_000032"]
    assert any("train.txt" in p and "2007_000039" in p for p in source.problems)


def test_not_a_voc_folder(tmp_path):
    (tmp_path / "VOC2012").mkdir()
    with pytest.raises(DataError, match="JPEGImages"):
        read_dataset(tmp_path, format="voc")
