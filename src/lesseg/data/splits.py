"""Supervision splits for the semi-supervised and weak-shot regimes, reproducible by seed, saved with a run.

- Semi-supervised (PseudoSeg): a labeled fraction (1/16 ... 1/2) or an explicit list of ids keeps its masks;
  the other images keep only their tags (or nothing).
- Weak-shot (SimFormer): base classes keep their pixel labels, novel classes keep only their tags: their
  pixels become ignore.

``Supervision`` says what a ``SegDataset`` exposes of each image; a training stage sees nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from lesseg.data.classes import ClassInfo
from lesseg.errors import ConfigError, DataError
from lesseg.io import atomic_write_json


def parse_fraction(value: str | float) -> float:
    """'1/16', '0.0625' or 0.0625 -> 0.0625, in (0, 1]."""
    try:
        f = float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"labeled fraction {value!r} is not a number like 1/8 or 0.125") from None
    if not 0 < f <= 1:
        raise ConfigError(f"labeled fraction {value!r} must lie in (0, 1]")
    return f


@dataclass(frozen=True)
class LabeledSplit:
    """Which images of a split keep their masks (semi-supervised regime)."""

    labeled: tuple[str, ...]
    unlabeled: tuple[str, ...]
    seed: int | None = None
    spec: str = ""

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(
            path,
            {
                "kind": "labeled",
                "spec": self.spec,
                "seed": self.seed,
                "labeled": list(self.labeled),
                "unlabeled": list(self.unlabeled),
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> LabeledSplit:
        d = _load_json(path, "labeled")
        return cls(tuple(d["labeled"]), tuple(d["unlabeled"]), d.get("seed"), d.get("spec", ""))


def labeled_split(
    ids: list[str],
    fraction: str | float | None = None,
    labeled_ids: list[str] | None = None,
    seed: int = 0,
) -> LabeledSplit:
    """Choose the labeled images: a random ``fraction`` of ``ids`` by ``seed``, or an explicit list.

    The draw depends only on the sorted ids and the seed, so the same command gives the same split on any
    machine. At least one image is labeled.

    Example:
        >>> s = labeled_split([f"im{i}" for i in range(16)], fraction="1/8", seed=0)
        >>> len(s.labeled), len(s.unlabeled)
        (2, 14)
    """
    if (fraction is None) == (labeled_ids is None):
        raise ConfigError("give exactly one of: a labeled fraction (e.g. 1/16) or a list of labeled ids")
    ordered = sorted(dict.fromkeys(ids))
    if labeled_ids is not None:
        unknown = sorted(set(labeled_ids) - set(ordered))
        if unknown:
            raise DataError(f"{len(unknown)} labeled id(s) are not in the split, e.g. {unknown[0]!r}")
        chosen = set(labeled_ids)
        spec = f"list of {len(chosen)}"
    else:
        f = parse_fraction(fraction)
        n = max(1, round(len(ordered) * f))
        perm = np.random.default_rng(seed).permutation(len(ordered))
        chosen = {ordered[i] for i in perm[:n]}
        spec = str(fraction)
    return LabeledSplit(
        tuple(i for i in ordered if i in chosen), tuple(i for i in ordered if i not in chosen), seed, spec
    )


@dataclass(frozen=True)
class BaseNovelSplit:
    """Class indices whose pixels are labeled (base) and those known only by tags (novel)."""

    base: tuple[int, ...]
    novel: tuple[int, ...]
    seed: int | None = None

    def save(self, path: str | Path, classes: ClassInfo | None = None) -> Path:
        d = {"kind": "base_novel", "seed": self.seed, "base": list(self.base), "novel": list(self.novel)}
        if classes is not None:
            d["novel_names"] = [classes.classes[i] for i in self.novel]
        return atomic_write_json(path, d)

    @classmethod
    def load(cls, path: str | Path) -> BaseNovelSplit:
        d = _load_json(path, "base_novel")
        return cls(tuple(d["base"]), tuple(d["novel"]), d.get("seed"))


def base_novel_split(
    classes: ClassInfo,
    novel: list[str] | None = None,
    novel_fraction: float = 0.25,
    seed: int = 0,
) -> BaseNovelSplit:
    """Split the classes into base and novel: the named ``novel`` classes, or a random ``novel_fraction``
    of them by ``seed`` (SimFormer uses a quarter). The background class is always base.

    Example:
        >>> info = ClassInfo(("background", "a", "b", "c", "d"), background="background")
        >>> base_novel_split(info, novel=["c"]).novel
        (3,)
    """
    candidates = list(classes.tag_indices)
    if novel is not None:
        idx = sorted({classes.index(n) for n in novel})
        if classes.background_index in idx:
            raise ConfigError(f"the background class {classes.background!r} cannot be novel")
    else:
        if not 0 < novel_fraction < 1:
            raise ConfigError(f"novel_fraction must lie in (0, 1), got {novel_fraction}")
        n = max(1, round(len(candidates) * novel_fraction))
        perm = np.random.default_rng(seed).permutation(len(candidates))
        idx = sorted(candidates[i] for i in perm[:n])
    if len(idx) >= len(candidates):
        raise ConfigError("at least one non-background class must stay base")
    base = tuple(i for i in range(classes.num_classes) if i not in idx)
    return BaseNovelSplit(base, tuple(idx), seed if novel is None else None)


@dataclass(frozen=True)
class Supervision:
    """What a dataset exposes of each image.

    Args:
        masks: ``"all"`` (every mask on disk), ``"none"`` (no masks: weak or no supervision), or a set of
            image ids whose masks are exposed (semi-supervised).
        tags: whether image-level tags are exposed.
        novel_classes: class indices whose pixels become ignore in exposed masks (weak-shot); their tags stay.
    """

    masks: str | frozenset[str] = "all"
    tags: bool = True
    novel_classes: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if isinstance(self.masks, str) and self.masks not in ("all", "none"):
            raise ConfigError(f"Supervision.masks must be 'all', 'none' or a set of ids, got {self.masks!r}")
        if not isinstance(self.masks, str):
            object.__setattr__(self, "masks", frozenset(self.masks))
        object.__setattr__(self, "novel_classes", frozenset(int(c) for c in self.novel_classes))

    def exposes_mask(self, image_id: str) -> bool:
        if isinstance(self.masks, str):
            return self.masks == "all"
        return image_id in self.masks

    @classmethod
    def semi(cls, split: LabeledSplit, tags: bool = True) -> Supervision:
        return cls(masks=frozenset(split.labeled), tags=tags)

    @classmethod
    def weak_shot(cls, split: BaseNovelSplit) -> Supervision:
        return cls(masks="all", tags=True, novel_classes=frozenset(split.novel))


@dataclass(frozen=True)
class RunSplits:
    """A run's supervision splits: which training images keep their masks, which classes are novel
    (``None`` where the regime has none)."""

    labeled: LabeledSplit | None = None
    base_novel: BaseNovelSplit | None = None

    def save(self, folder: str | Path, classes: ClassInfo) -> list[Path]:
        """``folder/labeled.json`` and ``folder/base_novel.json`` for the splits there are."""
        folder = Path(folder)
        out = []
        if self.labeled is not None:
            out.append(self.labeled.save(folder / "labeled.json"))
        if self.base_novel is not None:
            out.append(self.base_novel.save(folder / "base_novel.json", classes))
        return out


_NUMBER = re.compile(r"\s*[0-9.]+(\s*/\s*[0-9.]+)?\s*")


SHIPPED_NOVEL_SPLITS = Path(__file__).parent / "novel_splits"  # the official weak-shot splits, by name


def _list_file(spec: str, root: Path, key: str, what: str, shipped: Path | None = None) -> list[str]:
    """The lines of the file ``spec`` names: as given, else inside the dataset ``root``, else (``shipped``)
    the file ``shipped/<spec>.txt`` that lesseg ships."""
    path = Path(spec).expanduser()
    candidates = [path, root / spec] + ([shipped / f"{spec}.txt"] if shipped else [])
    path = next((c for c in candidates if c.is_file()), path)
    if not path.is_file():
        names = sorted(p.stem for p in shipped.glob("*.txt")) if shipped else []
        also = f"; or one of the shipped splits: {', '.join(names)}" if names else ""
        raise ConfigError(f"{key}={spec!r} is neither a fraction (e.g. 1/8) nor an existing file of {what} "
                          f"(looked at {Path(spec)} and {root / spec}){also}")  # fmt: skip
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    entries = [ln for ln in lines if ln and not ln.startswith("#")]
    if not entries:
        raise DataError(f"{path}: empty; {key} names a file of {what}, one per line")
    return entries


def run_splits(data, source) -> RunSplits:
    """The splits that a run's ``data`` section asks for, over the records of ``data.train_split``:

    - ``data.labeled``: a fraction of the training images (drawn with ``data.labeled_seed``) or a file of
      image ids, one per line; those images keep their masks.
    - ``data.novel``: a fraction of the object classes (drawn with ``data.novel_seed``), a file of class
      names, one per line, or the name of a shipped official split (``ade20k_split1`` ... ``4``,
      ``cocostuff10k_split1`` ... ``9``: SimFormer's); those classes keep only their tags.
    """
    labeled = base_novel = None
    if data.labeled is not None:
        ids = [r.id for r in source.split(data.train_split)]
        if _NUMBER.fullmatch(str(data.labeled)):
            labeled = labeled_split(ids, fraction=data.labeled, seed=data.labeled_seed)
        else:
            listed = _list_file(data.labeled, source.root, "data.labeled", "image ids")
            unknown = sorted(set(listed) - set(ids))
            if unknown:
                raise DataError(f"data.labeled={data.labeled!r}: {len(unknown)} id(s) are not in split "
                                f"{data.train_split!r}, e.g. {unknown[0]!r}")  # fmt: skip
            labeled = labeled_split(ids, labeled_ids=listed)
    if data.novel is not None:
        classes = source.classes
        if _NUMBER.fullmatch(str(data.novel)):
            base_novel = base_novel_split(
                classes, novel_fraction=parse_fraction(data.novel), seed=data.novel_seed
            )
        else:
            names = _list_file(data.novel, source.root, "data.novel", "class names", SHIPPED_NOVEL_SPLITS)
            try:
                base_novel = base_novel_split(classes, novel=names)
            except DataError as e:
                raise DataError(f"data.novel={data.novel!r}: {e}") from None
    return RunSplits(labeled, base_novel)


def _load_json(path: str | Path, kind: str) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read split file ({e})") from None
    if d.get("kind") != kind:
        raise DataError(f"{path}: expected a {kind!r} split file, found kind {d.get('kind')!r}")
    return d
