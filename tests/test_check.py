"""`data check`: each planted fault is reported with its file; a clean dataset passes."""

import numpy as np
import pytest

from lesseg.cli import main
from lesseg.data import read_dataset
from lesseg.data.check import check_dataset
from tiny_data import make_camvid, make_folder_dataset, write_png


def problems_of(root):
    return check_dataset(read_dataset(root)).problems


def test_clean_dataset_has_no_problems_and_statistics(tmp_path):
    report = check_dataset(read_dataset(make_folder_dataset(tmp_path / "ds")))
    assert report.clean
    train = report.stats["train"]
    assert (train.images, train.with_mask, train.with_tags) == (4, 4, 4)
    assert dict(train.classes_per_image) == {2: 4}
    assert train.pixels.sum() == 4 * 48 and train.pixels[-1] == 4  # one ignore pixel per image
    text = report.format()
    assert "split train: 4 images" in text and "no problems found" in text


def test_unreadable_image(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    (root / "images" / "1_2_s.png").write_bytes(b"not an image at all")
    assert [p for p in problems_of(root) if "1_2_s.png: cannot read image" in p]


def test_truncated_image(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    path = root / "images" / "1_1_s.png"
    write_png(path, np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-2000])
    found = [p for p in problems_of(root) if "1_1_s.png" in p]
    assert found and "cannot read image" in found[0]


def test_mask_size_differs(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    write_png(root / "masks" / "2_1_s.png", np.zeros((5, 8), np.uint8))
    assert [p for p in problems_of(root) if "2_1_s.png: mask size 8x5 differs from its image" in p]


def test_label_values_outside_classes(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    mask = np.zeros((6, 8), np.uint8)
    mask[0, :2] = (4, 17)  # 4 classes: 0..3 valid, 255 ignore
    write_png(root / "masks" / "2_2_s.png", mask)
    assert [p for p in problems_of(root) if "2_2_s.png: label values outside the 4 classes: 4, 17" in p]


def test_unknown_tag(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    (root / "image_labels.csv").write_text("image,labels\n1_1_s,building unicorn\n")
    assert [p for p in problems_of(root) if "image_labels.csv:2: tag 'unicorn'" in p]


def test_missing_and_empty_split_lists(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    (root / "train.txt").unlink()
    (root / "val.txt").write_text("\n")
    problems = problems_of(root)
    assert [p for p in problems if "train.txt: missing split list" in p]
    assert [p for p in problems if "val.txt: empty split list" in p]


def test_duplicate_ids(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    (root / "train.txt").write_text("1_1_s\n1_2_s\n1_1_s\n")
    write_png(root / "images" / "1_2_s.jpg", np.zeros((6, 8, 3), np.uint8))
    (root / "val.txt").write_text("3_1_s\n1_2_s\n")
    problems = problems_of(root)
    assert [p for p in problems if "train.txt: duplicate id '1_1_s'" in p]
    assert [p for p in problems if "1_2_s.png: duplicate id '1_2_s'" in p]  # same id, two image files
    assert [p for p in problems if "val.txt: 1 id(s) in both splits" in p]


def test_listed_id_without_image(tmp_path):
    root = make_folder_dataset(tmp_path / "ds")
    (root / "val.txt").write_text("3_1_s\nghost\n")
    assert [p for p in problems_of(root) if "val.txt: id 'ghost' has no image" in p]


def test_camvid_missing_mask_file(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    (root / "trainannot" / "0001TP_006720.png").unlink()
    assert [p for p in problems_of(root) if "train.txt:2: mask" in p and "not found" in p]


def test_cli_exit_codes(tmp_path, capsys):
    root = make_folder_dataset(tmp_path / "ds")
    assert main(["data", "check", str(root), "--json", str(tmp_path / "stats.json")]) == 0
    assert "no problems found" in capsys.readouterr().out
    assert (tmp_path / "stats.json").is_file()
    (root / "image_labels.csv").write_text("image,labels\n1_1_s,unicorn\n")
    assert main(["data", "check", str(root)]) == 1
    assert "1 problem(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "check", "/no/such/dir"], "no such directory: /no/such/dir"),
        (["data", "check", ".", "--format", "vok"], "unknown dataset format 'vok' (did you mean 'voc'?)"),
        (["data", "synth", "x", "--background", "green"], "invalid choice: 'green'"),
        (["data", "synth", "x", "--images", "many"], "invalid int value: 'many'"),
        (["dat"], "invalid choice: 'dat'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
