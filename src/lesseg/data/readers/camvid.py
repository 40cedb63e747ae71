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
from lesseg.data.source import DatasetSource, LabelMap, Problem, Record, register_reader

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
UNLABELLED = 11
SPLITS = ("train", "val", "test")


def _looks_like_camvid(root: Path) -> bool:
    return (root / "trainannot").is_dir() or (root / "valannot").is_dir()


def _resolve(root: Path, token: str) -> Path | None:
    """The file a list entry names, inside ``root``: relative paths from ``root``, absolute ones (SegNet's
    /SegNet/CamVid/...) by their last two components; ``None`` for a path that climbs out (``..``)."""
    p = Path(token)
    if ".." in p.parts:
        return None
    return root / p.parent.name / p.name if p.is_absolute() else root / p


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
            read_split_list(list_path, problems, absolute_ok=True)  # empty, duplicate, outside the root
            seen = set()
            for lineno, line in enumerate(list_path.read_text().splitlines(), start=1):
                parts = line.split()
                if not parts:
                    continue
                image = _resolve(root, parts[0])
                mask = _resolve(root, parts[1]) if len(parts) > 1 else None
                if image is None:
                    continue  # read_split_list reported it
                if image.stem in seen:
                    continue
                seen.add(image.stem)
                if not image.is_file():
                    problems.append(Problem(f"{list_path}:{lineno}: image {image} not found", (split,),
                                            image.stem))  # fmt: skip
                    continue
                if len(parts) > 1 and (mask is None or not mask.is_file()):
                    what = "points outside the dataset folder" if mask is None else "not found"
                    problems.append(Problem(f"{list_path}:{lineno}: mask {mask or parts[1]} {what}", (split,),
                                            image.stem))  # fmt: skip
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
        problems.append(Problem(f"{root}: no train split (train.txt or train/ with trainannot/)", ("train",)))
    report_overlaps(splits, files, problems)
    label_map = LabelMap.identity(len(CAMVID_CLASSES), 255, ignore_values=(UNLABELLED,))
    return DatasetSource("camvid", root, classes, splits, label_map, problems, required_splits=("train",))
