"""MCIS: co-attention by hand (a non-symmetric W_P catches a transposed softmax)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesseg.models.coattention import CoAttention


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_coattention_2x3_by_hand():
    # C = 2 channels; image m has 2 positions (1x2), image n has 3 (1x3)
    f_m = np.array([[1.0, 0.0], [0.5, 2.0]])  # [C, P_m]
    f_n = np.array([[0.0, 1.0, -1.0], [1.0, 0.5, 0.0]])  # [C, P_n]
    w_p = np.array([[1.0, 2.0], [0.0, 1.0]])  # not symmetric
    s = f_m.T @ w_p @ f_n  # [P_m, P_n]
    # by hand: positions m0 = (1, 0.5), m1 = (0, 2); f_m^T W_P = [[1, 2.5], [0, 2]]; times f_n:
    assert np.allclose(s, [[2.5, 2.25, -1.0], [2.0, 1.0, 0.0]])
    z_n = f_m @ _softmax(s, axis=0)  # n's positions attend over m's
    z_m = f_n @ _softmax(s.T, axis=0)  # m's positions attend over n's
    co = CoAttention(2)
    with torch.no_grad():
        co.weight.copy_(torch.tensor(w_p))
    t = lambda a, w: torch.tensor(a, dtype=torch.float64).reshape(1, 2, 1, w)  # noqa: E731
    co = co.double()
    with torch.no_grad():
        out_m, out_n = co(t(f_m, 2), t(f_n, 3))
    assert np.allclose(out_m.reshape(2, 2).numpy(), z_m) and np.allclose(out_n.reshape(2, 3).numpy(), z_n)
    # the transposed mistake (W_P^T) gives a different answer here
    wrong = f_m @ _softmax(f_m.T @ w_p.T @ f_n, axis=0)
    assert not np.allclose(wrong, z_n)


def test_attention_sums_to_one_over_the_partner_positions():
    torch.manual_seed(0)
    co = CoAttention(8)
    a_m, a_n = co.attention(torch.randn(3, 8, 4, 5), torch.randn(3, 8, 2, 3))
    assert a_m.shape == (3, 20, 6) and a_n.shape == (3, 6, 20)
    assert torch.allclose(a_m.sum(1), torch.ones(3, 6)) and torch.allclose(a_n.sum(1), torch.ones(3, 20))


def test_coattention_errors():
    co = CoAttention(4)
    with pytest.raises(ValueError, match=r"f_n must be \[N, 4, H, W\]"):
        co(torch.zeros(1, 4, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="same number of images"):
        co(torch.zeros(1, 4, 2, 2), torch.zeros(2, 4, 2, 2))
