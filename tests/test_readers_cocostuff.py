import numpy as np
import pytest

from fake_trees import COCO_CURATED, COCO_RAW, COCO_SPLITS, make_fake_cocostuff
from lesseg.data.readers.cocostuff import COARSE_GROUPS, FINE_NAMES, UNUSED_THING_IDS, USED_RAW
from lesseg.data.source import read_dataset
from lesseg.errors import DataError

IGN = 255  # ignore


@pytest.fixture
def coco(tmp_path):
    return make_fake_cocostuff(tmp_path)


def test_detect_splits_aliases_and_curated(coco):
    source = read_dataset(coco)
    assert source.format == "cocostuff"
    assert source.problems == []
    assert source.required_splits == ("train2017",)
    assert set(source.splits) == {"train2017", "val2017", "train", "val", "curated_train", "curated_val"}
    for split, ids in COCO_SPLITS.items():
        assert [r.id for r in source.split(split)] == ids
    assert source.split("train") == source.split("train2017")
    assert source.split("val") == source.split("val2017")
    assert [r.id for r in source.split("curated_train")] == COCO_CURATED["train2017"]
    assert [r.id for r in source.split("curated_val")] == COCO_CURATED["val2017"]
    rec = source.split("val2017")[0]
    assert rec.image == coco / "images/val2017/000000000139.jpg"
    assert rec.mask == coco / "stuffthingmaps_trainval2017/val2017/000000000139.png"


def test_annotations_layout(tmp_path):
    root = make_fake_cocostuff(tmp_path, label_dir="annotations", curated=False)
    (root / "annotations" / "instances_val2017.json").write_text("{}")  # COCO's own files live there too
    source = read_dataset(root)
    assert source.format == "cocostuff" and source.problems == []
    assert set(source.splits) == {"train2017", "val2017", "train", "val"}
    assert source.split("val")[0].mask == root / "annotations/val2017/000000000139.png"


def test_protocol_171(coco):
    source = read_dataset(coco)
    names = source.classes.classes
    assert source.classes.num_classes == 171
    assert source.classes.background is None
    assert (names[0], names[79], names[80], names[170]) == ("person", "toothbrush", "banner", "wood")
    lut = source.label_map.lut
    assert (lut[0], lut[2], lut[91], lut[119], lut[181], lut[255]) == (0, 2, 80, 108, 170, IGN)
    assert names[108] == "fog"
    mask = source.load_mask(source.split("train")[0])
    expected = np.array([[0] * 4 + [80] * 4] * 3 + [[170] * 4 + [IGN] * 4] * 3)
    np.testing.assert_array_equal(mask, expected)
    assert [source.tags_of(r) for r in source.split("train")] == [(0, 80, 170), (2, 108)]


def test_protocol_27(coco):
    source = read_dataset(coco, protocol="27")
    names = source.classes.classes
    assert source.classes.num_classes == 27
    assert names[:12] == ("electronic", "appliance", "food", "furniture", "indoor", "kitchen", "accessory",
                          "animal", "outdoor", "person", "sports", "vehicle")  # fmt: skip
    assert names[12:] == ("ceiling", "floor", "food-stuff", "furniture-stuff", "raw-material", "textile",
                          "wall", "window", "building", "ground", "plant", "sky", "solid", "structural",
                          "water")  # fmt: skip
    lut = source.label_map.lut
    assert lut[0] == 9 and names[9] == "person"
    assert names[lut[181]] == "solid"  # wood
    assert names[lut[91]] == "textile"  # banner
    assert names[lut[2]] == "vehicle"  # car
    assert names[lut[119]] == "water"  # fog
    assert names[lut[100]] == "floor"  # carpet
    mask = source.load_mask(source.split("train")[0])
    expected = np.array([[9] * 4 + [17] * 4] * 3 + [[24] * 4 + [IGN] * 4] * 3)
    np.testing.assert_array_equal(mask, expected)
    assert source.tags_of(source.split("val")[0]) == (9, 24)


def test_hierarchy_covers_every_fine_class_once():
    fine = [name for group in COARSE_GROUPS.values() for name in group]
    assert len(fine) == len(set(fine)) == 171
    assert set(fine) == {FINE_NAMES[v] for v in USED_RAW}
    assert len(FINE_NAMES) == 182 and len(UNUSED_THING_IDS) == 11
    assert [len(COARSE_GROUPS[k]) for k in ("person", "vehicle", "textile", "floor", "water")] == [
        1,
        8,
        11,
        6,
        5,
    ]


def test_invalid_raw_values(coco):
    for protocol in ("171", "27"):
        source = read_dataset(coco, protocol=protocol)
        assert source.label_map.invalid_values(COCO_RAW["000000000009"]) == []
        raw = np.array([[0, 11, 25, 90, 181, 182, 200, 255]], dtype=np.uint8)  # 11 = street sign (id 12)
        assert source.label_map.invalid_values(raw) == [11, 25, 90, 182, 200]


def test_bad_protocol_lists_valid_values(coco):
    with pytest.raises(DataError, match="171, 27"):
        read_dataset(coco, protocol="182")


def test_missing_label_and_curated_id_are_problems(coco):
    (coco / "stuffthingmaps_trainval2017/train2017/000000000009.png").unlink()
    (coco / "curated/val2017/Coco164kFull_Stuff_Coarse_7.txt").write_text("000000000139\n000000999999\n")
    source = read_dataset(coco)
    assert source.split("train")[0].mask is None
    assert any("000000000009.png" in p for p in source.problems)
    assert any("Coco164kFull_Stuff_Coarse_7.txt" in p and "000000999999" in p for p in source.problems)
    assert [r.id for r in source.split("curated_val")] == ["000000000139"]
