"""Cityscapes, fine annotations: the 19 evaluation classes, or the 27 classes of unsupervised work.

```
ROOT/
  leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png   split: train, val, test, train_extra
  gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png    raw labelIds 0..33; 255 is the license
                                                                     plate (id -1 stored as uint8)
  gtCoarse/<split>/<city>/<city>_<seq>_<frame>_gtCoarse_labelIds.png  optional, with mask_root="gtCoarse"
```
Record ids are ``<city>_<seq>_<frame>``. The test split's public label files are dummies, so test images
have no mask; train_extra has none in gtFine either.
"""

from __future__ import annotations

from pathlib import Path

from lesseg.data.classes import ClassInfo
from lesseg.data.source import DatasetSource, LabelMap, Problem, Record, register_reader, report_some
from lesseg.errors import DataError, did_you_mean

# labelId -> name, labelIds 0..33 of the official cityscapesScripts table
LABEL_NAMES = (
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground",
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge",
    "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky",
    "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
)  # fmt: skip
LICENSE_PLATE = 255  # labelId -1 wraps to 255 in the uint8 PNGs
# the labelIds of the 19 evaluated classes, in trainId order 0..18
TRAIN_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
FIRST_27 = 7  # protocol "27": labelIds 7..33 become 0..26 (PiCIE, STEGO)
PROTOCOLS = ("19", "27")
IMAGE_SUFFIX = "_leftImg8bit.png"


def _looks_like_cityscapes(root: Path) -> bool:
    return (root / "leftImg8bit").is_dir()


def cityscapes_protocol(protocol: str) -> tuple[ClassInfo, LabelMap]:
    """Classes and raw-labelId decoding of protocol ``"19"`` or ``"27"``."""
    if protocol == "19":
        mapping = {label_id: i for i, label_id in enumerate(TRAIN_LABEL_IDS)}
    elif protocol == "27":
        mapping = {label_id: label_id - FIRST_27 for label_id in range(FIRST_27, len(LABEL_NAMES))}
    else:
        raise DataError(
            f"cityscapes: unknown protocol {protocol!r}{did_you_mean(protocol, PROTOCOLS)}; "
            f"valid: {', '.join(PROTOCOLS)}"
        )
    names = tuple(LABEL_NAMES[label_id] for label_id in sorted(mapping))
    ignored = tuple(v for v in range(len(LABEL_NAMES)) if v not in mapping) + (LICENSE_PLATE,)
    return ClassInfo(names, ignore_index=255, background=None), LabelMap.from_mapping(mapping, 255, ignored)


@register_reader("cityscapes", _looks_like_cityscapes)
def read_cityscapes(
    root: Path, protocol: str = "19", mask_root: str = "gtFine", mask_suffix: str | None = None
) -> DatasetSource:
    """Index Cityscapes (see the module docstring for the layout).

    Args:
        root: the folder holding leftImg8bit/ and gtFine/.
        protocol: ``"19"`` (default): the 19 evaluated classes (labelId -> trainId, the rest ignored);
            ``"27"``: labelIds 7..33 (road ... bicycle) as classes 0..26, labelIds 0..6 ignored, the
            protocol of unsupervised segmentation (PiCIE, STEGO).
        mask_root: the annotation folder next to leftImg8bit/: ``"gtFine"`` (default) or ``"gtCoarse"``.
        mask_suffix: what replaces ``_leftImg8bit.png`` in a label file's name; by default
            ``_<mask_root>_labelIds.png``.

    Every subfolder of leftImg8bit/ is a split (train, val, test, train_extra).
    """
    root = Path(root)
    classes, label_map = cityscapes_protocol(str(protocol))
    suffix = mask_suffix if mask_suffix is not None else f"_{mask_root}_labelIds.png"
    problems: list[str] = []
    image_root, label_root = root / "leftImg8bit", root / mask_root
    if not image_root.is_dir():
        raise DataError(f"{image_root}: missing; Cityscapes keeps its images there")
    if not label_root.is_dir():
        if mask_root != "gtFine":
            raise DataError(f"{label_root}: missing (mask_root={mask_root!r})")
        problems.append(Problem(f"{label_root}: missing; the images have no masks"))

    splits: dict[str, list[Record]] = {}
    for split_dir in sorted(p for p in image_root.iterdir() if p.is_dir()):
        split = split_dir.name
        records = []
        missing: list[tuple[Path, str]] = []  # (label file, image id)
        for city_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label_dir = label_root / split / city_dir.name
            labelled = split != "test" and (label_root / split).is_dir()
            label_names = {p.name for p in label_dir.iterdir()} if labelled and label_dir.is_dir() else set()
            for image in sorted(city_dir.glob(f"*{IMAGE_SUFFIX}")):
                image_id = image.name[: -len(IMAGE_SUFFIX)]
                if not image_id.startswith(f"{city_dir.name}_"):
                    problems.append(Problem(f"{image}: file name does not start with its city {city_dir.name!r}",
                                            image_id=image_id))  # fmt: skip
                mask = label_dir / f"{image_id}{suffix}"
                if labelled and mask.name not in label_names:
                    missing.append((mask, image_id))
                records.append(Record(image_id, image, mask if mask.name in label_names else None))
        report_some(problems, [f"{m}: label file missing for an image of split {split!r}" for m, _ in missing],
                    f"{label_root / split}: ... and {{n}} more missing label files", (split,),
                    [i for _, i in missing])  # fmt: skip
        if not records:
            problems.append(
                Problem(f"{split_dir}: no *{IMAGE_SUFFIX} images in <city>/ subfolders", (split,))
            )
        splits[split] = records
    if "train" not in splits:
        problems.append(Problem(f"{image_root / 'train'}: missing; no train split", ("train",)))
    return DatasetSource("cityscapes", root, classes, splits, label_map, problems, required_splits=("train",))
