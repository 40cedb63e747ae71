"""PiCIE: the geometric replay (equivariance) on images and feature maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lesseg.methods.picie import Geometry, apply_geometry, random_geometry


def _ramp(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([0.3 * xs + 0.1 * ys, -0.2 * ys + 5, 0.05 * xs - 0.07 * ys])[None]


@pytest.mark.parametrize("flip", [False, True])
def test_replay_on_features_equals_features_of_the_transformed_image(flip):
    """For a stride-4 network that is the identity up to resolution (4x4 average pooling), transforming the
    image then taking features equals taking features then replaying the transform on them."""
    net = lambda x: F.avg_pool2d(x, 4)  # noqa: E731
    image = torch.cat([_ramp(96, 128), _ramp(96, 128).flip(-1)])
    geometries = [Geometry((0.15, 0.1, 0.75, 0.55), flip), Geometry((0.2, 0.3, 0.9, 0.9), not flip)]
    view1 = net(apply_geometry(image, geometries, (64, 64)))
    view2 = apply_geometry(net(image), geometries, (16, 16))
    assert view1.shape == view2.shape == (2, 3, 16, 16)
    assert torch.allclose(view1, view2, atol=1e-4)


def test_random_geometry_stays_inside_and_is_square_in_pixels():
    rng = np.random.default_rng(0)
    for _ in range(200):
        g = random_geometry(rng, aspect=4 / 3)
        y0, x0, y1, x1 = g.box
        assert 0 <= y0 < y1 <= 1 + 1e-9 and 0 <= x0 < x1 <= 1 + 1e-9
        assert (y1 - y0) * 3 == pytest.approx((x1 - x0) * 4)  # h_frac * H == w_frac * W for W/H = 4/3
    flips = [random_geometry(np.random.default_rng(s)).flip for s in range(200)]
    assert 60 < sum(flips) < 140


def test_apply_geometry_errors():
    with pytest.raises(ValueError, match="one geometry per map"):
        apply_geometry(torch.zeros(2, 1, 4, 4), [Geometry((0, 0, 1, 1), False)], (2, 2))
