"""`lesseg run` reads only data that `lesseg data check` accepts: before the first stage it checks what it
will read and stops with data check's messages, or with data.skip_bad=true leaves the bad images out and
lists them in the run folder. Nothing silently changes the data."""

import json
import time

import numpy as np
import pytest
from PIL import Image

from lesseg.cli import main
from lesseg.data import read_dataset
from lesseg.data.preflight import RESULT_FILE, check_run_data
from lesseg.errors import DataError
from tiny_data import make_camvid, run_args, tiny_scenes


@pytest.fixture
def scenes(tmp_path):
    return tiny_scenes(tmp_path / "textured")


def first_train_id(root) -> str:
    return (root / "train.txt").read_text().split()[0]


def break_mask_values(root):
    image_id = first_train_id(root)
    path = root / "masks" / f"{image_id}.png"
    with Image.open(path) as im:
        raw = np.array(im)
        palette = im.getpalette()
    raw[0, :5] = 77  # 4 classes
    im = Image.fromarray(raw)
    im.putpalette(palette)
    im.save(path)
    return image_id, [f"{path}: label values outside the 4 classes: 77"]


def break_tag(root):
    csv = root / "image_labels.csv"
    lines = csv.read_text().splitlines()
    image_id = lines[1].split(",")[0]
    lines[1] = lines[1] + " unicorn"
    csv.write_text("\n".join(lines) + "\n")
    return image_id, ["image_labels.csv:2: tag 'unicorn'", "is not a class in classes.json"]


def break_split_entry(root):
    with (root / "train.txt").open("a") as f:
        f.write("../../etc/passwd\n")
    return "passwd", ["train.txt:", "entry '../../etc/passwd' points outside the dataset folder"]


def break_size(root):
    image_id = first_train_id(root)
    path = root / "masks" / f"{image_id}.png"
    with Image.open(path) as im:
        im.crop((0, 0, 40, 48)).save(path)
    return image_id, [f"{path}: mask size 40x48 differs from its image"]


FAULTS = {"mask values": break_mask_values, "unknown tag": break_tag, "split entry": break_split_entry,
          "size": break_size}  # fmt: skip


@pytest.mark.parametrize("fault", FAULTS)
def test_run_stops_with_data_checks_message_before_the_first_stage(fault, tmp_path, scenes, capsys):
    _, messages = FAULTS[fault](scenes)
    assert main(["data", "check", str(scenes)]) == 1
    checked = capsys.readouterr().out
    assert all(m in checked for m in messages)
    args = run_args(scenes, tmp_path / "runs")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert all(m in err for m in messages), err
    assert "data.skip_bad=true" in err and err.startswith(f"lesseg: error: {scenes}: 1 problem(s)")
    run = tmp_path / "runs" / "r"
    assert not (run / "stages.json").exists() and not (run / "config.yaml").exists()


@pytest.mark.parametrize("fault", FAULTS)
def test_skip_bad_leaves_the_bad_image_out_and_lists_it(fault, tmp_path, scenes, capsys):
    bad_id, messages = FAULTS[fault](scenes)
    runs = tmp_path / "runs"
    args = run_args(scenes, runs, "data.skip_bad=true")
    assert main([*args, "--stage", "classifier"]) == 0
    out = capsys.readouterr().out
    listed = json.loads((runs / "r" / RESULT_FILE).read_text())
    assert "1 image(s) with problems left out" in out and str(runs / "r" / RESULT_FILE) in out
    assert list(listed["bad"]) == [bad_id]
    assert all(any(m in p for p in listed["bad"][bad_id]) for m in messages)


def test_skipped_images_are_not_trained_on_or_labelled(tmp_path, scenes, capsys):
    bad_id, _ = break_mask_values(scenes)
    runs = tmp_path / "runs"
    args = run_args(scenes, runs, "data.skip_bad=true")
    assert main(args) == 0
    labels = {p.stem for p in (runs / "r" / "pseudo_labels").glob("*.png")}
    train = set((scenes / "train.txt").read_text().split())
    assert labels == train - {bad_id}


def test_empty_split_names_its_list(tmp_path, scenes, capsys):
    (scenes / "train.txt").write_text("")
    args = run_args(scenes, tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{scenes / 'train.txt'}: empty split list" in err
    assert main([*args, "data.skip_bad=true"]) == 2  # nothing left to skip to
    assert "split 'train' has no usable images left" in capsys.readouterr().err


def test_missing_split_names_the_valid_ones(tmp_path, scenes, capsys):
    (scenes / "val.txt").unlink()
    args = run_args(scenes, tmp_path)
    assert main(args) == 2
    assert "no split 'val'; splits here: train" in capsys.readouterr().err


def test_problems_in_splits_the_run_does_not_read_do_not_stop_it(scenes):
    (scenes / "test.txt").write_text("no_such_image\n")
    source = read_dataset(scenes)
    assert any("no_such_image" in p for p in source.problems)  # data check reports it ...
    assert check_run_data(source, ["train", "val"]).problems == []  # ... a train/val run never reads it


def test_a_check_of_unchanged_files_is_reused(tmp_path, scenes, capsys):
    args = run_args(scenes, tmp_path)
    assert main([*args, "--stage", "classifier"]) == 0
    stored = tmp_path / "r" / RESULT_FILE
    first = stored.stat().st_mtime_ns
    assert main([*args, "--stage", "classifier"]) == 0
    assert stored.stat().st_mtime_ns == first  # the same files: not checked again
    time.sleep(0.01)
    break_mask_values(scenes)  # a file changed: checked again, and the run stops
    assert main([*args, "--stage", "classifier"]) == 2
    assert "label values outside the 4 classes: 77" in capsys.readouterr().err


def test_masks_outside_the_classes_are_an_error_where_they_are_decoded(scenes):
    bad_id, messages = break_mask_values(scenes)
    source = read_dataset(scenes)
    record = next(r for r in source.split("train") if r.id == bad_id)
    with pytest.raises(DataError, match="label values outside the 4 classes: 77"):
        source.load_mask(record)


def test_camvid_list_entries_stay_inside_the_dataset(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 6)).save(outside)
    with (root / "train.txt").open("a") as f:
        f.write(f"../outside.png trainannot/0001TP_006690.png\n{outside} trainannot/0001TP_006690.png\n")
    source = read_dataset(root)
    assert all(r.image.is_relative_to(root) for r in source.split("train"))  # the absolute one: by its name
    problems = check_run_data(source, ["train", "val"]).problems
    assert any("'../outside.png' points outside the dataset folder" in p for p in problems)
