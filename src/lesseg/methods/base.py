"""What a method is to the rest of lesseg: its pipeline, what its training sees, its network and losses,
and the network that predicts once it is trained.

A method is one file (or one package) under ``methods/`` plus its configs: it registers itself (with the
config class of its ``method`` section) in :mod:`lesseg.registry`, composes its pipeline from the shared
stages of :mod:`lesseg.stages` and its own, and hands the trained network to ``evaluate``, ``report``,
``references`` and ``lesseg predict`` through :meth:`Method.inference_model`. The run builds it once
(``Method(cfg, source)``) and carries it on the :class:`~lesseg.pipeline.RunContext`; stages take what
they need from it and never import a method.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

from torch import nn

from lesseg.config import MethodConfig
from lesseg.data.classes import ClassInfo
from lesseg.data.source import DatasetSource
from lesseg.data.splits import RunSplits, Supervision, run_splits
from lesseg.data.transforms import Compose
from lesseg.engine.checkpoint import checked_run_files  # noqa: F401  (methods import it from here)
from lesseg.engine.trainer import StepContext
from lesseg.errors import ConfigError
from lesseg.predict import Predictor

#: supervision regimes: what a method's training may see besides the images
REGIMES = {
    "tags": "image-level tags",
    "none": "no labels",
    "semi": "a few pixel masks (data.labeled) and the other images' tags or nothing",
    "weak_shot": "masks of base classes, tags of novel ones (data.novel)",
    "full": "every training image's pixel mask (the fully supervised upper bound)",
}


class Method:
    """Base class of the methods.

    Args:
        cfg: the run's Config.
        source: the indexed dataset the run reads (its records, classes, masks); ``None`` where only the
            trained network is needed (``lesseg predict`` on a run folder), with ``classes`` given.
        classes: the class metadata when there is no ``source``.

    Class attributes a method sets: ``regimes`` (the supervision regimes it trains under), ``trains`` (its training stage), ``config_class`` (set by
    ``register_method``), and for the report ``gallery_split`` and ``prediction_title``.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    regimes: ClassVar[tuple[str, ...]] = ("tags",)
    trains: ClassVar[str] = "classifier"  # the stage that trains its network (what `lesseg train` runs to)
    gallery_split: ClassVar[str] = "val"  # the split report.html shows ("train" or "val")
    prediction_title: ClassVar[str] = "prediction"

    def __init__(self, cfg, source: DatasetSource | None = None, *, classes: ClassInfo | None = None):
        if source is None and classes is None:
            raise ValueError("a method needs the dataset source or, without one, its classes")
        self.cfg, self.source = cfg, source
        self.classes = classes if classes is not None else source.classes
        if self.regime not in self.regimes:
            accepted = "; ".join(f"{r}: {REGIMES[r]}" for r in self.regimes)
            if self.regime is None:
                raise ConfigError(f"method {self.name} needs a supervision split (data.labeled or data.novel); "
                                  f"it trains with {accepted}")  # fmt: skip
            raise ConfigError(
                f"method {self.name} does not train with {REGIMES[self.regime]} ({self._regime_keys()}); "
                f"it trains with {accepted}"
            )

    # ---- supervision -------------------------------------------------------------------------------

    @property
    def regime(self) -> str | None:
        """The regime the config asks for: ``semi`` with data.labeled, ``weak_shot`` with data.novel,
        else the method's regime without a split (``tags``, ``none`` or ``full``), or None if it has neither."""
        d = self.cfg.data
        if d.labeled is not None and d.novel is not None:
            raise ConfigError("data.labeled and data.novel are two regimes; set one of them")
        if d.labeled is not None:
            return "semi"
        if d.novel is not None:
            return "weak_shot"
        return next((r for r in self.regimes if r in ("tags", "none", "full")), None)

    def _regime_keys(self) -> str:
        d = self.cfg.data
        set_keys = [f"data.{k}={getattr(d, k)}" for k in ("labeled", "novel") if getattr(d, k) is not None]
        return ", ".join(set_keys) or "no data.labeled or data.novel"

    @functools.cached_property
    def splits(self) -> RunSplits:
        """The run's labeled split and base/novel classes (from data.labeled / data.novel; empty when
        neither is set), drawn from the training split; the ``supervision`` stage saves them."""
        if self.source is None:
            raise ValueError("the supervision splits need the dataset source")
        return run_splits(self.cfg.data, self.source)

    def supervision(self) -> Supervision:
        """What the training stage may see of each image: by regime, tags only (``tags``), nothing
        (``none``), the labeled images' masks with every image's tags (``semi``), or every mask with
        the novel classes' pixels ignored (``weak_shot``)."""
        regime = self.regime
        if regime == "semi":
            return Supervision.semi(self.splits.labeled)
        if regime == "weak_shot":
            return Supervision.weak_shot(self.splits.base_novel)
        return Supervision(masks="none", tags=regime == "tags")

    @classmethod
    def extra_splits(cls, cfg) -> dict[str, str]:
        """Splits training reads besides ``data.train_split``, by the option that names each (checked
        before the run like it); none by default."""
        return {}

    # ---- training ----------------------------------------------------------------------------------

    def train_transform(self) -> Compose:
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def train_dataset(self, dataset):
        """The dataset the training stage iterates, built from the split's ``SegDataset`` (e.g. pairs)."""
        return dataset

    def optim_config(self):
        """The optimiser settings training uses: the config's ``optim`` section unless a method adjusts it."""
        return self.cfg.optim

    def training_step(self, model: nn.Module, batch: dict, ctx: StepContext) -> dict:
        """The losses of one batch; ``"loss"`` is what gets back-propagated."""
        raise NotImplementedError

    # ---- the pipeline and what it hands on ---------------------------------------------------------

    def stages(self) -> list:
        """The method's pipeline (a list of :class:`~lesseg.pipeline.Stage`), from the shared stages and
        its own."""
        raise NotImplementedError

    def inference_model(self, run_dir: str | Path, device: str = "auto", **protocol) -> Predictor:
        """The trained network that predicts, read from ``run_dir``, with its test-time protocol (the
        config's unless ``protocol`` overrides some of: scales, flip, crf_iterations, slide_above,
        window, stride)."""
        raise NotImplementedError

    def untrained_references(self, ctx) -> dict:
        """References computed with the untrained network (the ``references`` stage adds the cheap
        mask-based ones to them); none by default."""
        return {}

    def gallery_panels(self, ctx, record, image) -> list:
        """Extra ``(title, HxWx3 array)`` panels of one gallery image in report.html (e.g. CAMs)."""
        return []

    def report_notes(self, ctx) -> list[str]:
        """Lines report.html shows under the metrics."""
        return []

    def class_marks(self) -> dict[str, str]:
        """A word report.html shows beside some classes' names: by default, with a base/novel split,
        "novel" beside each novel class."""
        if self.source is None or self.regime != "weak_shot":
            return {}
        return {self.classes.classes[c]: "novel" for c in self.splits.base_novel.novel}
