"""COCO-Stuff 164k: 171 fine classes (80 things, 91 stuff), or the 27 coarse classes of unsupervised work.

```
ROOT/
  images/train2017/<12-digit id>.jpg    e.g. 000000000139.jpg (also val2017/, test2017/ if present)
  stuffthingmaps_trainval2017/train2017/<id>.png   label PNGs: raw value = COCO category id - 1
      (or annotations/train2017/<id>.png)          (0 = person ... 181 = wood), 255 = unlabelled
  curated/train2017/Coco164kFull_Stuff_Coarse_7.txt   optional: PiCIE's curated image lists
  curated/val2017/Coco164kFull_Stuff_Coarse_7.txt
```
COCO never used 11 of its 91 thing ids (12 street sign, 26 hat, 29 shoe, 30 eye glasses, 45 plate,
66 mirror, 68 window, 69 desk, 71 door, 83 blender, 91 hair brush): their raw values are invalid.
"""

from __future__ import annotations

from pathlib import Path

from lesseg.data.classes import ClassInfo
from lesseg.data.readers.folder import paired_records, read_split_list, report_overlaps
from lesseg.data.source import DatasetSource, LabelMap, Problem, Record, register_reader, report_some
from lesseg.errors import DataError, did_you_mean

# COCO-Stuff's label names by raw value (category id - 1), as in the dataset's labels.txt
FINE_NAMES = (
    # things, ids 1..91
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe",
    "eye glasses", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "mirror", "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "blender", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush",
    # stuff, ids 92..182
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard",
    "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard",
    "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone",
    "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass",
    "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic",
    "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad",
    "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip
UNUSED_THING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
USED_RAW = tuple(v for v in range(len(FINE_NAMES)) if v + 1 not in UNUSED_THING_IDS)  # the 171 classes
UNLABELLED = 255

# The 27 coarse classes, in the index order of IIC / PiCIE / STEGO, each with its fine classes. Things use
# COCO's official supercategories, stuff COCO-Stuff's official hierarchy (note: fog belongs to water, not
# sky). Verified for all 171 classes against STEGO's src/data.py (Coco.fine_to_coarse, raw value -> coarse
# index) and against COCO-Stuff's category list with supercategories (the `categories` of its
# stuff_*2017.json); the fine names against labels.txt of github.com/nightrome/cocostuff.
COARSE_GROUPS: dict[str, tuple[str, ...]] = {
    # things
    "electronic": ("tv", "laptop", "mouse", "remote", "keyboard", "cell phone"),
    "appliance": ("microwave", "oven", "toaster", "sink", "refrigerator"),
    "food": ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake"),
    "furniture": ("chair", "couch", "potted plant", "bed", "dining table", "toilet"),
    "indoor": ("book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"),
    "kitchen": ("bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl"),
    "accessory": ("backpack", "umbrella", "handbag", "tie", "suitcase"),
    "animal": ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    "outdoor": ("traffic light", "fire hydrant", "stop sign", "parking meter", "bench"),
    "person": ("person",),
    "sports": (
        "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
        "skateboard", "surfboard", "tennis racket",
    ),
    "vehicle": ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"),
    # stuff
    "ceiling": ("ceiling-other", "ceiling-tile"),
    "floor": ("carpet", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood"),
    "food-stuff": ("food-other", "fruit", "salad", "vegetable"),
    "furniture-stuff": (
        "cabinet", "counter", "cupboard", "desk-stuff", "door-stuff", "furniture-other", "light",
        "mirror-stuff", "shelf", "stairs", "table",
    ),
    "raw-material": ("cardboard", "metal", "paper", "plastic"),
    "textile": (
        "banner", "blanket", "cloth", "clothes", "curtain", "mat", "napkin", "pillow", "rug", "towel",
        "textile-other",
    ),
    "wall": ("wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood"),
    "window": ("window-blind", "window-other"),
    "building": ("bridge", "building-other", "house", "roof", "skyscraper", "tent"),
    "ground": (
        "dirt", "gravel", "ground-other", "mud", "pavement", "platform", "playingfield", "railroad", "road",
        "sand", "snow",
    ),
    "plant": ("branch", "bush", "flower", "grass", "leaves", "moss", "plant-other", "straw", "tree"),
    "sky": ("clouds", "sky-other"),
    "solid": ("hill", "mountain", "rock", "solid-other", "stone", "wood"),
    "structural": ("cage", "fence", "net", "railing", "structural-other"),
    "water": ("fog", "river", "sea", "water-other", "waterdrops"),
}  # fmt: skip
PROTOCOLS = ("171", "27")
SPLIT_NAMES = ("train2017", "val2017")
LABEL_DIRS = ("stuffthingmaps_trainval2017", "annotations")
CURATED_LIST = "Coco164kFull_Stuff_Coarse_7.txt"


def _looks_like_cocostuff(root: Path) -> bool:
    if (root / "stuffthingmaps_trainval2017").is_dir():
        return True
    return (root / "annotations").is_dir() and any((root / "images" / s).is_dir() for s in SPLIT_NAMES)


def cocostuff_protocol(protocol: str) -> tuple[ClassInfo, LabelMap]:
    """Classes and raw-value decoding of protocol ``"171"`` or ``"27"``."""
    if protocol == "171":
        mapping = {raw: i for i, raw in enumerate(USED_RAW)}
        names = tuple(FINE_NAMES[raw] for raw in USED_RAW)
    elif protocol == "27":
        coarse_of = {fine: c for c, group in enumerate(COARSE_GROUPS.values()) for fine in group}
        mapping = {raw: coarse_of[FINE_NAMES[raw]] for raw in USED_RAW}
        names = tuple(COARSE_GROUPS)
    else:
        raise DataError(
            f"cocostuff: unknown protocol {protocol!r}{did_you_mean(protocol, PROTOCOLS)}; "
            f"valid: {', '.join(PROTOCOLS)}"
        )
    classes = ClassInfo(names, ignore_index=255, background=None)
    return classes, LabelMap.from_mapping(mapping, 255, ignore_values=(UNLABELLED,))


def _label_dir(root: Path, split: str) -> Path | None:
    for name in LABEL_DIRS:
        if (root / name / split).is_dir():
            return root / name / split
    return None


@register_reader("cocostuff", _looks_like_cocostuff)
def read_cocostuff(root: Path, protocol: str = "171") -> DatasetSource:
    """Index COCO-Stuff 164k (see the module docstring for the layout).

    Args:
        root: the folder holding images/ and stuffthingmaps_trainval2017/ (or annotations/).
        protocol: ``"171"`` (default): the 80 thing and 91 stuff classes, numbered 0..170 in category-id
            order; ``"27"``: the 27 coarse classes of IIC / PiCIE / STEGO (12 thing supercategories, then
            15 stuff supercategories), every fine class merged into its supercategory.

    Splits: every folder in images/ (``train2017``, ``val2017``, ...), each also under its name without
    ``2017`` (``train``, ``val``: the same records); ``curated_train`` / ``curated_val`` when PiCIE's
    curated/<split>/Coco164kFull_Stuff_Coarse_7.txt lists are present.
    """
    root = Path(root)
    classes, label_map = cocostuff_protocol(str(protocol))
    image_root = root / "images"
    if not image_root.is_dir():
        raise DataError(f"{image_root}: missing; COCO-Stuff keeps its images in images/<split>/")
    problems: list[str] = []

    splits: dict[str, list[Record]] = {}
    for split_dir in sorted(p for p in image_root.iterdir() if p.is_dir()):
        splits[split_dir.name] = paired_records(split_dir, _label_dir(root, split_dir.name), split_dir.name,
                                                problems)  # fmt: skip
    for split in SPLIT_NAMES:
        if split in splits and _label_dir(root, split) is None:
            looked = ", ".join(str(root / d / split) for d in LABEL_DIRS)
            problems.append(Problem(f"{root}: no labels for {split} (looked in {looked})", (split,)))
    if "train2017" not in splits:
        problems.append(Problem(f"{image_root / 'train2017'}: missing; no train2017 split", ("train2017",)))

    files: dict[str, Path] = {}
    for split in list(splits):
        alias = split.removesuffix("2017")
        if alias != split and alias not in splits:
            splits[alias] = splits[split]
    for split, name in (("train2017", "curated_train"), ("val2017", "curated_val")):
        list_path = root / "curated" / split / CURATED_LIST
        if not list_path.is_file():
            continue
        by_id = {r.id: r for r in splits.get(split, [])}
        ids = read_split_list(list_path, problems, split=name)
        unknown = [i for i in ids if i not in by_id]
        report_some(problems, [f"{list_path}: id {i!r} has no image in {image_root / split}" for i in unknown],
                    f"{list_path}: ... and {{n}} more ids without an image", (name,), unknown)  # fmt: skip
        splits[name] = [by_id[i] for i in ids if i in by_id]
        files[name] = list_path
    report_overlaps({k: splits[k] for k in files}, files, problems)
    return DatasetSource(
        "cocostuff", root, classes, splits, label_map, problems, required_splits=("train2017",)
    )
