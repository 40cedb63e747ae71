"""ADE20K-150 (the SceneParsing benchmark, ``ADEChallengeData2016``) as MaskFormer set-ups have it.

```
ROOT/                                    = ADEChallengeData2016/
  images/training/ADE_train_00000001.jpg     (also validation/)
  annotations/training/ADE_train_00000001.png   raw 0 = unlabelled, 1..150 = the classes
  annotations_detectron2/training/...png   optional, MaskFormer's shifted copy: 0..149, 255 = unlabelled
```
``annotations/`` is read when present (the dataset's own files), else ``annotations_detectron2/``.
"""

from __future__ import annotations

from pathlib import Path

from lesseg.data.classes import ClassInfo
from lesseg.data.readers.folder import split_folders
from lesseg.data.source import DatasetSource, LabelMap, register_reader
from lesseg.errors import DataError

# The 150 classes in label order (objectInfo150.csv), each by the first of its names
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)  # fmt: skip
SPLITS = {"training": "train", "validation": "val"}  # folder -> alias
LABEL_DIRS = ("annotations", "annotations_detectron2")


def _looks_like_ade20k(root: Path) -> bool:
    return (root / "images" / "training").is_dir() and any((root / d).is_dir() for d in LABEL_DIRS)


def ade20k_label_map(label_dir: str) -> LabelMap:
    """Raw value -> class of ``annotations/`` (0 unlabelled, v -> v - 1) or of MaskFormer's
    ``annotations_detectron2/`` (v -> v, 255 unlabelled)."""
    n = len(ADE20K_CLASSES)
    if label_dir == "annotations":
        return LabelMap.from_mapping({v + 1: v for v in range(n)}, 255, ignore_values=(0,))
    return LabelMap.identity(n, 255)


@register_reader("ade20k", _looks_like_ade20k)
def read_ade20k(root: Path) -> DatasetSource:
    """Index ADE20K-150 (see the module docstring for the layout).

    Splits: ``training`` and ``validation`` (20,210 and 2,000 images), also as ``train`` and ``val``.
    """
    root = Path(root)
    label_dir = next((d for d in LABEL_DIRS if (root / d).is_dir()), None)
    if label_dir is None or not (root / "images").is_dir():
        raise DataError(f"{root}: not an ADE20K-150 folder; expected images/training/ and annotations/training/ "
                        "(the ADEChallengeData2016 folder)")  # fmt: skip
    problems: list[str] = []
    splits = split_folders(root / "images", root / label_dir, SPLITS, problems)
    classes = ClassInfo(ADE20K_CLASSES, ignore_index=255, background=None)
    return DatasetSource("ade20k", root, classes, splits, ade20k_label_map(label_dir), problems,
                         required_splits=("training",))  # fmt: skip
