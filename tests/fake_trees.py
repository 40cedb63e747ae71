"""Tiny fake copies of public datasets in their exact on-disk layout, for reader and pipeline tests.

Each builder writes a handful of 8x6 images with real-looking file names and returns the dataset root to pass
to ``read_dataset``. The raw label arrays are module constants so tests can state the expected decoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lesseg.data.imageio import color_palette

H, W = 6, 8


def _write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _write_gray(path: Path, raw: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(raw, dtype=np.uint8)).save(path)  # 2-D uint8: mode "L"


def _write_palette(path: Path, raw: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(raw, dtype=np.uint8))
    im.putpalette(color_palette(256).reshape(-1).tolist())  # turns the "L" image into a "P" one
    im.save(path)


def _object(
    cls: int, box: tuple[int, int, int, int], border: bool, base: np.ndarray | None = None
) -> np.ndarray:
    """A mask with class ``cls`` in rows y0:y1, cols x0:x1 on background 0, optionally with a 255 border."""
    m = np.zeros((H, W), dtype=np.uint8) if base is None else base.copy()
    y0, y1, x0, x1 = box
    if border:
        m[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = 255
    m[y0:y1, x0:x1] = cls
    return m


# ---------------------------------------------------------------- PASCAL VOC 2012
# SegmentationClass masks: palette PNGs with 255 borders around objects (VOC's "void")
VOC_PLAIN = {
    "2007_000032": _object(15, (3, 5, 5, 7), True, _object(1, (1, 3, 1, 4), True)),  # aeroplane + person
    "2007_000039": _object(20, (1, 5, 2, 6), True),  # tvmonitor
    "2007_000033": _object(1, (2, 4, 2, 6), True),  # aeroplane
}
# SegmentationClassAug masks (SBD): grayscale, no borders; 2011_003276 exists only there
VOC_AUG = {k: np.where(v == 255, 0, v).astype(np.uint8) for k, v in VOC_PLAIN.items()}
VOC_AUG["2011_003276"] = _object(12, (0, 6, 0, 3), False)  # dog
VOC_SPLITS = {
    "train": ["2007_000032", "2007_000039"],
    "val": ["2007_000033"],
    "trainval": ["2007_000032", "2007_000033", "2007_000039"],
    "test": ["2008_000001"],
}
VOC_TRAIN_AUG = ["2007_000032", "2007_000039", "2011_003276"]


def make_fake_voc(root: Path, aug: bool = True) -> Path:
    """A VOC2012 folder at ``root`` (create it under ``VOCdevkit/VOC2012`` to test root resolution).

    Splits train (2 images), val (1), trainval (3), test (1, no mask); with ``aug``, SegmentationClassAug/
    and ImageSets/SegmentationAug/train_aug.txt in DeepLab's two-path format (3 images, one aug-only).
    """
    root = Path(root)
    ids = sorted({i for ids in VOC_SPLITS.values() for i in ids} | (set(VOC_TRAIN_AUG) if aug else set()))
    for n, image_id in enumerate(ids):
        _write_image(root / "JPEGImages" / f"{image_id}.jpg", n)
    for image_id, raw in VOC_PLAIN.items():
        _write_palette(root / "SegmentationClass" / f"{image_id}.png", raw)
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True, exist_ok=True)
    for split, split_ids in VOC_SPLITS.items():
        (seg / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
    if aug:
        for image_id, raw in VOC_AUG.items():
            _write_gray(root / "SegmentationClassAug" / f"{image_id}.png", raw)
        seg_aug = root / "ImageSets" / "SegmentationAug"
        seg_aug.mkdir(parents=True, exist_ok=True)
        (seg_aug / "train_aug.txt").write_text(
            "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in VOC_TRAIN_AUG)
        )
    return root


# ---------------------------------------------------------------- Cityscapes
# raw labelIds: 0 unlabeled, 7 road, 9 parking, 11 building, 24 person, 26 car, 33 bicycle, 255 license plate
CITYSCAPES_RAW = {
    "aachen_000000_000019": np.array(
        [[0, 0, 7, 7, 7, 7, 26, 26]] * 3 + [[33, 33, 9, 9, 255, 255, 26, 26]] * 3, dtype=np.uint8
    ),
    "aachen_000001_000019": np.full((H, W), 11, dtype=np.uint8),
    "bochum_000000_000313": np.array([[24, 24, 24, 24, 7, 7, 7, 7]] * H, dtype=np.uint8),
    "frankfurt_000000_000294": np.array([[26] * 4 + [1] * 4] * H, dtype=np.uint8),
}
CITYSCAPES_SPLITS = {
    "train": ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"],
    "val": ["frankfurt_000000_000294"],
    "test": ["berlin_000000_000019"],
    "train_extra": ["augsburg_000000_000000"],
}


def make_fake_cityscapes(root: Path, coarse: bool = False) -> Path:
    """leftImg8bit/ and gtFine/ for train (3 images, 2 cities), val (1), test (1, dummy labels) and
    train_extra (1, no gtFine); gtFine also holds the _color.png and _polygons.json files of the real data.
    With ``coarse``, gtCoarse/ labels for train and train_extra (all road)."""
    root = Path(root)
    n = 0
    for split, ids in CITYSCAPES_SPLITS.items():
        for image_id in ids:
            city = image_id.split("_")[0]
            _write_image(root / "leftImg8bit" / split / city / f"{image_id}_leftImg8bit.png", n)
            n += 1
            gt = root / "gtFine" / split / city
            if split == "test":  # the public test labels are dummies
                _write_gray(gt / f"{image_id}_gtFine_labelIds.png", np.zeros((H, W), np.uint8))
            elif split != "train_extra":
                _write_gray(gt / f"{image_id}_gtFine_labelIds.png", CITYSCAPES_RAW[image_id])
                Image.new("RGBA", (W, H)).save(gt / f"{image_id}_gtFine_color.png")
                (gt / f"{image_id}_gtFine_polygons.json").write_text("{}")
            if coarse and split in ("train", "train_extra"):
                _write_gray(
                    root / "gtCoarse" / split / city / f"{image_id}_gtCoarse_labelIds.png",
                    np.full((H, W), 7, np.uint8),
                )
    return root


# ---------------------------------------------------------------- COCO-Stuff 164k
# raw values: category id - 1; 0 person, 2 car, 91 banner, 119 fog, 181 wood, 255 unlabelled
COCO_RAW = {
    "000000000009": np.array([[0] * 4 + [91] * 4] * 3 + [[181] * 4 + [255] * 4] * 3, dtype=np.uint8),
    "000000000025": np.array([[2, 2, 2, 2, 119, 119, 119, 119]] * H, dtype=np.uint8),
    "000000000139": np.array([[0] * 8] * 2 + [[181] * 8] * 4, dtype=np.uint8),
}
COCO_SPLITS = {"train2017": ["000000000009", "000000000025"], "val2017": ["000000000139"]}
COCO_CURATED = {"train2017": ["000000000025"], "val2017": ["000000000139"]}


def make_fake_cocostuff(
    root: Path, label_dir: str = "stuffthingmaps_trainval2017", curated: bool = True
) -> Path:
    """images/{train2017,val2017}/ (2 + 1 images) with label PNGs in ``label_dir``/<split>/
    (``stuffthingmaps_trainval2017`` or ``annotations``); with ``curated``, PiCIE's curated lists."""
    root = Path(root)
    n = 0
    for split, ids in COCO_SPLITS.items():
        for image_id in ids:
            _write_image(root / "images" / split / f"{image_id}.jpg", n)
            n += 1
            _write_gray(root / label_dir / split / f"{image_id}.png", COCO_RAW[image_id])
        if curated:
            path = root / "curated" / split / "Coco164kFull_Stuff_Coarse_7.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{i}\n" for i in COCO_CURATED[split]))
    return root


# ADE20K raw values: 0 unlabelled, v -> class v - 1 (1 wall, 3 sky, 13 person, 150 flag)
ADE_RAW = {
    "ADE_train_00000001": np.array([[1] * 4 + [3] * 4] * 3 + [[13] * 4 + [0] * 4] * 3, dtype=np.uint8),
    "ADE_train_00000002": np.array([[150] * W] * H, dtype=np.uint8),
    "ADE_val_00000001": np.array([[3] * W] * 2 + [[1] * W] * 4, dtype=np.uint8),
}
ADE_SPLITS = {"training": ["ADE_train_00000001", "ADE_train_00000002"], "validation": ["ADE_val_00000001"]}


def make_fake_ade20k(root: Path, detectron2: bool = False) -> Path:
    """ADEChallengeData2016/: images/{training,validation}/*.jpg with annotations/<split>/*.png, or
    (``detectron2``) only MaskFormer's annotations_detectron2/ (values shifted down by one, 0 -> 255)."""
    root = Path(root) / "ADEChallengeData2016"
    n = 0
    for split, ids in ADE_SPLITS.items():
        for image_id in ids:
            _write_image(root / "images" / split / f"{image_id}.jpg", n)
            n += 1
            raw = ADE_RAW[image_id]
            if detectron2:
                _write_gray(root / "annotations_detectron2" / split / f"{image_id}.png", raw - 1)  # 0 -> 255
            else:
                _write_gray(root / "annotations" / split / f"{image_id}.png", raw)
    return root


# COCO-Stuff-10K label PNGs: 0..170 in category-id order (0 person, 80 banner, 170 wood), 255 unlabelled
COCO10K_RAW = {
    "COCO_train2014_000000000077": np.array([[0] * 4 + [80] * 4] * 3 + [[170] * 4 + [255] * 4] * 3, np.uint8),
    "COCO_train2014_000000000078": np.array([[2] * W] * H, dtype=np.uint8),
    "COCO_train2014_000000000079": np.array([[80] * W] * H, dtype=np.uint8),
}
COCO10K_SPLITS = {"train": ["COCO_train2014_000000000077", "COCO_train2014_000000000078"],
                  "test": ["COCO_train2014_000000000079"]}  # fmt: skip


def make_fake_cocostuff10k(root: Path) -> Path:
    """coco_stuff_10k/: images_detectron2/{train,test}/*.jpg and annotations_detectron2/<split>/*.png."""
    root = Path(root) / "coco_stuff_10k"
    n = 0
    for split, ids in COCO10K_SPLITS.items():
        for image_id in ids:
            _write_image(root / "images_detectron2" / split / f"{image_id}.jpg", n)
            n += 1
            _write_gray(root / "annotations_detectron2" / split / f"{image_id}.png", COCO10K_RAW[image_id])
    return root
