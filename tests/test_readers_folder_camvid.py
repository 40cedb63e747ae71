import json

import numpy as np
import pytest

from lesseg.data import ClassInfo, read_dataset
from lesseg.errors import DataError
from tiny_data import FOLDER_CLASSES, make_camvid, make_folder_dataset, write_png


def test_folder_reads_splits_masks_and_csv_tags(tmp_path):
    src = read_dataset(make_folder_dataset(tmp_path / "ds"))
    assert src.format == "folder"
    assert [r.id for r in src.split("train")] == ["1_1_s", "1_2_s", "2_1_s", "2_2_s"]
    assert len(src.split("val")) == 2
    assert src.problems == []
    r = src.split("train")[1]
    mask = src.load_mask(r)
    assert mask.dtype == np.int64
    assert mask[0, 0] == 255 and mask[1, 0] == 1 and mask[1, 5] == 2  # palette indices are class ids
    assert src.tags_of(r) == (1, 2) == r.tags  # from the CSV, equal to the mask's classes


def test_folder_tags_from_masks_without_csv_and_never_background(tmp_path):
    src = read_dataset(make_folder_dataset(tmp_path / "ds", background="background", with_csv=False))
    assert src.classes.background_index == 0
    for r in src.split("train"):
        assert r.tags is None
        tags = src.tags_of(r)
        assert 0 not in tags and tags
    assert src.tags_of(src.split("train")[0]) == (1,)  # mask holds 0 (background) and 1


def test_folder_unknown_split_names_the_valid_ones(tmp_path):
    src = read_dataset(make_folder_dataset(tmp_path / "ds"))
    with pytest.raises(
        DataError, match=r"no split 'trian' \(did you mean 'train'\?\); splits here: train, val"
    ):
        src.split("trian")


def test_folder_reads_shared_msrc_layout_details(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    (root / "image_labels.csv").write_text("image,labels\n1_1_s,building gras\n")
    src = read_dataset(root)
    assert any("image_labels.csv:2" in p and "'gras'" in p for p in src.problems)


def test_camvid_segnet_layout_and_unlabelled_is_ignore(tmp_path):
    src = read_dataset(make_camvid(tmp_path / "camvid"))
    assert src.format == "camvid" and src.classes.background is None
    assert src.classes.num_classes == 11 and src.classes.classes[0] == "sky"
    assert [r.id for r in src.split("train")] == ["0001TP_006690", "0001TP_006720"]
    mask = src.load_mask(src.split("val")[0])
    raw = np.arange(48).reshape(6, 8) % 12
    assert (mask[raw == 11] == 255).all() and (mask[raw < 11] == raw[raw < 11]).all()
    assert src.problems == []


def test_camvid_absolute_segnet_paths_resolve(tmp_path):
    src = read_dataset(make_camvid(tmp_path / "camvid", absolute_paths=True))
    assert src.split("train")[0].image == tmp_path / "camvid" / "train" / "0001TP_006690.png"
    assert src.problems == []


def test_format_detection_and_errors(tmp_path):
    with pytest.raises(DataError, match="no such dataset folder"):
        read_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the dataset layout; pass --format"):
        read_dataset(tmp_path / "empty")
    root = make_folder_dataset(tmp_path / "ds")
    with pytest.raises(DataError, match="has no option 'protocol'"):
        read_dataset(root, protocol="27")


def test_class_info_validation(tmp_path):
    with pytest.raises(DataError, match="collides"):
        ClassInfo(("a", "b"), ignore_index=1)
    with pytest.raises(DataError, match="did you mean 'background'"):
        ClassInfo(("background", "a"), background="backgrond")
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"classes": FOLDER_CLASSES, "ignore_index": 255, "backgroud": None}))
    with pytest.raises(DataError, match="unknown field"):
        ClassInfo.load(path)
    info = ClassInfo(("background", "cat"), background="background")
    info.save(path)
    assert ClassInfo.load(path) == info


def test_grayscale_and_palette_masks_decode_alike(tmp_path):
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    from lesseg.data.imageio import load_label_png

    a = load_label_png(write_png(tmp_path / "gray.png", mask))
    b = load_label_png(write_png(tmp_path / "pal.png", mask, palette=True))
    assert (a == mask).all() and (b == mask).all()
    write_png(tmp_path / "rgb.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match="rgb.png: a label map must be single-channel"):
        load_label_png(tmp_path / "rgb.png")
