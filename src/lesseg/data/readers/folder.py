"""The generic folder layout, for users' own data and for our synthetic scenes.

```
ROOT/
  classes.json          {"classes": [...], "ignore_index": 255, "background": null | "name"}
  images/<id>.<ext>     RGB images (png, jpg, bmp, ...)
  masks/<id>.png        optional: 8-bit class-index PNGs (grayscale or palette), 255 = ignore
  image_labels.csv      optional: `image,labels`, labels = space-separated class names
  train.txt val.txt ... split lists, one image id per line
```
Tags come from ``image_labels.csv`` when it lists the image, else from its mask.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from lesseg.data.classes import ClassInfo
from lesseg.data.imageio import IMAGE_EXTENSIONS
from lesseg.data.source import DatasetSource, LabelMap, Problem, Record, register_reader, report_some
from lesseg.errors import DataError


def _looks_like_folder(root: Path) -> bool:
    return (root / "classes.json").is_file() and (root / "images").is_dir()


def read_split_list(path: Path, problems: list[str], split: str | None = None,
                    absolute_ok: bool = False) -> list[str]:  # fmt: skip
    """Ids of a split list (split ``split``, by default the file's stem): one per line; a line with paths
    counts by the first path's file stem. An entry that climbs out of the dataset folder (``..``), or an
    absolute path unless ``absolute_ok`` (CamVid's SegNet lists, resolved inside the folder), is a problem
    and is left out: paths from data files never reach outside their root."""
    split = split or path.stem
    ids = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line.split()[0])
        if ".." in entry.parts or (entry.is_absolute() and not absolute_ok):
            problems.append(Problem(f"{path}:{lineno}: entry {line.split()[0]!r} points outside the dataset "
                                    "folder; split lists name images inside it", (split,), entry.stem))  # fmt: skip
            continue
        ids.append(entry.stem)
    if not ids:
        problems.append(Problem(f"{path}: empty split list", (split,)))
    for dup, n in Counter(ids).items():
        if n > 1:
            problems.append(Problem(f"{path}: duplicate id {dup!r} ({n} times)", (split,), dup))
    return list(dict.fromkeys(ids))


def report_overlaps(splits: dict[str, list[Record]], files: dict[str, Path], problems: list[str]) -> None:
    names = sorted(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = {r.id for r in splits[a]} & {r.id for r in splits[b]}
            if shared and {a, b} <= set(files) and not {a, b} & {"trainval", "train_aug", "all"}:
                example = sorted(shared)[0]
                problems.append(Problem(
                    f"{files[a]} and {files[b]}: {len(shared)} id(s) in both splits (e.g. {example!r})", (a, b)
                ))  # fmt: skip


def paired_records(image_dir: Path, label_dir: Path | None, split: str, problems: list[str],
                   image_glob: str = "*.jpg") -> list[Record]:  # fmt: skip
    """One record per image of ``image_dir`` (``image_glob``), its mask ``label_dir/<stem>.png``: the layout
    of COCO-Stuff and ADE20K. A missing label file is a problem of ``split`` naming it (the record keeps no
    mask); ``label_dir=None``: the split has no labels at all (the caller says so once)."""
    label_names = {q.name for q in label_dir.iterdir()} if label_dir is not None else set()
    records, missing = [], []
    for image in sorted(image_dir.glob(image_glob)):
        name = f"{image.stem}.png"
        if label_dir is not None and name not in label_names:
            missing.append(
                (f"{label_dir / name}: label file missing for image {split}/{image.name}", image.stem)
            )
        records.append(Record(image.stem, image, label_dir / name if name in label_names else None))
    report_some(problems, [m for m, _ in missing], f"{label_dir}: ... and {{n}} more missing label files",
                (split,), [i for _, i in missing])  # fmt: skip
    if not records:
        problems.append(Problem(f"{image_dir}: no {image_glob} images", (split,)))
    return records


def split_folders(images: Path, labels: Path, aliases: dict[str, str | None],
                  problems: list[str]) -> dict[str, list[Record]]:  # fmt: skip
    """The splits of a ``images/<split>/*.jpg`` + ``labels/<split>/*.png`` tree (ADE20K, COCO-Stuff-10K):
    each folder of ``aliases`` that exists, also under its alias when that is not ``None``."""
    splits: dict[str, list[Record]] = {}
    for folder, alias in aliases.items():
        image_dir, label_dir = images / folder, labels / folder
        if not image_dir.is_dir():
            problems.append(Problem(f"{image_dir}: missing; no {folder} split", (folder,)))
            continue
        if not label_dir.is_dir():
            problems.append(Problem(f"{label_dir}: missing; the {folder} images have no labels", (folder,)))
        splits[folder] = paired_records(
            image_dir, label_dir if label_dir.is_dir() else None, folder, problems
        )
        if alias:
            splits[alias] = splits[folder]
    return splits


def read_tags_csv(path: Path, classes: ClassInfo, problems: list[str]) -> dict[str, tuple[int, ...]]:
    tags: dict[str, tuple[int, ...]] = {}
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][:2]] != ["image", "labels"]:
        problems.append(Problem(f"{path}: the first line must be the header 'image,labels'"))
        return tags
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        image_id = Path(row[0].strip()).stem
        names = row[1].split() if len(row) > 1 else []
        idx = []
        for name in names:
            if name not in classes.classes:
                problems.append(Problem(
                    f"{path}:{lineno}: tag {name!r} of image {image_id!r} is not a class in classes.json",
                    image_id=image_id,
                ))  # fmt: skip
            elif name == classes.background:
                problems.append(Problem(
                    f"{path}:{lineno}: tag {name!r} is the background class; tags never include it",
                    image_id=image_id,
                ))  # fmt: skip
            else:
                idx.append(classes.index(name))
        if image_id in tags:
            problems.append(Problem(f"{path}:{lineno}: duplicate id {image_id!r}", image_id=image_id))
        tags[image_id] = tuple(sorted(set(idx)))
    return tags


@register_reader("folder", _looks_like_folder)
def read_folder(root: Path) -> DatasetSource:
    """Index a generic-folder dataset (see the module docstring for the layout)."""
    root = Path(root)
    classes = ClassInfo.load(root / "classes.json")
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: missing; the folder layout keeps its images there")
    problems: list[str] = []

    images: dict[str, Path] = {}
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.stem in images:
            problems.append(Problem(f"{p}: duplicate id {p.stem!r} (also {images[p.stem].name})",
                                    image_id=p.stem))  # fmt: skip
            continue
        images[p.stem] = p
    mask_dir = root / "masks"
    masks = {p.stem: p for p in sorted(mask_dir.glob("*.png"))} if mask_dir.is_dir() else {}
    for stem, p in masks.items():
        if stem not in images:
            problems.append(Problem(f"{p}: mask without an image", image_id=stem))

    csv_path = root / "image_labels.csv"
    tags = read_tags_csv(csv_path, classes, problems) if csv_path.is_file() else {}
    for image_id in tags:
        if image_id not in images:
            problems.append(Problem(f"{csv_path}: image {image_id!r} has tags but no image file",
                                    image_id=image_id))  # fmt: skip

    def record(image_id: str) -> Record:
        return Record(image_id, images[image_id], masks.get(image_id), tags.get(image_id))

    splits: dict[str, list[Record]] = {}
    files: dict[str, Path] = {}
    for list_path in sorted(root.glob("*.txt")):
        if list_path.stem.lower() in ("readme", "license", "licence"):
            continue
        ids = read_split_list(list_path, problems)
        missing = [i for i in ids if i not in images]
        report_some(problems, [f"{list_path}: id {i!r} has no image in {image_dir}" for i in missing],
                    f"{list_path}: ... and {{n}} more ids without an image", (list_path.stem,), missing)  # fmt: skip
        splits[list_path.stem] = [record(i) for i in ids if i in images]
        files[list_path.stem] = list_path
    if "train" not in splits:
        problems.append(
            Problem(f"{root / 'train.txt'}: missing split list (one image id per line)", ("train",))
        )
    if not splits:
        splits["all"] = [record(i) for i in images]
    report_overlaps(splits, files, problems)
    return DatasetSource(
        "folder",
        root,
        classes,
        splits,
        LabelMap.identity(classes.num_classes, classes.ignore_index),
        problems,
        required_splits=("train",),
    )
