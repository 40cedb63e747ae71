"""PASCAL VOC 2012 segmentation: 21 classes, ``background`` at index 0, with SBD's augmented masks if present.

```
ROOT/  the VOC2012 folder itself, a VOCdevkit/ holding it, or a folder holding VOCdevkit/VOC2012/
  JPEGImages/<id>.jpg                     e.g. 2007_000032.jpg
  SegmentationClass/<id>.png              palette PNGs: palette index = class, 255 = object border / void
  SegmentationClassAug/<id>.png           optional (SBD): 8-bit grayscale class-index PNGs, 255 = ignore
  ImageSets/Segmentation/<split>.txt      train, val, trainval (test): one id per line
  ImageSets/SegmentationAug/<split>.txt   optional, e.g. train_aug: one id per line, or DeepLab's
                                          `/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png` pairs
```
Tags come from the masks (never ``background``); an image with no mask file (the test split) has none.
"""

from __future__ import annotations

from pathlib import Path

from lesseg.data.classes import ClassInfo
from lesseg.data.readers.folder import read_split_list, report_overlaps
from lesseg.data.source import DatasetSource, LabelMap, Problem, Record, register_reader, report_some
from lesseg.errors import DataError, did_you_mean

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
MASK_MODES = ("auto", "aug", "plain")


def _candidates(root: Path) -> tuple[Path, ...]:
    return (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012")


def _looks_like_voc(root: Path) -> bool:
    return (root / "JPEGImages").is_dir() or any(p.is_dir() for p in _candidates(root)[1:])


def find_voc_root(root: Path) -> Path:
    """The VOC2012 folder under ``root`` (``root`` itself, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``)."""
    for base in _candidates(root):
        if (base / "JPEGImages").is_dir():
            return base
    tried = ", ".join(str(p / "JPEGImages") for p in _candidates(root))
    raise DataError(f"{root}: not a PASCAL VOC folder; no JPEGImages/ found (looked for {tried})")


def _report_ids(list_path: Path, split: str, ids: list[str], what: str, problems: list[str]) -> None:
    report_some(problems, [f"{list_path}: id {i!r} {what}" for i in ids],
                f"{list_path}: ... and {{n}} more ids that {what.split(' in ')[0]}", (split,), ids)  # fmt: skip


@register_reader("voc", _looks_like_voc)
def read_voc(root: Path, masks: str = "auto") -> DatasetSource:
    """Index PASCAL VOC 2012 (see the module docstring for the layout).

    Args:
        root: the VOC2012 folder, a VOCdevkit folder holding it, or a folder holding VOCdevkit/VOC2012.
        masks: which masks to use. ``"auto"`` (default): SegmentationClassAug/ when it exists, falling back
            to SegmentationClass/ for an image it lacks; ``"aug"``: only SegmentationClassAug/ (an error when
            it is missing); ``"plain"``: only the original SegmentationClass/ palette PNGs.

    Splits: every list in ImageSets/Segmentation/ (``train``, ``val``, ``trainval``, ``test``) and in
    ImageSets/SegmentationAug/ (e.g. ``train_aug``); an augmented list whose name is taken by a different
    original list is exposed as ``<name>_aug``. The returned source's root is the VOC2012 folder.
    """
    if masks not in MASK_MODES:
        raise DataError(
            f"voc: unknown masks option {masks!r}{did_you_mean(str(masks), MASK_MODES)}; "
            f"valid: {', '.join(MASK_MODES)}"
        )
    base = find_voc_root(Path(root))
    classes = ClassInfo(VOC_CLASSES, ignore_index=255, background="background")
    problems: list[str] = []

    image_dir = base / "JPEGImages"
    images = {p.stem: p for p in sorted(image_dir.glob("*.jpg"))}
    aug_dir, plain_dir = base / "SegmentationClassAug", base / "SegmentationClass"
    if masks == "aug" and not aug_dir.is_dir():
        raise DataError(
            f"{aug_dir}: missing; masks='aug' needs SBD's augmented masks there "
            f"(or use masks='plain' for {plain_dir.name}/)"
        )
    mask_dirs = {"auto": [aug_dir, plain_dir], "aug": [aug_dir], "plain": [plain_dir]}[masks]
    mask_dirs = [d for d in mask_dirs if d.is_dir()]
    if not mask_dirs:
        wanted = " or ".join(d.name for d in {"auto": [aug_dir, plain_dir], "plain": [plain_dir]}[masks])
        problems.append(Problem(f"{base}: no {wanted} folder; the images have no masks and no tags"))
    mask_files: dict[str, Path] = {}
    for d in reversed(mask_dirs):  # the preferred folder goes last and wins
        mask_files.update((p.stem, p) for p in sorted(d.glob("*.png")))

    splits: dict[str, list[Record]] = {}
    files: dict[str, Path] = {}
    split_ids: dict[str, set[str]] = {}
    sets = base / "ImageSets"
    for folder, suffix in ((sets / "Segmentation", ""), (sets / "SegmentationAug", "_aug")):
        if not folder.is_dir():
            continue
        for list_path in sorted(folder.glob("*.txt")):
            ids = read_split_list(list_path, problems, absolute_ok=True)  # SBD lists: /JPEGImages/<id>.jpg
            name = list_path.stem
            if name in splits:
                if split_ids[name] == set(ids):
                    continue  # the same list in both folders
                if suffix and not name.endswith(suffix) and name + suffix not in splits:
                    name += suffix
                else:
                    problems.append(Problem(
                        f"{list_path}: split {name!r} is already defined by {files[name]}; ignored", (name,)
                    ))  # fmt: skip
                    continue
            _report_ids(list_path, name, [i for i in ids if i not in images], f"has no image in {image_dir}",
                        problems)  # fmt: skip
            if mask_dirs and name != "test":
                where = " or ".join(d.name for d in mask_dirs)
                missing = [i for i in ids if i in images and i not in mask_files]
                _report_ids(list_path, name, missing, f"has no mask in {where}", problems)
            splits[name] = [Record(i, images[i], mask_files.get(i)) for i in ids if i in images]
            files[name] = list_path
            split_ids[name] = set(ids)
    if not splits:
        problems.append(Problem(f"{sets / 'Segmentation'}: no split lists (train.txt, val.txt, ...)"))
    elif "train" not in splits:
        problems.append(Problem(f"{sets / 'Segmentation' / 'train.txt'}: missing split list (one image id per "
                                "line)", ("train",)))  # fmt: skip
    # trainval and its augmented variants contain other splits by design
    report_overlaps({k: v for k, v in splits.items() if not k.startswith("trainval")}, files, problems)
    return DatasetSource(
        "voc",
        base,
        classes,
        splits,
        LabelMap.identity(len(VOC_CLASSES), 255),
        problems,
        required_splits=("train",),
    )
