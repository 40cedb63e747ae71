"""What a reader returns: the records of each split, the class metadata and how to decode masks."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesseg.data.classes import ClassInfo
from lesseg.data.imageio import load_label_png
from lesseg.errors import DataError, did_you_mean


@dataclass(frozen=True)
class Record:
    """One image of a split and the supervision that exists for it on disk.

    Args:
        id: the image's id, unique within its dataset.
        image: path of the RGB image.
        mask: path of its label map, or ``None`` when it has no pixel labels.
        tags: class indices of its image-level tags (never the background), or ``None`` to derive them
            from the mask.
    """

    id: str
    image: Path
    mask: Path | None = None
    tags: tuple[int, ...] | None = None


class LabelMap:
    """Decodes the raw values of a dataset's label PNGs into class indices.

    Args:
        lut: 256 entries, raw value -> class index, ``ignore_index`` for pixels without a label.
        valid: 256 booleans, which raw values may occur at all (for ``data check``).
        ignore_index: the value that marks ignored pixels after decoding.
    """

    def __init__(self, lut: np.ndarray, valid: np.ndarray, ignore_index: int = 255):
        self.lut = np.asarray(lut, dtype=np.uint8).reshape(256)
        self.valid = np.asarray(valid, dtype=bool).reshape(256)
        self.ignore_index = ignore_index

    @classmethod
    def identity(
        cls, num_classes: int, ignore_index: int = 255, ignore_values: tuple[int, ...] = ()
    ) -> LabelMap:
        """Raw value == class index; ``ignore_values`` (and ``ignore_index``) become ignore."""
        lut = np.full(256, ignore_index, dtype=np.uint8)
        lut[:num_classes] = np.arange(num_classes)
        valid = np.zeros(256, dtype=bool)
        valid[:num_classes] = True
        for v in (*ignore_values, ignore_index):
            lut[v] = ignore_index
            valid[v] = True
        return cls(lut, valid, ignore_index)

    @classmethod
    def from_mapping(
        cls, mapping: dict[int, int], ignore_index: int = 255, ignore_values: tuple[int, ...] = ()
    ) -> LabelMap:
        """Raw values in ``mapping`` go to their class; ``ignore_values`` are valid but ignored; the rest invalid."""
        lut = np.full(256, ignore_index, dtype=np.uint8)
        valid = np.zeros(256, dtype=bool)
        for raw, cls_idx in mapping.items():
            lut[raw] = cls_idx
            valid[raw] = True
        for v in ignore_values:
            valid[v] = True
        return cls(lut, valid, ignore_index)

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Class indices (int64, ``ignore_index`` for unlabelled pixels) of a raw uint8 label map; values
        outside the classes become ignore (see :meth:`DatasetSource.load_mask`, which refuses them)."""
        return self.lut[raw].astype(np.int64)

    def invalid_values(self, raw: np.ndarray) -> list[int]:
        """Raw values present in ``raw`` that this dataset's labels may not contain."""
        present = np.flatnonzero(np.bincount(raw.reshape(-1), minlength=256))
        return [int(v) for v in present if not self.valid[v]]


def invalid_labels_message(path, bad: list[int], num_classes: int) -> str:
    """What ``data check`` and a run say of a mask holding values outside the classes."""
    shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
    return f"{path}: label values outside the {num_classes} classes: {shown}"


@dataclass
class DatasetSource:
    """A dataset as found on disk: its format, classes, splits and label decoding.

    ``problems`` collects what the reader found wrong while indexing (a listed image with no file, a
    duplicate id, ...) instead of raising at the first one, so ``lesseg data check`` can list them all.
    """

    format: str
    root: Path
    classes: ClassInfo
    splits: dict[str, list[Record]]
    label_map: LabelMap
    problems: list[str] = field(default_factory=list)
    required_splits: tuple[str, ...] = ()

    def split(self, name: str) -> list[Record]:
        """The records of split ``name``; ``"a+b"`` joins splits (PiCIE trains on Cityscapes'
        ``test+train_extra`` and evaluates on ``val+train``)."""
        if "+" in name:
            return [r for part in name.split("+") for r in self.split(part)]
        if name not in self.splits:
            valid = ", ".join(sorted(self.splits)) or "none found"
            raise DataError(
                f"{self.root}: no split {name!r}{did_you_mean(name, self.splits)}; splits here: {valid}"
            )
        return self.splits[name]

    def load_mask(self, record: Record) -> np.ndarray | None:
        """The record's mask as int64 class indices with ``ignore_index``, or ``None`` when it has none. A
        value outside the classes is a :class:`DataError` naming the file, never a silent ignore."""
        if record.mask is None:
            return None
        raw = load_label_png(record.mask)
        if not self.label_map.valid[raw].all():
            bad = self.label_map.invalid_values(raw)
            raise DataError(invalid_labels_message(record.mask, bad, self.classes.num_classes))
        return self.label_map.decode(raw)

    def tags_of(self, record: Record, mask: np.ndarray | None = None) -> tuple[int, ...] | None:
        """Image-level tags: the record's own, else the classes present in its mask, never background."""
        if record.tags is not None:
            return record.tags
        if mask is None:
            mask = self.load_mask(record)
            if mask is None:
                return None
        return tags_from_mask(mask, self.classes)


MAX_LISTED = 20  # problems of one kind listed one by one before they are counted


class Problem(str):
    """A problem a reader or a check found: the string is the message (it names the file), the attributes
    say what it concerns, so a run can tell whether it reads the broken part.

    Args:
        text: the message, e.g. ``"train.txt:3: id 'x' has no image in images/"``.
        splits: the splits it is about; a run is concerned when it reads all of them (``()``: every run).
        image_id: the image it is about; a run is concerned when it reads that image (or, for an image
            missing from a split it reads, would have).
        more: the summary line for listing many of one kind (``"... and {n} more ids without an image"``).
    """

    splits: tuple[str, ...]
    image_id: str | None
    more: str | None

    def __new__(cls, text: str, splits: tuple[str, ...] = (), image_id: str | None = None,
                more: str | None = None) -> Problem:  # fmt: skip
        self = super().__new__(cls, text)
        self.splits, self.image_id, self.more = tuple(splits), image_id, more
        return self

    def concerns(self, splits: set[str], image_ids: set[str]) -> bool:
        """Whether a run that reads ``splits`` (with the images ``image_ids``) meets this problem."""
        if not set(self.splits) <= splits:
            return False
        return self.image_id is None or bool(self.splits) or self.image_id in image_ids


def report_some(problems: list[str], messages: list[str], rest: str, splits: tuple[str, ...] = (),
                ids: list[str | None] | None = None) -> None:  # fmt: skip
    """Add every message as a :class:`Problem` of ``splits`` (``ids``: the image each is about), to be
    listed up to ``MAX_LISTED`` and then counted in one line (``rest`` gets ``{n}``, see :func:`listed`)."""
    ids = ids if ids is not None else [None] * len(messages)
    problems.extend(Problem(m, splits, i, more=rest) for m, i in zip(messages, ids))


def listed(problems: list[str]) -> list[str]:
    """``problems`` for display: of the problems that share a ``more`` line, the first ``MAX_LISTED``,
    then that line counting the rest, in place of the first one left out."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for p in problems:
        more = getattr(p, "more", None)
        if more is None:
            out.append(p)
            continue
        seen[more] = seen.get(more, 0) + 1
        if seen[more] <= MAX_LISTED:
            out.append(p)
        elif seen[more] == MAX_LISTED + 1:
            out.append(more)  # the count is filled in below
    counts = {m: n - MAX_LISTED for m, n in seen.items() if n > MAX_LISTED}
    return [p.format(n=counts[p]) if not isinstance(p, Problem) and p in counts else p for p in out]


def tags_from_mask(mask: np.ndarray, classes: ClassInfo) -> tuple[int, ...]:
    counts = np.bincount(mask[mask != classes.ignore_index].reshape(-1), minlength=classes.num_classes)
    bg = classes.background_index
    return tuple(int(c) for c in np.flatnonzero(counts[: classes.num_classes]) if c != bg)


Reader = Callable[..., DatasetSource]
READERS: dict[str, Reader] = {}
DETECTORS: dict[str, Callable[[Path], bool]] = {}


def register_reader(name: str, detect: Callable[[Path], bool]):
    """Register a reader under ``name``; ``detect(root)`` says whether a folder looks like its layout."""

    def wrap(fn: Reader) -> Reader:
        READERS[name] = fn
        DETECTORS[name] = detect
        return fn

    return wrap


def detect_format(root: Path) -> str:
    found = [name for name, detect in DETECTORS.items() if detect(root)]
    if len(found) == 1:
        return found[0]
    valid = ", ".join(sorted(READERS))
    if not found:
        raise DataError(f"{root}: cannot tell the dataset layout; pass --format with one of: {valid}")
    raise DataError(
        f"{root}: looks like several layouts ({', '.join(found)}); pass --format with one of: {valid}"
    )


def read_dataset(root: str | Path, format: str = "auto", **options) -> DatasetSource:
    """Index the dataset at ``root``.

    Args:
        root: the dataset's top folder.
        format: ``auto`` to detect, or one of ``folder``, ``voc``, ``cityscapes``, ``cocostuff``,
            ``cocostuff10k``, ``ade20k``, ``camvid``.
        options: reader-specific options (e.g. ``protocol="27"`` for Cityscapes and COCO-Stuff).
    """
    import lesseg.data.readers  # noqa: F401  (registers the readers)

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    if format == "auto":
        format = detect_format(root)
    if format not in READERS:
        raise DataError(
            f"unknown dataset format {format!r}{did_you_mean(format, READERS)}; valid: {', '.join(sorted(READERS))}"
        )
    reader = READERS[format]
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    for key in options:
        if key not in accepted:
            valid = ", ".join(accepted) or "none"
            raise DataError(
                f"the {format} reader has no option {key!r}{did_you_mean(key, accepted)}; its options: {valid}"
            )
    return reader(root, **options)
