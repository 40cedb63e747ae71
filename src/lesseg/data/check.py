"""`lesseg data check`: find every problem of a dataset, with its file, and describe each split."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from lesseg.data.imageio import image_size, load_image, load_label_png
from lesseg.data.source import DatasetSource, Problem, Record, invalid_labels_message, listed, tags_from_mask
from lesseg.errors import DataError


@dataclass
class SplitStats:
    images: int = 0
    with_mask: int = 0
    with_tags: int = 0
    classes_per_image: Counter = field(default_factory=Counter)
    pixels: np.ndarray | None = None  # per class, then one entry for ignore

    def to_dict(self, class_names) -> dict:
        total = int(self.pixels.sum()) if self.pixels is not None else 0
        share = {}
        if total:
            share = {n: float(p / total) for n, p in zip([*class_names, "ignore"], self.pixels)}
        return {
            "images": self.images,
            "with_mask": self.with_mask,
            "with_tags": self.with_tags,
            "classes_per_image": dict(sorted(self.classes_per_image.items())),
            "pixel_share": share,
        }


@dataclass
class CheckReport:
    source: DatasetSource
    problems: list[str]
    stats: dict[str, SplitStats]

    @property
    def clean(self) -> bool:
        return not self.problems

    def format(self) -> str:
        names = self.source.classes.classes
        bg = self.source.classes.background
        lines = [
            f"dataset {self.source.root} (format {self.source.format}): {len(names)} classes, "
            f"background: {bg if bg is not None else 'none'}, ignore index {self.source.classes.ignore_index}"
        ]
        for split, st in self.stats.items():
            lines.append(
                f"split {split}: {st.images} images, {st.with_mask} with masks, {st.with_tags} with tags"
            )
            if st.classes_per_image:
                n = sum(st.classes_per_image.values())
                hist = "  ".join(f"{k}: {v} ({v / n:.0%})" for k, v in sorted(st.classes_per_image.items()))
                mean = sum(k * v for k, v in st.classes_per_image.items()) / n
                lines.append(f"  tags per image (mean {mean:.2f}): {hist}")
            if st.pixels is not None and st.pixels.sum():
                share = st.pixels / st.pixels.sum()
                cells = [f"{name} {s:.1%}" for name, s in zip([*names, "ignore"], share)]
                lines.append("  pixel share: " + ", ".join(cells))
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  {p}" for p in listed(self.problems))
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def inspect_record(
    source: DatasetSource, record: Record, decode_image: bool = True
) -> tuple[list[str], tuple[int, ...] | None, np.ndarray | None]:
    """Problems of one record (each a :class:`Problem` naming its image), its tags, and its per-class pixel
    counts (last entry: ignore). The mask is decoded (label values, size); the image is decoded too, or,
    with ``decode_image=False``, only its header is read (size; a truncated image shows only when loaded)."""
    problems: list[str] = []
    classes = source.classes

    def problem(text: str) -> None:
        problems.append(Problem(text, image_id=record.id))

    try:
        image_hw = load_image(record.image).shape[:2] if decode_image else image_size(record.image)
    except DataError as e:
        problem(str(e))
        image_hw = None
    mask = None
    counts = None
    if record.mask is not None:
        try:
            raw = load_label_png(record.mask)
        except DataError as e:
            problem(str(e))
        else:
            bad = source.label_map.invalid_values(raw)
            if bad:
                problem(invalid_labels_message(record.mask, bad, classes.num_classes))
            if image_hw is not None and raw.shape != image_hw:
                problem(
                    f"{record.mask}: mask size {raw.shape[1]}x{raw.shape[0]} differs from its image "
                    f"{record.image.name} ({image_hw[1]}x{image_hw[0]})"
                )
            mask = source.label_map.decode(raw)
            labelled = mask[mask != classes.ignore_index]
            counts = np.append(
                np.bincount(labelled, minlength=classes.num_classes)[: classes.num_classes],
                mask.size - labelled.size,
            )
    tags = (
        record.tags
        if record.tags is not None
        else (tags_from_mask(mask, classes) if mask is not None else None)
    )
    wrong = [
        t for t in record.tags or () if not 0 <= t < classes.num_classes or t == classes.background_index
    ]
    if wrong:
        problem(f"{record.image}: tags {wrong} are not object classes (0..{classes.num_classes - 1}, "
                "background excluded)")  # fmt: skip
    return problems, tags, counts


def check_dataset(source: DatasetSource, workers: int = 4) -> CheckReport:
    """Decode every image and mask of every split (fully: a truncated file is caught) and collect problems.

    Problems come from indexing (missing or empty split lists, duplicate ids, unknown tags, listed images
    without a file) and from the files themselves (unreadable or truncated images and masks, mask and image
    sizes that differ, label values outside the classes).
    """
    problems = list(source.problems)
    for split in source.required_splits:
        if split in source.splits and not source.splits[split]:
            problems.append(Problem(f"{source.root}: split {split!r} has no images", (split,)))
    unique: dict[tuple, Record] = {}
    for records in source.splits.values():
        for r in records:
            unique.setdefault((r.id, r.image, r.mask), r)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(zip(unique, pool.map(lambda r: inspect_record(source, r), unique.values())))
    for found, _, _ in results.values():
        problems.extend(found)

    stats: dict[str, SplitStats] = {}
    n = source.classes.num_classes
    for split, records in source.splits.items():
        st = stats[split] = SplitStats(images=len(records))
        for r in records:
            _, tags, counts = results[(r.id, r.image, r.mask)]
            if tags is not None:
                st.with_tags += 1
                st.classes_per_image[len(tags)] += 1
            if counts is not None:
                st.with_mask += 1
                st.pixels = counts if st.pixels is None else st.pixels + counts
        if st.pixels is None and st.with_mask == 0:
            st.pixels = np.zeros(n + 1, dtype=np.int64)
    return CheckReport(source, problems, stats)
