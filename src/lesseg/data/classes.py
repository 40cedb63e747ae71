"""Class metadata that travels with every dataset: names, ignore index, background class."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lesseg.errors import DataError, did_you_mean
from lesseg.io import atomic_write_json


@dataclass(frozen=True)
class ClassInfo:
    """The classes of a dataset, in label-index order.

    Args:
        classes: class names; a mask pixel with value ``i`` belongs to ``classes[i]``.
        ignore_index: the mask value of pixels that carry no label (255 by convention).
        background: the name of the background class, or ``None`` when the dataset has none (MSRC-21,
            CamVid, COCO-Stuff: every pixel is a thing or stuff class). Image-level tags never include it.

    Example:
        >>> info = ClassInfo(("background", "cat", "dog"), background="background")
        >>> info.tag_indices
        (1, 2)
    """

    classes: tuple[str, ...]
    ignore_index: int = 255
    background: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.classes:
            raise DataError("a dataset needs at least one class")
        dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if dupes:
            raise DataError(f"class names must be unique; repeated: {', '.join(dupes)}")
        if 0 <= self.ignore_index < len(self.classes):
            raise DataError(
                f"ignore_index {self.ignore_index} collides with class {self.classes[self.ignore_index]!r}; "
                f"use a value >= {len(self.classes)} (255 by convention)"
            )
        if self.background is not None and self.background not in self.classes:
            raise DataError(
                f"background class {self.background!r} is not one of the classes"
                f"{did_you_mean(self.background, self.classes)}; use null when the dataset has none"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def background_index(self) -> int | None:
        return None if self.background is None else self.classes.index(self.background)

    @property
    def tag_indices(self) -> tuple[int, ...]:
        """Indices of the classes that can appear as image-level tags (all but the background)."""
        bg = self.background_index
        return tuple(i for i in range(self.num_classes) if i != bg)

    def index(self, name: str) -> int:
        """The label index of a class name; a clear error naming the nearest valid name otherwise."""
        try:
            return self.classes.index(name)
        except ValueError:
            raise DataError(f"unknown class {name!r}{did_you_mean(name, self.classes)}") from None

    def to_dict(self) -> dict:
        return {
            "classes": list(self.classes),
            "ignore_index": self.ignore_index,
            "background": self.background,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "class metadata") -> ClassInfo:
        if not isinstance(d, dict) or "classes" not in d:
            raise DataError(f"{source}: expected an object with a 'classes' list")
        unknown = set(d) - {"classes", "ignore_index", "background"}
        if unknown:
            raise DataError(
                f"{source}: unknown field(s) {sorted(unknown)}; valid: classes, ignore_index, background"
            )
        try:
            return cls(tuple(d["classes"]), int(d.get("ignore_index", 255)), d.get("background"))
        except DataError as e:
            raise DataError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> ClassInfo:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: classes file not found") from None
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, str(path))

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())
