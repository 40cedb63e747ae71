"""IRN's boundary-aware random walk: pair offsets, path affinities, the sparse transition matrix, the walk."""

from __future__ import annotations

import pytest
import torch

from lesseg.refine.affinity import affinities_from_boundary, pair_offsets, path_points
from lesseg.refine.random_walk import propagate_labels, random_walk, random_walk_dense, transition_matrix


def brute_force_affinity(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixel by pixel: 1 - max boundary over path_points, 0 if the partner is outside. [H, W] -> [P, H, W]."""
    h, w = boundary.shape
    b = boundary.tolist()
    offsets = pair_offsets(radius).tolist()
    out = [[[0.0] * w for _ in range(h)] for _ in offsets]
    for p, (dy, dx) in enumerate(offsets):
        path = path_points((dy, dx)).tolist()
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    out[p][y][x] = 1 - max(b[y + py][x + px] for py, px in path)
    return torch.tensor(out, dtype=boundary.dtype)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny sparse products (hundreds of steps on a 12x12 grid) are dominated by thread start-up and, on a
    busy machine, by waiting for a free core: one thread keeps these tests at a fraction of a second."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- pair_offsets / path_points ---------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [1, 2, 3, 4, 5, 6, 10])
def test_pair_offsets_match_brute_force(radius):
    r = radius
    every = {(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if 0 < dy * dy + dx * dx < r * r}
    offsets = [tuple(o) for o in pair_offsets(radius).tolist()]
    assert len(offsets) == len(every) // 2
    assert len(set(offsets)) == len(offsets)  # no pair twice ...
    assert not {(-dy, -dx) for dy, dx in offsets} & set(offsets)  # ... also not as its negation
    assert {(dy, dx) for dy, dx in offsets} | {(-dy, -dx) for dy, dx in offsets} == every
    assert offsets == sorted(offsets)
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in offsets)


def test_pair_offsets_irn_count_and_errors():
    assert len(pair_offsets(5)) == 34  # IRN's inference neighbourhood
    assert pair_offsets(1).shape == (0, 2)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="radius"):
            pair_offsets(bad)


def test_path_points_visit_every_row_and_column():
    for dy, dx in pair_offsets(8).tolist():
        path = path_points((dy, dx))
        assert path[0].tolist() == [0, 0] and path[-1].tolist() == [dy, dx]
        steps = (path[1:] - path[:-1]).abs()
        assert steps.max() <= 1  # 8-connected, monotone: no row or column skipped
        assert set(path[:, 0].tolist()) == set(range(min(0, dy), max(0, dy) + 1))
        assert set(path[:, 1].tolist()) == set(range(min(0, dx), max(0, dx) + 1))
    with pytest.raises(ValueError, match="offset"):
        path_points((1, 2, 3))


# --- affinities -------------------------------------------------------------------------------------------


def test_affinities_match_pixelwise_definition():
    torch.manual_seed(0)
    boundary = torch.rand(9, 11, dtype=torch.float64)
    aff = affinities_from_boundary(boundary[None, None], radius=4)
    assert aff.shape == (1, len(pair_offsets(4)), 9, 11)
    torch.testing.assert_close(aff[0], brute_force_affinity(boundary, 4), rtol=0, atol=0)


def test_vertical_boundary_line_cuts_affinity():
    h, w, col = 10, 12, 6
    boundary = torch.zeros(1, 1, h, w)
    boundary[..., col] = 1.0  # one pixel wide
    aff = affinities_from_boundary(boundary, radius=5)[0]
    offsets = pair_offsets(5).tolist()
    # (4, col - 1) and (4, col + 1): both endpoints off the line, yet the path crosses it.
    assert aff[offsets.index([0, 2]), 4, col - 1] == 0
    assert aff[offsets.index([1, 2]), 4, col - 1] == 0  # a slanted crossing too
    assert aff[offsets.index([0, 2]), 4, col - 3] == 1  # (4, col-3) -> (4, col-1): same side
    assert aff[offsets.index([2, -1]), 3, col + 2] == 1  # right side, slanted
    for p, (dy, dx) in enumerate(offsets):
        for y in range(h - dy):
            for x in range(max(0, -dx), min(w, w - dx)):
                lo, hi = min(x, x + dx), max(x, x + dx)
                expected = 0.0 if lo <= col <= hi else 1.0  # touches or crosses the line, or not
                assert aff[p, y, x] == expected, (dy, dx, y, x)


def test_partner_outside_the_image_has_zero_affinity():
    aff = affinities_from_boundary(torch.zeros(1, 1, 6, 7), radius=3)[0]
    for p, (dy, dx) in enumerate(pair_offsets(3).tolist()):
        ys, xs = torch.meshgrid(torch.arange(6), torch.arange(7), indexing="ij")
        inside = (ys + dy < 6) & (xs + dx >= 0) & (xs + dx < 7)
        assert torch.equal(aff[p], inside.float())


def test_affinity_errors():
    with pytest.raises(ValueError, match="boundary"):
        affinities_from_boundary(torch.zeros(4, 4), radius=3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        affinities_from_boundary(torch.full((1, 1, 4, 4), 1.5), radius=3)
    with pytest.raises(ValueError, match="radius"):
        affinities_from_boundary(torch.zeros(1, 1, 4, 4), radius=0)


# --- transition matrix ------------------------------------------------------------------------------------


def test_transition_matrix_is_sparse_column_stochastic_and_symmetric_before_normalising():
    torch.manual_seed(1)
    boundary = torch.rand(1, 1, 8, 9) ** 2
    offsets = pair_offsets(4)
    aff = affinities_from_boundary(boundary, 4)
    trans = transition_matrix(aff, offsets, beta=10.0)
    assert trans.layout in (torch.sparse_csr, torch.sparse_coo)
    n = 8 * 9
    assert trans.shape == (n, n)
    inside_pairs = sum((8 - dy) * (9 - abs(dx)) for dy, dx in offsets.tolist())
    assert trans._nnz() == n + 2 * inside_pairs  # self-loops + each pair in both directions, nothing else
    dense = trans.to_dense()
    torch.testing.assert_close(dense.sum(0), torch.ones(n))  # columns sum to 1
    # T = A D^-1 with A symmetric and A[i, i] = 1, so T[i, i] = 1 / D_i and T * D (per column) is symmetric.
    degree = 1.0 / dense.diagonal()
    a = dense * degree.view(1, -1)
    torch.testing.assert_close(a, a.t())
    torch.testing.assert_close(a.diagonal(), torch.ones(n))


def test_transition_matrix_entries():
    aff = torch.full((1, 2, 3), 0.5)  # one offset (0, 1) on a 2x3 image
    trans = transition_matrix(aff, torch.tensor([[0, 1]]), beta=1.0).to_dense()
    a = torch.eye(6)
    for y in range(2):
        for x in range(2):  # x = 2 has its partner outside
            i = y * 3 + x
            a[i, i + 1] = a[i + 1, i] = 0.5
    torch.testing.assert_close(trans, a / a.sum(0, keepdim=True))


def test_transition_matrix_errors():
    aff = torch.ones(len(pair_offsets(3)), 4, 4)
    with pytest.raises(ValueError, match="beta"):
        transition_matrix(aff, pair_offsets(3), beta=0)
    with pytest.raises(ValueError, match="offsets"):
        transition_matrix(aff, pair_offsets(4), beta=10.0)
    with pytest.raises(ValueError, match="one image"):
        transition_matrix(aff.expand(2, -1, -1, -1), pair_offsets(3))
    with pytest.raises(ValueError, match="o and -o"):
        transition_matrix(torch.ones(2, 4, 4), torch.tensor([[0, 1], [0, -1]]))


# --- random walk ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exp_times", [0, 3, 8])
@pytest.mark.parametrize("radius", [3, 5])
def test_sparse_walk_equals_dense(exp_times, radius):
    torch.manual_seed(exp_times + radius)
    boundary = torch.rand(12, 12, dtype=torch.float64) ** 3  # mostly weak, some strong boundaries
    cams = torch.rand(3, 12, 12, dtype=torch.float64)
    sparse = random_walk(cams, boundary, radius=radius, exp_times=exp_times)
    dense = random_walk_dense(cams, boundary, radius=radius, exp_times=exp_times)
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-10)
    # float32: the same up to rounding (2^8 = 256 sparse steps vs 8 dense squarings accumulate differently)
    sparse32 = random_walk(cams.float(), boundary.float(), radius=radius, exp_times=exp_times)
    torch.testing.assert_close(sparse32, dense.float(), rtol=0, atol=1e-4)
    assert (sparse32.double() - dense).abs().mean() < 1e-5


def test_walk_is_row_vectors_times_the_exported_transition_matrix():
    """random_walk == (cams * (1 - B)).view(K, HW) @ T^(2^e) with T from transition_matrix (not T^T)."""
    torch.manual_seed(5)
    boundary = torch.rand(9, 10, dtype=torch.float64) ** 3
    cams = torch.rand(2, 9, 10, dtype=torch.float64)
    trans = transition_matrix(affinities_from_boundary(boundary[None, None], 5), pair_offsets(5)).to_dense()
    x = (cams * (1 - boundary)).reshape(2, -1)
    expected = (x @ torch.linalg.matrix_power(trans, 2**3)).reshape(2, 9, 10)
    torch.testing.assert_close(random_walk(cams, boundary, exp_times=3), expected, rtol=0, atol=1e-10)
    wrong = (x @ torch.linalg.matrix_power(trans.t(), 2**3)).reshape(2, 9, 10)
    assert (wrong - expected).abs().max() > 1e-3  # the convention matters with uneven degrees


def test_walk_is_a_weighted_average():
    torch.manual_seed(3)
    boundary = torch.rand(10, 10) ** 3
    # constant input (no boundary damping): stays constant, since every output is an average
    out = random_walk(torch.full((1, 10, 10), 0.7), torch.zeros(10, 10), exp_times=5)
    torch.testing.assert_close(out, torch.full((1, 10, 10), 0.7))
    cams = torch.rand(2, 10, 10)
    out = random_walk(cams, boundary, exp_times=4)
    damped = cams * (1 - boundary)
    assert out.min() >= damped.min() - 1e-6 and out.max() <= damped.max() + 1e-6


def square_outline(size: int = 14, top: int = 3, bottom: int = 10, left: int = 3, right: int = 10, value=1.0):
    boundary = torch.zeros(size, size)
    boundary[top, left : right + 1] = value
    boundary[bottom, left : right + 1] = value
    boundary[top : bottom + 1, left] = value
    boundary[top : bottom + 1, right] = value
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[top + 1 : bottom, left + 1 : right] = True
    return boundary, inside


def test_constant_region_stays_constant_and_does_not_leak():
    boundary, inside = square_outline()
    on_line = boundary > 0
    outside = ~inside & ~on_line
    torch.manual_seed(4)
    cams = torch.rand(2, 14, 14)
    cams[0][inside] = 0.6  # constant inside, random elsewhere
    out = random_walk(cams, boundary)  # defaults: radius 5, beta 10, exp_times 8
    torch.testing.assert_close(out[0][inside], torch.full((int(inside.sum()),), 0.6))

    inside_only = inside.float()[None]  # 1 inside, 0 outside
    out = random_walk(inside_only, boundary)
    assert out[0][outside].abs().max() == 0  # a hard boundary: nothing crosses
    torch.testing.assert_close(out[0][inside], torch.ones(int(inside.sum())))

    soft, _ = square_outline(value=0.9)  # a soft boundary: affinity 0.1 ** 10 across it
    out = random_walk(inside_only, soft)
    assert out[0][outside].sum() < 1e-3 * out[0][inside].sum()


def test_vertical_wall_separates_classes():
    boundary = torch.zeros(12, 12)
    boundary[:, 5] = 1.0
    cams = torch.zeros(2, 12, 12)
    cams[0, 4, 1] = 1.0  # a seed on the left
    cams[1, 6, 9] = 1.0  # a seed on the right
    out = random_walk(cams, boundary)
    assert out[0, :, 5:].abs().max() == 0 and out[1, :, :6].abs().max() == 0
    assert out[0, :, :5].min() > 0 and out[1, :, 6:].min() > 0  # spread over their whole side


def test_random_walk_errors():
    cams, boundary = torch.rand(2, 6, 6), torch.zeros(6, 6)
    with pytest.raises(ValueError, match="boundary"):
        random_walk(cams, torch.zeros(6, 7))
    with pytest.raises(ValueError, match="cams"):
        random_walk(torch.rand(6, 6), boundary)
    with pytest.raises(ValueError, match="radius"):
        random_walk(cams, boundary, radius=0)
    with pytest.raises(ValueError, match="beta"):
        random_walk(cams, boundary, beta=-1.0)
    with pytest.raises(ValueError, match="exp_times"):
        random_walk(cams, boundary, exp_times=-1)
    assert random_walk(torch.zeros(0, 6, 6), boundary).shape == (0, 6, 6)


# --- propagate_labels -------------------------------------------------------------------------------------


def test_propagate_labels_background_plane_and_normalisation():
    boundary = torch.zeros(10, 10)
    boundary[:, 4] = 1.0
    cams = torch.zeros(2, 10, 10)
    cams[0, :, :4] = 0.5  # class 0 fills the left side
    cams[1, 2, 7] = 0.2  # class 1: one weak seed on the right
    out = propagate_labels(cams, boundary, bg_threshold=0.35, exp_times=6)
    assert out.shape == (3, 10, 10)
    assert torch.all(out[0] == 0.35)
    assert out[1:].max() == pytest.approx(1.0)  # divided by the global max
    labels = out.argmax(0)
    assert torch.all(labels[:, :4] == 1)  # left: class 0 (index 1), above the background plane
    assert torch.all(labels[:, 4:] == 0)  # right: the spread seed is weak -> background

    no_bg = propagate_labels(cams, boundary, bg_threshold=None, exp_times=6)
    assert no_bg.shape == (2, 10, 10)
    torch.testing.assert_close(no_bg, out[1:])
    assert torch.all(no_bg.argmax(0)[:, 5:] == 1)  # without background the right side is class 1

    zeros = propagate_labels(torch.zeros(1, 5, 5), torch.zeros(5, 5), exp_times=2)
    assert torch.all(zeros == 0)
    with pytest.raises(ValueError, match="bg_threshold"):
        propagate_labels(cams, boundary, bg_threshold=1.5)
