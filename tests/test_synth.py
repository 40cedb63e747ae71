"""The synthetic-scene generator: determinism, scene statistics, part maps, both background modes."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lesseg.data import read_dataset
from lesseg.data.imageio import load_image, load_label_png
from lesseg.data.source import tags_from_mask
from lesseg.data.synth import SynthStats, generate
from lesseg.errors import ConfigError


@pytest.fixture(scope="module")
def textured(tmp_path_factory) -> tuple[Path, SynthStats]:
    out = tmp_path_factory.mktemp("synth") / "textured"
    return out, generate(out, images=40, classes=8, seed=1, background="textured", size=96)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> tuple[Path, SynthStats]:
    out = tmp_path_factory.mktemp("synth") / "none"
    return out, generate(out, images=40, classes=7, seed=2, background="none", size=64)


def _ids(out: Path) -> list[str]:
    return sorted(p.stem for p in (out / "images").glob("*.png"))


def _csv_tags(out: Path) -> dict[str, list[str]]:
    with (out / "image_labels.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "labels"]
    return {row[0]: row[1].split() for row in rows[1:]}


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(tmp_path / name, images=12, classes=6, seed=seed, size=64)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert len(a) == 4 * 12 + 5  # 4 maps per image; classes, csv, train, val, synth.json
    assert a == b
    assert a.keys() == c.keys()
    assert a["images/synth_00000.png"] != c["images/synth_00000.png"]
    assert a["synth.json"] != c["synth.json"]  # the class definitions depend on the seed too
    none_a = generate(tmp_path / "d", images=6, classes=6, seed=5, background="none", size=64)
    generate(tmp_path / "e", images=6, classes=6, seed=5, background="none", size=64)
    assert _files(tmp_path / "d") == _files(tmp_path / "e")
    assert none_a.classes_per_image


@pytest.mark.parametrize("which", ["textured", "plain"])
def test_classes_per_image_match_csv_and_masks(which, request):
    out, stats = request.getfixturevalue(which)
    info = read_dataset(out).classes
    csv_tags = _csv_tags(out)
    assert sorted(csv_tags) == _ids(out)
    hist = Counter()
    for image_id, names in csv_tags.items():
        mask = load_label_png(out / "masks" / f"{image_id}.png").astype(np.int64)
        assert sorted(names) == sorted(info.classes[c] for c in tags_from_mask(mask, info))
        assert 1 <= len(names) <= 4
        hist[len(names)] += 1
    assert {k: v for k, v in stats.classes_per_image.items() if v} == dict(hist)
    assert (
        sum(v for k, v in hist.items() if k >= 2) > len(csv_tags) / 2
    )  # multi-class images are the majority


@pytest.mark.parametrize("which", ["textured", "plain"])
def test_parts_are_small_and_inside_their_instance(which, request):
    out, stats = request.getfixturevalue(which)
    definitions = json.loads((out / "synth.json").read_text())["classes"]
    ratios = []
    for image_id in _ids(out):
        inst = load_label_png(out / "instances" / f"{image_id}.png")
        parts = load_label_png(out / "parts" / f"{image_id}.png")
        mask = load_label_png(out / "masks" / f"{image_id}.png")
        assert (
            inst.shape
            == parts.shape
            == mask.shape
            == load_image(out / "images" / f"{image_id}.png").shape[:2]
        )
        on_part = parts > 0
        assert np.array_equal(parts[on_part], inst[on_part])  # a part lies inside its own instance
        for j in np.unique(inst[inst > 0]):
            labels = np.unique(mask[inst == j])
            assert len(labels) == 1 and definitions[labels[0]]["kind"] == "thing"
            part_area = np.count_nonzero(parts == j)
            assert part_area > 0
            ratios.append(part_area / np.count_nonzero(inst == j))
    assert ratios and max(ratios) <= 0.15
    assert stats.max_part_ratio == pytest.approx(max(ratios))
    assert stats.mean_part_ratio == pytest.approx(np.mean(ratios))
    assert 0.02 < stats.mean_part_ratio < 0.12


def test_textured_mode_has_a_background_class(textured):
    out, stats = textured
    info = json.loads((out / "classes.json").read_text())
    assert info["background"] == "background" and info["classes"][0] == "background"
    assert info["ignore_index"] == 255 and len(info["classes"]) == 8
    assert all("background" not in names for names in _csv_tags(out).values())
    definitions = json.loads((out / "synth.json").read_text())["classes"]
    things = [d for d in definitions if d["kind"] == "thing"]
    assert len(things) == 7
    assert len({(d["shape"], d["texture"]) for d in things}) == 7  # unique identities
    assert len({(d["part"]["layout"], *map(tuple, d["part"]["colours"])) for d in things}) == 7
    assert {d["colour_informative"] for d in things} == {True, False}
    assert "background" in stats.format() and "classes per image" in stats.format()


def test_none_mode_labels_every_pixel_with_stuff_underneath(plain):
    out, _ = plain
    info = json.loads((out / "classes.json").read_text())
    assert info["background"] is None
    definitions = json.loads((out / "synth.json").read_text())["classes"]
    stuff = {i for i, d in enumerate(definitions) if d["kind"] == "stuff"}
    assert len(stuff) == 2 and len(definitions) == 7
    seen_stuff = set()
    for image_id in _ids(out):
        mask = load_label_png(out / "masks" / f"{image_id}.png")
        assert mask.max() < 7  # no ignore or unlabelled pixels
        present = set(np.unique(mask).tolist())
        assert present & stuff  # stuff fills the image under the objects
        seen_stuff |= present & stuff
    assert seen_stuff == stuff


@pytest.mark.parametrize("which", ["textured", "plain"])
def test_reads_back_as_a_clean_folder_dataset(which, request):
    out, _ = request.getfixturevalue(which)
    source = read_dataset(out)
    assert source.format == "folder" and source.problems == []
    train, val = source.split("train"), source.split("val")
    assert len(val) == 8 and len(train) == 32 and not {r.id for r in train} & {r.id for r in val}
    for record in train + val:
        assert record.tags is not None and record.mask is not None
        assert record.tags == tags_from_mask(source.load_mask(record), source.classes)


def test_rerun_into_the_same_folder_drops_stale_files(tmp_path):
    generate(tmp_path, images=5, classes=4, size=48, val_fraction=0.4)
    generate(tmp_path, images=3, classes=4, size=48, val_fraction=0.0)
    assert _ids(tmp_path) == ["synth_00000", "synth_00001", "synth_00002"]
    assert not (tmp_path / "val.txt").exists()
    assert read_dataset(tmp_path).problems == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"background": "green"}, ["background", "textured", "none"]),
        ({"classes": 1}, ["classes", "2"]),
        ({"classes": 99}, ["classes", "32"]),
        ({"images": 0}, ["images", ">= 1"]),
        ({"size": 16}, ["size", ">= 32"]),
        ({"val_fraction": 1.0}, ["val_fraction", "[0, 1)"]),
        ({"seed": -1}, ["seed", ">= 0"]),
    ],
)
def test_bad_arguments_name_the_option(tmp_path, kwargs, words):
    with pytest.raises(ConfigError) as err:
        generate(tmp_path / "x", **kwargs)
    assert all(w in str(err.value) for w in words)
    assert not (tmp_path / "x").exists()
