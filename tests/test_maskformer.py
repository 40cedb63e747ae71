"""MaskFormer in plain PyTorch: positional encoding, semantic inference, masks from embeddings, heads."""

import math

import pytest
import torch

from lesseg.errors import ConfigError
from lesseg.models import MaskFormer, create_model
from lesseg.models.maskformer import semantic_scores, sine_position_encoding


def test_sine_position_encoding_against_hand_values():
    enc = sine_position_encoding(torch.zeros(1, 1, 1, 2), num_feats=2)  # y then x, each (sin, cos)
    y = 1 / (1 + 1e-6) * 2 * math.pi  # the only row, normalised to 2 pi
    xs = [k / (2 + 1e-6) * 2 * math.pi for k in (1, 2)]
    for j, x in enumerate(xs):
        # num_feats 2: frequencies 10000^(2 * (i // 2) / 2) = 1, 1
        assert enc[0, :, 0, j].tolist() == pytest.approx(
            [math.sin(y), math.cos(y), math.sin(x), math.cos(x)], abs=1e-5
        )


def test_semantic_scores_against_hand_values():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])  # two queries, K = 2 + no-object
    masks = torch.tensor([[[[0.0]], [[3.0]]]])
    p0 = [math.exp(2) / (math.exp(2) + 2), 1 / (math.exp(2) + 2)]
    p1 = [1 / (2 + math.exp(5))] * 2
    s0, s1 = 0.5, 1 / (1 + math.exp(-3))
    expected = [p0[k] * s0 + p1[k] * s1 for k in range(2)]
    assert semantic_scores(logits, masks).flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_masks_are_query_embeddings_dotted_with_the_mask_features_on_every_layer():
    torch.manual_seed(0)
    net = MaskFormer("resnet18", num_classes=4, num_queries=7, dec_layers=3, hidden_dim=32, heads=4, ffn_dim=64,
                     conv_dim=32, mask_dim=16).eval()  # fmt: skip
    out = net(torch.randn(2, 3, 64, 96))
    assert out["mask_features"].shape == (2, 16, 16, 24) and len(out["aux_outputs"]) == 2
    assert out["pred_logits"].shape == (2, 7, 5) and out["logits"].shape == (2, 4, 64, 96)
    for layer in [*out["aux_outputs"], out]:
        assert layer["pred_masks"].shape == (2, 7, 16, 24)
    assert not torch.allclose(out["aux_outputs"][0]["pred_masks"], out["pred_masks"])  # each layer its own
    net.train()
    assert "logits" not in net(torch.randn(2, 3, 64, 64))  # training reads the raw outputs


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="heads"):
        create_model("maskformer", backbone="resnet18", num_classes=3, hidden_dim=30, heads=8)
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("maskformer", backbone="resnet18", num_classes=0)


def test_zero_started_queries_differ_only_by_position_and_learned_ones_by_their_features():
    torch.manual_seed(0)
    kwargs = dict(num_classes=3, num_queries=4, dec_layers=2, hidden_dim=32, heads=4, ffn_dim=64, conv_dim=32,
                  mask_dim=16)  # fmt: skip
    x = torch.randn(1, 3, 64, 64)
    for init, same in (("zeros", True), ("learned", False)):
        net = MaskFormer("resnet18", query_init=init, **kwargs).eval()
        with torch.no_grad():
            net.query_embed.weight.copy_(net.query_embed.weight[:1].expand(4, -1))  # one position for all
            masks = net(x)["pred_masks"][0]
        assert torch.allclose(masks, masks[:1].expand_as(masks), atol=1e-5) is same, init
    assert "query_feat.weight" not in MaskFormer("resnet18", **kwargs).state_dict()  # old checkpoints load
    with pytest.raises(ConfigError, match="query_init must be one of"):
        MaskFormer("resnet18", query_init="random", **kwargs)
