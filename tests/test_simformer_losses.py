"""SimFormer's set losses: focal and dice against hand values, pairwise costs, weak-shot matching, the
complementary loss."""

import math

import pytest
import torch

from lesseg.methods.simformer.losses import (
    IGNORE_PROPOSAL_LOGIT,
    complementary_loss,
    dice_loss,
    pairwise_mask_costs,
    sigmoid_focal_loss,
    weak_shot_match,
)


def test_pairwise_costs_are_the_losses_of_each_pair():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 20), (torch.rand(4, 20) > 0.5).float()
    focal, dice = pairwise_mask_costs(logits, targets)
    for q in range(3):
        for t in range(4):
            assert focal[q, t].item() == pytest.approx(
                sigmoid_focal_loss(logits[q : q + 1], targets[t : t + 1], 1).item(), rel=1e-5
            )
            assert dice[q, t].item() == pytest.approx(
                dice_loss(logits[q : q + 1], targets[t : t + 1], 1).item(), rel=1e-5
            )


def test_matching_pairs_base_targets_by_mask_and_novel_ones_by_class():
    left, right = torch.zeros(4, 4), torch.zeros(4, 4)
    left[:, :2], right[:, 2:] = 1, 1
    masks = torch.stack([right * 8 - 4, left * 8 - 4, torch.zeros(4, 4)])  # query 0: right, 1: left, 2: none
    class_logits = torch.zeros(3, 4)  # 3 classes + no object
    class_logits[2, 2] = 5.0  # query 2 says class 2
    labels = torch.tensor([0, 1, 2])  # base 0 (left), base 1 (right), novel 2
    rows, cols = weak_shot_match(class_logits, masks, labels, torch.stack([left, right]))
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0, 2: 2}


def test_complementary_loss_supervises_the_region_no_base_class_covers():
    base = torch.zeros(1, 2, 2)
    base[0, 0] = 1  # the top row is base
    valid = torch.tensor([[True, True], [True, False]])  # one padded pixel: a negative
    novel = torch.tensor([[[-9.0, -9.0], [4.0, -9.0]]])
    pred = torch.tensor([[IGNORE_PROPOSAL_LOGIT, IGNORE_PROPOSAL_LOGIT, 4.0, IGNORE_PROPOSAL_LOGIT]])
    target = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    expected = 20 * sigmoid_focal_loss(pred, target, 1) + dice_loss(pred, target, 1)
    assert complementary_loss(novel, base, valid).item() == pytest.approx(expected.item(), rel=1e-6)
    p = 1 / (1 + math.exp(-IGNORE_PROPOSAL_LOGIT))
    assert p == pytest.approx(0.05)
    # no novel query matched: the constant proposal alone
    alone = complementary_loss(torch.zeros(0, 2, 2), base, valid)
    assert alone.item() == pytest.approx((20 * sigmoid_focal_loss(torch.full((1, 4), IGNORE_PROPOSAL_LOGIT), target, 1)
                                          + dice_loss(torch.full((1, 4), IGNORE_PROPOSAL_LOGIT), target, 1)).item())  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_matching_is_the_brute_force_minimum(seed):
    """On small random cases (4 queries; 2 base targets with masks, 1 novel without), the matching's total
    cost is the least over every assignment of targets to distinct queries."""
    import itertools

    g = torch.Generator().manual_seed(seed)
    class_logits, mask_logits = torch.randn(4, 4, generator=g), torch.randn(4, 3, 3, generator=g)
    labels = torch.tensor([0, 2, 1])
    base = (torch.rand(2, 3, 3, generator=g) > 0.5).float()
    cost = -class_logits.softmax(-1)[:, labels]
    focal, dice = pairwise_mask_costs(mask_logits.flatten(1), base.flatten(1))
    cost[:, :2] += 20 * focal + dice
    rows, cols = weak_shot_match(class_logits, mask_logits, labels, base)
    got = sum(cost[r, c].item() for r, c in zip(rows, cols))
    best = min(
        sum(cost[q, t].item() for t, q in enumerate(perm)) for perm in itertools.permutations(range(4), 3)
    )
    assert got == pytest.approx(best, abs=1e-5) and sorted(cols.tolist()) == [0, 1, 2]
