"""COCO-Stuff-10K (171 classes, 9,000 train / 1,000 test) as MaskFormer set-ups have it.

```
ROOT/                                  = coco/coco_stuff_10k/
  images_detectron2/train/COCO_train2014_000000000077.jpg   (also test/)
  annotations_detectron2/train/COCO_train2014_000000000077.png
      label PNGs: 0..170 = the 171 classes in category-id order (as COCO-Stuff 164k's protocol "171"),
      255 = unlabelled
```
The dataset as distributed (``images/``, ``annotations/*.mat``, ``imageLists/``) holds MATLAB files: convert
them once with MaskFormer's ``datasets/prepare_coco_stuff_10k_sem_seg.py``, which writes the folders above.
"""

from __future__ import annotations

from pathlib import Path

from lesseg.data.readers.cocostuff import cocostuff_protocol
from lesseg.data.readers.folder import split_folders
from lesseg.data.source import DatasetSource, LabelMap, register_reader
from lesseg.errors import DataError

IMAGES, LABELS = "images_detectron2", "annotations_detectron2"
SPLITS = {"train": None, "test": "val"}  # folder -> alias (SimFormer and MaskFormer evaluate on test as val)


def _looks_like_cocostuff10k(root: Path) -> bool:
    return (root / IMAGES).is_dir() or (root / "imageLists").is_dir()


@register_reader("cocostuff10k", _looks_like_cocostuff10k)
def read_cocostuff10k(root: Path) -> DatasetSource:
    """Index COCO-Stuff-10K (see the module docstring for the layout).

    Splits: ``train`` (9,000 images) and ``test`` (1,000), the latter also as ``val``.
    """
    root = Path(root)
    if not (root / IMAGES).is_dir():
        hint = (" it holds the dataset as distributed (annotations/*.mat): convert it with MaskFormer's "
                "datasets/prepare_coco_stuff_10k_sem_seg.py first;") if (root / "imageLists").is_dir() else ""  # fmt: skip
        raise DataError(f"{root / IMAGES}: missing;{hint} COCO-Stuff-10K is read from {IMAGES}/<split>/ and "
                        f"{LABELS}/<split>/")  # fmt: skip
    classes, _ = cocostuff_protocol("171")
    problems: list[str] = []
    splits = split_folders(root / IMAGES, root / LABELS, SPLITS, problems)
    label_map = LabelMap.identity(classes.num_classes, 255)
    return DatasetSource(
        "cocostuff10k", root, classes, splits, label_map, problems, required_splits=("train",)
    )
