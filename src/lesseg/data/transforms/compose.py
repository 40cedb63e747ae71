"""``Compose``: transforms in order over a sample dict, returning the params to log, replay or invert."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from .base import Size, Transform
from .resample import _geo, _ratio, invert, is_geometric


class Compose:
    """Transforms in order over a sample dict: "image" (uint8 [3,H,W]), "mask" (int64 [H,W], optional) and
    any other key a map ([C,H,W] float: bilinear, or int: nearest). Returns the new dict and the params
    (JSON-serialisable, each with "name" and its "index" here) to log, replay or invert.

        >>> import torch
        >>> from lesseg.data.transforms import Normalize, RandomCrop, RandomHorizontalFlip, RandomRescale, seeded_rng
        >>> t = Compose([RandomRescale(scale=(0.5, 2.0)), RandomCrop(32), RandomHorizontalFlip(), Normalize()])
        >>> img = torch.zeros(3, 40, 60, dtype=torch.uint8)
        >>> mask, cam = torch.zeros(40, 60, dtype=torch.int64), torch.rand(2, 40, 60)
        >>> out, params = t({"image": img, "mask": mask, "cam": cam}, seeded_rng(0, 0, 3))
        >>> out["image"].shape, out["mask"].shape, out["cam"].shape
        (torch.Size([3, 32, 32]), torch.Size([32, 32]), torch.Size([2, 32, 32]))
    """

    def __init__(self, transforms: Sequence[Transform]):
        bad = [t for t in transforms if not isinstance(t, Transform)]
        if bad:
            raise ValueError(f"Compose: transforms must be Transform instances, got {bad[0]!r}")
        self.transforms = list(transforms)

    def __call__(
        self, sample: dict[str, Tensor], rng: np.random.Generator
    ) -> tuple[dict[str, Tensor], list[dict]]:
        size = self._size(sample)
        params = []
        for i, t in enumerate(self.transforms):
            p = t.sample(rng, size)
            if p is not None:
                params.append({**p, "name": t.name, "index": i})
                size = t.output_size(p, size)
        return self.apply(sample, params), params

    def apply(self, sample: dict[str, Tensor], params: Sequence[dict]) -> dict[str, Tensor]:
        """Recorded params applied again to a sample: the same input gives the same output exactly."""
        self._size(sample)
        out = dict(sample)
        for p in params:
            t = self._transform(p)
            for key, x in out.items():
                if t.geometric or key == "image":
                    out[key] = t.apply(p, x, key if key in ("image", "mask") else "map")
        return out

    def replay(
        self, params: Sequence[dict], x: Tensor, kind: str = "map", geometric_only: bool = True
    ) -> Tensor:
        """The params on one tensor at any resolution (see ``replay``); with geometric_only=False the
        photometric ones too (they change only an image)."""
        ratio = _ratio([p for p in params if is_geometric(p)], tuple(x.shape[-2:]))
        for p in params:
            if is_geometric(p):
                x = _geo(p, x, kind, ratio)[0]
            elif not geometric_only:
                x = self._transform(p).apply(p, x, kind)
        return x

    def invert(self, params: Sequence[dict], x: Tensor, kind: str = "map") -> tuple[Tensor, Tensor]:
        """x taken back to the original frame, with its validity mask (see ``invert``)."""
        return invert(params, x, kind)

    def _transform(self, p: dict) -> Transform:
        i, n = p.get("index"), len(self.transforms)
        if not (isinstance(i, int) and 0 <= i < n and self.transforms[i].name == p.get("name")):
            raise ValueError(
                f"Compose: params {p.get('name')!r} at index {i!r} match none of its {n} transforms"
            )
        return self.transforms[i]

    @staticmethod
    def _size(sample: dict[str, Tensor]) -> Size:
        if not sample:
            raise ValueError("Compose: the sample is empty; give at least an 'image'")
        sizes = {k: tuple(v.shape[-2:]) for k, v in sample.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"Compose: all entries must share one (H, W), got {sizes}")
        return next(iter(sizes.values()))
