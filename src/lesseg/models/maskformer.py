"""MaskFormer: Cheng, Schwing and Kirillov, "Per-Pixel Classification is Not All You Need for Semantic
Segmentation", NeurIPS 2021; written here in plain PyTorch (the official code is a detectron2 project).
SimFormer (weak-shot, :mod:`lesseg.methods.simformer`) trains it.

* Pixel decoder: a top-down FPN over the backbone's last four levels (strides 4-32 of a ResNet): the
  deepest through a 3x3 convolution, GroupNorm, ReLU; each finer one through a 1x1 lateral convolution
  (GroupNorm, no bias) added to the coarser result upsampled (nearest), then a 3x3 convolution, GroupNorm,
  ReLU; a last 3x3 convolution gives the ``mask_dim`` per-pixel mask features at stride 4.
* Transformer decoder (DETR's, post-norm, no encoder layers): ``num_queries`` learned query embeddings
  attend to the deepest backbone map (1x1 projected to ``hidden_dim``, with a normalised sine positional
  encoding); each of the ``dec_layers`` layers is self-attention, cross-attention, FFN, each followed by
  dropout, a residual and LayerNorm; every layer's output goes through one shared final LayerNorm.
* Heads on each layer's queries (deep supervision): class logits over the classes plus "no object"
  (linear), and a mask embedding (3-layer MLP) whose dot product with the mask features is the query's
  mask logit map.

Semantic inference (:func:`semantic_scores`): softmax over classes without "no object", times the sigmoid
masks, summed over queries.

Example:
    >>> import torch
    >>> net = MaskFormer("resnet18", num_classes=5, num_queries=10, dec_layers=2)
    >>> out = net.eval()(torch.randn(1, 3, 64, 64))
    >>> out["pred_logits"].shape, out["pred_masks"].shape, len(out["aux_outputs"])
    (torch.Size([1, 10, 6]), torch.Size([1, 10, 16, 16]), 1)
    >>> out["logits"].shape  # the semantic scores at the input size, what Predictor reads
    torch.Size([1, 5, 64, 64])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.errors import ConfigError
from lesseg.models.backbones import create_backbone
from lesseg.models.base import SegmentationModel, register_model

#: how the decoder's queries start (see :class:`MaskFormer`)
QUERY_INITS = ("zeros", "learned")


def conv_gn(cin: int, cout: int, kernel: int, relu: bool = True) -> nn.Sequential:
    """Convolution without bias, GroupNorm (32 groups), optional ReLU; Xavier-uniform init (c2_xavier)."""
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
    nn.init.xavier_uniform_(conv.weight)
    layers = [conv, nn.GroupNorm(math.gcd(32, cout), cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class PixelDecoder(nn.Module):
    """Top-down FPN from the deepest to the stride-4 level; returns the ``mask_dim`` mask features."""

    def __init__(self, channels: list[int], conv_dim: int = 256, mask_dim: int = 256):
        super().__init__()
        self.top = conv_gn(channels[-1], conv_dim, 3)
        self.laterals = nn.ModuleList(conv_gn(c, conv_dim, 1, relu=False) for c in channels[:-1])
        self.outputs = nn.ModuleList(conv_gn(conv_dim, conv_dim, 3) for _ in channels[:-1])
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        nn.init.xavier_uniform_(self.mask_features.weight)
        nn.init.zeros_(self.mask_features.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        y = self.top(features[-1])
        for i in reversed(range(len(features) - 1)):
            lateral = self.laterals[i](features[i])
            y = self.outputs[i](lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest"))
        return self.mask_features(y)


def sine_position_encoding(x: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised sine/cosine encoding of a ``[N, C, H, W]`` map's positions: ``[N, 2 num_feats, H,
    W]`` (y then x; each coordinate scaled to (0, 2 pi] before the frequencies)."""
    n, _, h, w = x.shape
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32, device=x.device).view(1, h, 1).expand(n, h, w)
    xx = torch.arange(1, w + 1, dtype=torch.float32, device=x.device).view(1, 1, w).expand(n, h, w)
    y, xx = y / (h + eps) * scale, xx / (w + eps) * scale
    dim_t = temperature ** (2 * (torch.arange(num_feats, device=x.device) // 2) / num_feats)
    px, py = xx[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2).to(x.dtype)


class DecoderLayer(nn.Module):
    """One post-norm DETR decoder layer: self-attention over the queries, cross-attention to the memory
    (positions added to queries and keys, not to values), FFN."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, dim)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.drops = nn.ModuleList(nn.Dropout(dropout) for _ in range(3))

    def forward(self, tgt, memory, query_pos, pos):
        q = tgt + query_pos
        tgt = self.norms[0](tgt + self.drops[0](self.self_attn(q, q, tgt, need_weights=False)[0]))
        attn = self.cross_attn(tgt + query_pos, memory + pos, memory, need_weights=False)[0]
        tgt = self.norms[1](tgt + self.drops[1](attn))
        return self.norms[2](tgt + self.drops[2](self.ffn(tgt)))


class MLP(nn.Module):
    """Linear layers with ReLU between them (the mask embedding: 3 layers of ``dim``)."""

    def __init__(self, dim: int, out: int, layers: int = 3):
        super().__init__()
        dims = [dim] * layers + [out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def semantic_scores(pred_logits: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """MaskFormer's semantic inference: ``sum_q softmax(class)_q[:K] x sigmoid(mask_q)``, ``[N, K, H, W]``
    from ``[N, Q, K+1]`` class logits and ``[N, Q, H, W]`` mask logits ("no object" dropped)."""
    probs = pred_logits.float().softmax(-1)[..., :-1]
    return torch.einsum("nqk,nqhw->nkhw", probs, pred_masks.float().sigmoid())


@register_model("maskformer")
class MaskFormer(SegmentationModel):
    """MaskFormer for semantic segmentation (see the module docstring).

    Args:
        backbone: timm model name with at least four levels (official: ResNet-50 from ImageNet).
        num_classes: classes K (the heads give K + 1 with "no object").
        output_stride: of the backbone (32: no dilation, as MaskFormer).
        num_queries, hidden_dim, heads, ffn_dim, dec_layers, dropout: the transformer decoder (100, 256, 8,
            2048, 6, 0.1 officially).
        conv_dim, mask_dim: the pixel decoder's widths (256, 256).
        query_init: the decoder's initial query features. ``zeros`` (default; MaskFormer and DETR): every
            query starts from zero and differs from the others only by its learned positional embedding;
            ``learned``: a second learned embedding per query (Mask2Former's ``query_feat``), so that the
            queries differ in their values from the first self-attention on (not official for MaskFormer;
            an option for short schedules, where the zero start can leave every query with the same mask).
        weights, pretrained: backbone initialisation (see :func:`~lesseg.models.create_backbone`).

    ``forward(x)`` returns ``pred_logits`` [N, Q, K+1], ``pred_masks`` [N, Q, H/4, W/4] (the last layer),
    ``aux_outputs`` (the same for every earlier layer), ``mask_features`` [N, mask_dim, H/4, W/4] and, in
    inference mode, ``logits``: the semantic scores bilinearly upsampled to the input size.
    """

    def __init__(self, backbone: str = "resnet50", num_classes: int = 150, output_stride: int = 32,
                 num_queries: int = 100, hidden_dim: int = 256, heads: int = 8, ffn_dim: int = 2048,
                 dec_layers: int = 6, dropout: float = 0.1, conv_dim: int = 256, mask_dim: int = 256,
                 weights: str | None = None, pretrained: bool = False, query_init: str = "zeros"):  # fmt: skip
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"model.num_classes must be a positive integer, got {num_classes!r}")
        if query_init not in QUERY_INITS:
            raise ConfigError(f"query_init must be one of {list(QUERY_INITS)}, got {query_init!r}")
        if hidden_dim % 2 or hidden_dim % heads:
            raise ConfigError(f"hidden_dim {hidden_dim} must be even and divisible by heads {heads}")
        encoder = create_backbone(backbone, output_stride, weights, pretrained)
        if len(encoder.channels) < 4:
            raise ConfigError(f"model.backbone={backbone!r} gives {len(encoder.channels)} levels; MaskFormer "
                              "needs 4 (strides 4 to 32)")  # fmt: skip
        super().__init__(encoder, PixelDecoder(encoder.channels[-4:], conv_dim, mask_dim), nn.Identity())
        self.num_classes, self.hidden_dim = num_classes, hidden_dim
        self.input_proj = nn.Conv2d(encoder.channels[-1], hidden_dim, 1)
        nn.init.xavier_uniform_(self.input_proj.weight)
        nn.init.zeros_(self.input_proj.bias)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim) if query_init == "learned" else None
        self.layers = nn.ModuleList(
            DecoderLayer(hidden_dim, heads, ffn_dim, dropout) for _ in range(dec_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, mask_dim)

    def decode(self, features: list[torch.Tensor], input_size: tuple[int, int]) -> dict:
        mask_features = self.decoder(features[-4:])
        deep = features[-1]
        memory = self.input_proj(deep).flatten(2).transpose(1, 2)  # [N, hw, d]
        pos = sine_position_encoding(deep, self.hidden_dim // 2).flatten(2).transpose(1, 2)
        n = deep.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(n, -1, -1)
        if self.query_feat is None:
            tgt = torch.zeros_like(query_pos)
        else:
            tgt = self.query_feat.weight.unsqueeze(0).expand(n, -1, -1)
        layers = []
        for layer in self.layers:
            tgt = layer(tgt, memory, query_pos, pos)
            hs = self.final_norm(tgt)
            masks = torch.einsum("nqc,nchw->nqhw", self.mask_embed(hs), mask_features)
            layers.append({"pred_logits": self.class_embed(hs), "pred_masks": masks})
        out = {**layers[-1], "aux_outputs": layers[:-1], "mask_features": mask_features}
        if not self.training:
            masks = F.interpolate(out["pred_masks"], size=input_size, mode="bilinear", align_corners=False)
            out["logits"] = semantic_scores(out["pred_logits"], masks)
        return out
