"""What a method is to the rest of lesseg: its network, what its training sees, its losses.

A method registers itself by name; ``lesseg train`` / ``lesseg run`` and the Python API find it there.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from lesseg.data.classes import ClassInfo
from lesseg.data.splits import Supervision
from lesseg.data.transforms import Compose
from lesseg.engine.trainer import StepContext
from lesseg.errors import ConfigError, did_you_mean

METHODS: dict[str, type[Method]] = {}


def register_method(name: str):
    def wrap(cls: type[Method]) -> type[Method]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def get_method(name: str) -> type[Method]:
    import lesseg.methods  # noqa: F401  (registers the built-in methods)

    if name not in METHODS:
        raise ConfigError(
            f"unknown method {name!r}{did_you_mean(name, METHODS)}; registered: {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]


class Method:
    """Base class. Subclasses set what their training stage needs.

    Args:
        cfg: the run's Config.
        classes: the dataset's class metadata.
    """

    name: ClassVar[str] = ""

    def __init__(self, cfg, classes: ClassInfo):
        self.cfg = cfg
        self.classes = classes

    def supervision(self) -> Supervision:
        """What the training stage may see of each image."""
        raise NotImplementedError

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

    def stages(self) -> list:
        """The pipeline of this method; by default the CAM family's (classifier, CAMs, pseudo-labels,
        segmenter, evaluation)."""
        from lesseg.stages import weak_supervision_stages

        return weak_supervision_stages(self.cfg)

    def training_step(self, model: nn.Module, batch: dict, ctx: StepContext) -> dict:
        """The losses of one batch; ``"loss"`` is what gets back-propagated."""
        raise NotImplementedError
