import numpy as np
import pytest

from fake_trees import CITYSCAPES_RAW, CITYSCAPES_SPLITS, make_fake_cityscapes
from lesseg.data.source import read_dataset
from lesseg.errors import DataError

IGN = 255  # ignore


@pytest.fixture
def city(tmp_path):
    return make_fake_cityscapes(tmp_path)


def by_id(source, split):
    return {r.id: r for r in source.split(split)}


def test_detect_splits_and_ids(city):
    source = read_dataset(city)
    assert source.format == "cityscapes"
    assert source.problems == []
    assert source.required_splits == ("train",)
    assert set(source.splits) == {"train", "val", "test", "train_extra"}
    for split, ids in CITYSCAPES_SPLITS.items():
        assert [r.id for r in source.split(split)] == ids
    rec = source.split("train")[0]
    assert rec.image == city / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert rec.mask == city / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"


def test_test_and_train_extra_have_no_masks(city):
    source = read_dataset(city)
    assert (city / "gtFine/test/berlin/berlin_000000_000019_gtFine_labelIds.png").is_file()  # a dummy
    for split in ("test", "train_extra"):
        for rec in source.split(split):
            assert rec.mask is None and source.tags_of(rec) is None


def test_protocol_19(city):
    source = read_dataset(city)
    assert source.classes.num_classes == 19
    assert source.classes.background is None
    assert source.classes.classes[:3] == ("road", "sidewalk", "building")
    assert source.classes.classes[-1] == "bicycle"
    lut = source.label_map.lut
    assert (lut[26], lut[7], lut[33], lut[24], lut[11]) == (13, 0, 18, 11, 2)
    assert (lut[0], lut[9], lut[6], lut[255]) == (IGN, IGN, IGN, IGN)  # parking is not evaluated
    mask = source.load_mask(by_id(source, "train")["aachen_000000_000019"])
    expected = np.array([[IGN, IGN, 0, 0, 0, 0, 13, 13]] * 3 + [[18, 18, IGN, IGN, IGN, IGN, 13, 13]] * 3)
    np.testing.assert_array_equal(mask, expected)
    assert source.tags_of(by_id(source, "train")["aachen_000000_000019"]) == (0, 13, 18)
    assert source.tags_of(by_id(source, "val")["frankfurt_000000_000294"]) == (13,)


def test_protocol_27(city):
    source = read_dataset(city, protocol="27")
    assert source.classes.num_classes == 27
    assert source.classes.classes[0] == "road" and source.classes.classes[-1] == "bicycle"
    assert source.classes.classes[19] == "car"
    lut = source.label_map.lut
    assert (lut[26], lut[7], lut[9], lut[33], lut[24]) == (19, 0, 2, 26, 17)
    assert all(lut[v] == IGN for v in range(7))
    mask = source.load_mask(by_id(source, "train")["aachen_000000_000019"])
    expected = np.array([[IGN, IGN, 0, 0, 0, 0, 19, 19]] * 3 + [[26, 26, 2, 2, IGN, IGN, 19, 19]] * 3)
    np.testing.assert_array_equal(mask, expected)
    # an int protocol works as well
    assert read_dataset(city, protocol=27).classes == source.classes


def test_invalid_raw_values(city):
    source = read_dataset(city)
    raw = CITYSCAPES_RAW["aachen_000000_000019"]
    assert source.label_map.invalid_values(raw) == []
    assert source.label_map.invalid_values(np.array([[0, 33, 34, 100, 254, 255]], np.uint8)) == [34, 100, 254]


def test_bad_protocol_lists_valid_values(city):
    with pytest.raises(DataError, match="19, 27"):
        read_dataset(city, protocol="20")


def test_gtcoarse(tmp_path):
    root = make_fake_cityscapes(tmp_path, coarse=True)
    source = read_dataset(root, mask_root="gtCoarse")
    extra = source.split("train_extra")[0]
    assert extra.mask == root / "gtCoarse/train_extra/augsburg/augsburg_000000_000000_gtCoarse_labelIds.png"
    assert source.tags_of(extra) == (0,)
    assert all(r.mask is None for r in source.split("val"))  # gtCoarse has no val labels here
    with pytest.raises(DataError, match="gtMissing"):
        read_dataset(root, mask_root="gtMissing")


def test_missing_label_file_is_a_problem(city):
    (city / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png").unlink()
    source = read_dataset(city)
    assert by_id(source, "train")["bochum_000000_000313"].mask is None
    assert any("bochum_000000_000313_gtFine_labelIds.png" in p for p in source.problems)
