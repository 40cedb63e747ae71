"""Puzzle-CAM: Jo & Yu, "Puzzle-CAM: Improved localization via matching partial and full features",
ICIP 2021.

A CAM classifier sees each training image twice: whole, and cut into a grid of tiles (2x2) that go through
the same network as a batch of smaller images. The tiles' class maps are stitched back into one map. Besides
classifying both (the multi-label soft-margin loss on the global average of each map), the stitched map must
match the full image's map (Eq. 3-5 of the paper)::

    L = L_cls + L_p-cls + alpha * L_re
    L_re = mean over (n, c, i, j) of y[n, c] * |A[n, c, i, j] - A_puzzle[n, c, i, j]|

on the raw class maps (before ReLU and normalisation), masked by the image's tags, and averaged over every
element including the masked-out classes (the official ``re_loss_option=masking``). ``alpha`` ramps linearly
from 0 to ``alpha_max`` (4) over the first half of training, then stays. A tile sees no context beyond its
borders, so its map highlights the object parts visible in it; matching the full map then spreads the full
map's activation over whole objects. The entropy loss of the official code is off there and left out here.

Everything downstream (CAMs, refinement, pseudo-labels, segmenter) is the CAM baseline's: the trained
network is an ordinary :class:`~lesseg.models.CAMClassifier`.

Example:
    >>> import torch
    >>> x = torch.arange(2 * 1 * 4 * 4.0).reshape(2, 1, 4, 4)
    >>> tiles = tile_images(x, (2, 2))
    >>> tiles.shape
    torch.Size([8, 1, 2, 2])
    >>> torch.equal(stitch_tiles(tiles, (2, 2)), x)
    True
    >>> alpha_at(0.25, alpha_max=4.0, ramp=0.5), alpha_at(0.75, alpha_max=4.0, ramp=0.5)
    (2.0, 4.0)
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import torch

from lesseg.config import MethodConfig
from lesseg.config import config_field as _f
from lesseg.errors import ConfigError
from lesseg.methods.cam import CAMMethod
from lesseg.models import CAMClassifier, multilabel_soft_margin_loss
from lesseg.registry import register_method


def tile_images(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Cut a ``[N, C, H, W]`` batch into a ``(rows, cols)`` grid of equal tiles stacked along the batch:
    ``[rows * cols * N, C, H / rows, W / cols]``, tile-major (all images' top-left tile first, then the next
    tile in raster order), as the official ``tile_features``. ``H`` and ``W`` must divide evenly."""
    rows, cols = _check_grid(grid)
    n, c, h, w = x.shape
    if h % rows or w % cols:
        raise ValueError(f"a {h}x{w} input does not split into a {rows}x{cols} grid of equal tiles")
    th, tw = h // rows, w // cols
    # [N, C, rows, th, cols, tw] -> [rows, cols, N, C, th, tw]
    tiles = x.reshape(n, c, rows, th, cols, tw).permute(2, 4, 0, 1, 3, 5)
    return tiles.reshape(rows * cols * n, c, th, tw)


def stitch_tiles(tiles: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`tile_images`: ``[rows * cols * N, C, h, w]`` tile maps back into
    ``[N, C, rows * h, cols * w]``."""
    rows, cols = _check_grid(grid)
    k, c, h, w = tiles.shape
    if k % (rows * cols):
        raise ValueError(f"{k} tiles do not make whole {rows}x{cols} grids")
    n = k // (rows * cols)
    full = tiles.reshape(rows, cols, n, c, h, w).permute(2, 3, 0, 4, 1, 5)  # [N, C, rows, h, cols, w]
    return full.reshape(n, c, rows * h, cols * w)


def reconstruction_loss(full: torch.Tensor, stitched: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Puzzle-CAM's L_re (Eq. 4, official ``L1_Loss`` with ``masking``): the mean over all ``N*C*H*W``
    elements of ``tags[n, c] * |full - stitched|``, on raw class maps ``[N, C, H, W]`` and tags ``[N, C]``.

    Example:
        >>> full = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # N=1, C=2, 1x2 maps
        >>> stitched = torch.zeros(1, 2, 1, 2)
        >>> reconstruction_loss(full, stitched, torch.tensor([[1.0, 0.0]]))  # (1 + 2) / 4 elements
        tensor(0.7500)
    """
    if full.shape != stitched.shape or full.ndim != 4:
        raise ValueError(
            f"full and stitched maps must both be [N, C, H, W]; got {list(full.shape)} and {list(stitched.shape)}"
        )
    if tags.shape != full.shape[:2]:
        raise ValueError(f"tags must be [N, C] = {list(full.shape[:2])}, got {list(tags.shape)}")
    return ((full - stitched).abs() * tags[:, :, None, None].to(full.dtype)).mean()


def alpha_at(progress: float, alpha_max: float = 4.0, ramp: float = 0.5) -> float:
    """The weight of L_re after ``progress`` (0..1) of training: ``min(alpha_max * progress / ramp,
    alpha_max)``, a linear ramp over the first ``ramp`` of training (official: 4 over the first half)."""
    if ramp <= 0:
        return float(alpha_max)
    return float(min(alpha_max * progress / ramp, alpha_max))


def _check_grid(grid) -> tuple[int, int]:
    if len(grid) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid):
        raise ValueError(f"grid must be two integers >= 1 (rows, cols), got {grid!r}")
    return int(grid[0]), int(grid[1])


class PuzzleCAMClassifier(CAMClassifier):
    """A :class:`~lesseg.models.CAMClassifier` (same weights, same ``forward(x)``) whose
    ``forward(x, grid=(rows, cols))`` also runs the tiles of ``x`` and returns their stitched class maps as
    ``"stitched_cams"`` and those maps' global average as ``"stitched_logits"``. Both passes happen in one
    call, so under DistributedDataParallel a training step is one forward and one backward."""

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        full = super().forward(x)
        if grid is None:
            return full
        stitched = stitch_tiles(super().forward(tile_images(x, grid))["cams"], grid)
        if stitched.shape != full["cams"].shape:
            raise ValueError(
                f"stitched tile maps {list(stitched.shape[-2:])} differ from the full map "
                f"{list(full['cams'].shape[-2:])}: the input size must be a multiple of grid x output stride"
            )
        return {**full, "stitched_cams": stitched, "stitched_logits": stitched.mean(dim=(2, 3))}


@dataclass
class PuzzleCAMConfig(MethodConfig):
    """The ``method`` section of Puzzle-CAM.

    * ``grid``: tiles per (row, column); official 2x2. ``data.crop_size`` must be a multiple of each times
      ``model.output_stride``.
    * ``alpha_max``, ``alpha_ramp``: L_re's weight ramps from 0 to ``alpha_max`` over the first
      ``alpha_ramp`` of training (official: 4 over the first half).
    * ``momentum``: ``official`` (default, to reproduce the paper) trains with the config's optimiser; the
      official code's SGD momentum is 1e-4 (IRN's PolyOptimizer passes the weight decay into the momentum
      slot), which the example configs set. ``real``: momentum 0.9 with every learning rate x0.1, the same
      step size with a real momentum. ``config``: the config's optimiser as written, unchecked (the
      ImageNet configs, whose momentum 0.9 at the official learning rates was measured better).
    * ``select_by_train_masks``: the official code keeps the epoch whose CAMs score best on the *training
      masks*; that reads masks, so it is off by default (the last epoch is kept).
    """

    grid: tuple[int, int] = _f((2, 2), check=(lambda g: len(g) == 2 and min(g) >= 1, "two integers >= 1"))
    alpha_max: float = _f(4.0, min=0)
    alpha_ramp: float = _f(0.5, min=0)
    momentum: str = _f("official", choices=("official", "real", "config"))
    select_by_train_masks: bool = False


#: SGD momentum of the official optimiser: IRN's PolyOptimizer passes the weight decay (1e-4) into SGD's
#: momentum slot.
OFFICIAL_MOMENTUM = 1e-4


@register_method("puzzlecam", config=PuzzleCAMConfig)
class PuzzleCAMMethod(CAMMethod):
    """Puzzle-CAM's training step on the CAM baseline's classifier (``method.*`` in the config: see
    :class:`PuzzleCAMConfig`)."""

    def __init__(self, cfg, source=None, *, classes=None):
        super().__init__(cfg, source, classes=classes)
        m, d = cfg.method, cfg.data
        rows, cols = _check_grid(tuple(m.grid))
        stride = cfg.model.output_stride
        for side in ("rows", "cols"):
            n = rows if side == "rows" else cols
            if d.crop_size % (n * stride):
                raise ConfigError(
                    f"data.crop_size={d.crop_size} must be a multiple of method.grid {side} ({n}) x "
                    f"model.output_stride ({stride}) = {n * stride}, so that tile maps stitch back exactly"
                )

    def build_model(self) -> PuzzleCAMClassifier:
        m = self.cfg.model
        if m.name != "cam_classifier":
            raise ConfigError(f"method puzzlecam trains model.name=cam_classifier, got {m.name!r}")
        return PuzzleCAMClassifier(**self.model_kwargs())

    def optim_config(self):
        """``method.momentum``: ``official`` keeps the config's optimiser (the example configs set the
        official quirk, momentum 1e-4); ``real`` uses SGD momentum 0.9 with every learning rate x0.1, which
        keeps the step size (with momentum 0.9 steps add up to ~10x the learning rate); ``config`` keeps the
        config's optimiser without the check."""
        optim = self.cfg.optim
        if self.cfg.method.momentum == "config":
            return optim
        if self.cfg.method.momentum == "official":
            if optim.name == "sgd" and optim.momentum >= 0.5:
                warnings.warn(
                    f"method.momentum=official with optim.momentum={optim.momentum}: the official optimiser "
                    f"has momentum {OFFICIAL_MOMENTUM} (set optim.momentum={OFFICIAL_MOMENTUM}, or "
                    "method.momentum=real to rescale the learning rate, or method.momentum=config if it is meant)",
                    stacklevel=2,
                )
            return optim
        return dataclasses.replace(optim, name="sgd", momentum=0.9, lr=optim.lr * 0.1)

    def training_step(self, model, batch, ctx) -> dict:
        m = self.cfg.method
        tags = batch["tags"][:, list(self.classes.tag_indices)]
        out = model(batch["image"], grid=tuple(m.grid))
        cls = multilabel_soft_margin_loss(out["logits"].float(), tags)
        p_cls = multilabel_soft_margin_loss(out["stitched_logits"].float(), tags)
        re = reconstruction_loss(out["cams"].float(), out["stitched_cams"].float(), tags)
        alpha = alpha_at(ctx.progress, m.alpha_max, m.alpha_ramp)
        return {"loss": cls + p_cls + alpha * re, "cls": cls, "p_cls": p_cls, "re": re,
                "alpha": torch.tensor(alpha)}  # fmt: skip
