"""CamVid in the SegNet tutorial layout (11 classes; raw value 11 = unlabelled becomes ignore).

```
ROOT/train/*.png  trainannot/*.png  val/  valannot/  test/  testannot/
ROOT/train.txt    `image mask` path pairs, relative to ROOT (the SegNet files carry absolute
                  /SegNet/CamVid/... paths; those are resolved by their last two components)
```
"""

from __future__ import annotations

from pathlib import Path

from lesseg.data.classes import ClassInfo
from lesseg.data.readers.folder import read_split_list, report_overlaps
from lesseg.data.source import DatasetSource, LabelMap, Record, register_reader

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
UNLABELLED = 11
SPLITS = ("train", "val", "test")


def _looks_like_camvid(root: Path) -> bool:
    return (root / "trainannot").is_dir() or (root / "valannot").is_dir()


def _resolve(root: Path, token: str) -> Path:
    p = Path(token)
    if not p.is_absolute():
        return root / p
    return p if p.exists() else root / p.parent.name / p.name


@register_reader("camvid", _looks_like_camvid)
def read_camvid(root: Path) -> DatasetSource:
    """Index CamVid (SegNet layout): pair lists when present, else the image/annotation folders."""
    root = Path(root)
    classes = ClassInfo(CAMVID_CLASSES, ignore_index=255, background=None)
    problems: list[str] = []
    splits: dict[str, list[Record]] = {}
    files: dict[str, Path] = {}
    for split in SPLITS:
        list_path = root / f"{split}.txt"
        records = []
        if list_path.is_file():
            files[split] = list_path
            read_split_list(list_path, problems)  # empty lists and duplicate ids
            seen = set()
            for lineno, line in enumerate(list_path.read_text().splitlines(), start=1):
                parts = line.split()
                if not parts:
                    continue
                image = _resolve(root, parts[0])
                mask = _resolve(root, parts[1]) if len(parts) > 1 else None
                if image.stem in seen:
                    continue
                seen.add(image.stem)
                if not image.is_file():
                    problems.append(f"{list_path}:{lineno}: image {image} not found")
                    continue
                if mask is not None and not mask.is_file():
                    problems.append(f"{list_path}:{lineno}: mask {mask} not found")
                    mask = None
                records.append(Record(image.stem, image, mask))
        elif (root / split).is_dir():
            ann = root / f"{split}annot"
            for image in sorted((root / split).glob("*.png")):
                mask = ann / image.name
                records.append(Record(image.stem, image, mask if mask.is_file() else None))
        else:
            continue
        splits[split] = records
    if "train" not in splits:
        problems.append(f"{root}: no train split (train.txt or train/ with trainannot/)")
    report_overlaps(splits, files, problems)
    label_map = LabelMap.identity(len(CAMVID_CLASSES), 255, ignore_values=(UNLABELLED,))
    return DatasetSource("camvid", root, classes, splits, label_map, problems, required_splits=("train",))
