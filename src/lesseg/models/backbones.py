"""Feature backbones: any timm model with ``features_only=True``, dilated to output stride 8, 16 or 32.

Dilation (atrous convolution, Chen et al. 2017, "Rethinking Atrous Convolution") keeps the last stages
at a finer stride instead of downsampling, as CAM methods (IRN, Puzzle-CAM: stride 16) and DeepLab
(stride 8 or 16) need. timm dilates through its ``output_stride`` argument in the families listed in
:data:`DILATED_FAMILIES`; every other family only gives its native stride (a ViT with 16x16 patches: 16;
Swin, DenseNet: 32), and asking for another is a :class:`~lesseg.errors.ConfigError` naming the valid one.

Example:
    >>> import torch
    >>> from lesseg.models import create_backbone
    >>> backbone = create_backbone("resnet18", output_stride=8)
    >>> backbone.reductions, backbone.channels
    ([2, 4, 8, 8, 8], [64, 64, 128, 256, 512])
    >>> [f.shape[-1] for f in backbone(torch.zeros(1, 3, 64, 64))]
    [32, 16, 8, 8, 8]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from lesseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lesseg.errors import ConfigError, did_you_mean
from lesseg.models.weights import describe_mismatch, match_keys, read_normalization, read_state_dict

#: Output strides a user may ask for (32 means no dilation for a 5-level CNN).
OUTPUT_STRIDES = (8, 16, 32)

#: timm families (the module of a model's entry point) that dilate through ``output_stride``.
#: Verified with timm 1.0.31: built with ``features_only=True`` at strides 8/16/32 and checked that the
#: last map of a 64x64 input is 8x8/4x4/2x2 (e.g. resnet18/50, seresnext26d_32x4d, resnest14d,
#: res2net50_14w_8s, skresnet18, resnetv2_50, convnext_atto, convnextv2_atto, efficientnet_b0, mixnet_s,
#: mobilenetv3_small_100, mobilenetv4_conv_small, lcnet_050, regnetx_002, regnety_002, cspresnet50,
#: cspdarknet53, rexnet_100, gernet_s, mobileone_s0, nf_resnet26, dm_nfnet_f0, xception41, mobilevit_xxs,
#: hardcorenas_a, inception_next_tiny). VGG: see VGG_STRIDES. Not listed, native stride only (timm rejects
#: ``output_stride``):
#: vision_transformer (patch size), deit, eva, beit, swin, maxxvit, densenet, dla, hrnet, dpn,
#: vovnet, ghostnet, levit, fastvit, repvit, tresnet, inception_v3, metaformer, pvt_v2, twins, ...
DILATED_FAMILIES: dict[str, tuple[int, ...]] = {
    family: OUTPUT_STRIDES
    for family in (
        "resnet", "resnest", "res2net", "sknet", "resnetv2", "convnext", "efficientnet", "mobilenetv3",
        "regnet", "cspnet", "rexnet", "byobnet", "nfnet", "xception_aligned", "mobilevit", "hardcorenas",
        "inception_next",
    )
}  # fmt: skip


#: VGG: timm cannot dilate it; lesseg does, the DeepLab-LargeFOV way that MCIS's classifier uses (Chen et
#: al. 2015; Sun et al. 2020): the pool5 level is left out, and for stride 8 pool4 becomes a 3x3 stride-1
#: max-pool and the conv5 convolutions get dilation 2. No parameter changes, so ImageNet weights still load.
VGG_STRIDES = (8, 16, 32)


def family_of(name: str) -> str:
    """timm family of a model name: the module defining it (``"resnet"``, ``"vision_transformer"``)."""
    return timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1]


class Backbone(nn.Module):
    """A timm feature extractor returning every requested level, shallow to deep.

    Build it with :func:`create_backbone`. Attributes:

    * ``name``: the timm model name; ``output_stride``: stride of the deepest level of the network;
    * ``channels``: channels of each returned map; ``reductions``: stride of each returned map, after
      dilation (a 64x64 input gives a map of ``64 // r``, rounded up, per level);
    * ``img_size``: the only input size accepted (ViTs built with a fixed ``img_size``), else ``None``;
    * ``body``: the timm module (its ``feature_info`` describes every level).
    """

    def __init__(self, body: nn.Module, name: str, output_stride: int, normalization: dict | None = None):
        super().__init__()
        self.body = body
        self.set_normalization(normalization)
        self.name = name
        self.output_stride = output_stride
        self.channels: list[int] = list(body.feature_info.channels())
        self.reductions: list[int] = list(body.feature_info.reduction())
        patch_embed = getattr(getattr(body, "model", body), "patch_embed", None)
        fixed = patch_embed is not None and getattr(patch_embed, "strict_img_size", False)
        self.img_size: tuple[int, int] | None = tuple(patch_embed.img_size) if fixed else None

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ConfigError when the backbone cannot take an image of this size."""
        if self.img_size is not None and (height, width) != self.img_size:
            raise ConfigError(
                f"backbone {self.name!r} was built for {self.img_size[0]}x{self.img_size[1]} inputs but got "
                f"{height}x{width}; set model.img_size to the crop size (or resize the images)"
            )

    def set_normalization(self, normalization: dict | None) -> None:
        """The input statistics the weights expect (``{"mean": [...], "std": [...]}`` on a 0..1 scale).
        lesseg's data pipeline always normalises with the ImageNet statistics; where the weights expect
        others (a timm model pretrained on other data), the backbone converts its input first, so every
        method feeds what its weights were trained on. ``None``: ImageNet's (no conversion)."""
        self.normalization = normalization or {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        mean, std = (
            torch.tensor(self.normalization[k], dtype=torch.float32).view(1, -1, 1, 1)
            for k in ("mean", "std")
        )
        fed_mean, fed_std = (
            torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD)
        )
        self.convert_input = not (torch.allclose(mean, fed_mean) and torch.allclose(std, fed_std))
        # x_weights = (x_fed * std_fed + mean_fed - mean) / std; not in the state_dict (it follows the weights)
        self.register_buffer("input_scale", fed_std / std, persistent=False)
        self.register_buffer("input_shift", (fed_mean - mean) / std, persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps ``[N, channels[i], ~H/reductions[i], ~W/reductions[i]]``, shallow to deep, of
        ImageNet-normalised images."""
        if self.convert_input:
            x = x * self.input_scale.to(x.dtype) + self.input_shift.to(x.dtype)
        return list(self.body(x))


def create_backbone(
    name: str,
    output_stride: int = 16,
    weights: str | Path | None = None,
    pretrained: bool = False,
    out_indices: Sequence[int] | None = None,
    img_size: int | None = None,
) -> Backbone:
    """Create a :class:`Backbone` from a timm model name.

    Args:
        name: any ``timm.list_models()`` name, e.g. ``"resnet50"``, ``"convnext_tiny"``,
            ``"vit_small_patch16_224"``.
        output_stride: stride of the deepest map: 8, 16 or 32 (no dilation). Families in
            :data:`DILATED_FAMILIES` take all three; any other only its native stride.
        weights: path of a local ``.pth``/``.pt``/``.bin``/``.safetensors`` checkpoint: a full timm
            classifier (its ``fc``/``head`` keys are dropped), or a saved Backbone state_dict.
        pretrained: download timm's ImageNet weights (needs network access). With neither ``weights``
            nor ``pretrained`` the backbone starts from random init, as lesseg's benchmarks do. The input
            statistics these weights expect (timm's ``pretrained_cfg``, or the ``conversion`` record of a
            file ``lesseg weights`` wrote) are what the backbone converts its ImageNet-normalised input to.
        out_indices: which levels to return (timm's numbering, e.g. ``(1, 4)``); default timm's: every
            level of a CNN, the last three blocks of a ViT.
        img_size: input size for transformer backbones with a fixed grid (ViT); ``None`` keeps timm's.

    Raises:
        ConfigError: unknown name, unsupported stride, unreadable or non-matching weights, failed download.
    """
    if not timm.is_model(name):
        raise ConfigError(
            f"model.backbone={name!r} is not a timm model{did_you_mean(name, timm.list_models())}; "
            "see timm.list_models()"
        )
    if output_stride not in OUTPUT_STRIDES:
        raise ConfigError(f"model.output_stride={output_stride!r} is not valid; use one of {OUTPUT_STRIDES}")
    if weights is not None and pretrained:
        raise ConfigError("set model.weights (a local file) or model.pretrained=true, not both")
    family = family_of(name)
    kwargs: dict = {"features_only": True}
    if family in DILATED_FAMILIES:
        kwargs["output_stride"] = output_stride
    if family == "vgg" and output_stride in (8, 16):
        if out_indices is not None and max(out_indices) > 4:
            raise ConfigError(
                f"{name} at output stride {output_stride} has levels 0-4, got out_indices={out_indices}"
            )
        kwargs["out_indices"] = tuple(out_indices or range(5))  # no pool5 level
    if out_indices is not None and "out_indices" not in kwargs:
        kwargs["out_indices"] = tuple(out_indices)
    if img_size is not None:
        kwargs["img_size"] = img_size
    state_dict = read_state_dict(weights) if weights is not None else None
    try:  # check the stride on a weightless copy first: fails fast, before any download
        with torch.device("meta"):
            probe = _build(name, kwargs)
    except ConfigError:
        raise
    except Exception:  # a model whose init needs real tensors; checked after the real build instead
        probe = None
    if family == "vgg":
        body = _build(name, kwargs, pretrained)
        if state_dict is not None:
            body = _load_weights(body, name, kwargs, state_dict, weights)
        backbone = _dilated_vgg(body, name, output_stride)
    else:
        if probe is not None:
            _check_stride(probe, name, family, output_stride)
        body = _build(name, kwargs, pretrained)
        _check_stride(body, name, family, output_stride)
        if state_dict is not None:
            body = _load_weights(body, name, kwargs, state_dict, weights)
        backbone = Backbone(body, name, output_stride)
    if weights is not None:
        backbone.set_normalization(read_normalization(weights))
    elif pretrained:
        cfg = getattr(body, "pretrained_cfg", {}) or {}
        if cfg.get("mean") and cfg.get("std"):
            backbone.set_normalization({"mean": list(cfg["mean"]), "std": list(cfg["std"])})
    return backbone


def normalization_of(model) -> dict | None:
    """The input statistics the weights of a ``ModelConfig`` expect, without building it: the record of a
    ``model.weights`` file, timm's ``pretrained_cfg`` with ``model.pretrained``, else None (ImageNet's).
    For a network rebuilt from a run's own checkpoint, which keeps no record of it."""
    if model.weights:
        return read_normalization(model.weights)
    if model.pretrained:
        cfg = timm.get_pretrained_cfg(model.backbone)
        if cfg is not None and cfg.mean and cfg.std:
            return {"mean": list(cfg.mean), "std": list(cfg.std)}
    return None


def _dilated_vgg(body: nn.Module, name: str, output_stride: int) -> Backbone:
    """A timm VGG feature extractor at ``output_stride`` (see :data:`VGG_STRIDES`)."""
    if output_stride not in VGG_STRIDES:
        raise ConfigError(
            f"model.output_stride={output_stride} is not valid for {name!r}; use one of {VGG_STRIDES}"
        )
    backbone = Backbone(body, name, output_stride)
    if output_stride == 8:
        pools = [m for m in body.modules() if isinstance(m, nn.MaxPool2d)]
        convs = [m for m in body.modules() if isinstance(m, nn.Conv2d)]
        pools[-1].kernel_size, pools[-1].stride, pools[-1].padding = 3, 1, 1  # pool4
        for conv in convs[-3:]:  # conv5_1..conv5_3
            conv.dilation, conv.padding = (2, 2), (2, 2)
    backbone.reductions = [min(r, output_stride) for r in backbone.reductions]
    return backbone


def _build(name: str, kwargs: dict, pretrained: bool = False, **extra) -> nn.Module:
    """``timm.create_model`` with its errors turned into ConfigErrors naming the option."""
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs, **extra)
    except OSError as e:  # URLError, requests/huggingface_hub connection errors, offline cache misses
        raise ConfigError(
            f"could not fetch pretrained weights for {name} (no network?); set model.weights to a local "
            f".pth or .safetensors file, or model.pretrained=false ({type(e).__name__}: {e})"
        ) from e
    except TypeError as e:
        if "img_size" in str(e):
            raise ConfigError(
                f"model.img_size is not an option of {name!r} (only for ViT-like models)"
            ) from e
        raise
    except (IndexError, AssertionError) as e:
        if "out_indices" in kwargs:
            raise ConfigError(f"model.out_indices={kwargs['out_indices']} is not valid for {name!r}") from e
        raise
    except RuntimeError as e:
        if pretrained and "No pretrained weights" in str(e):
            raise ConfigError(
                f"timm has no pretrained weights for {name}; set model.weights to a local file "
                "or model.pretrained=false"
            ) from e
        raise


def _check_stride(body: nn.Module, name: str, family: str, output_stride: int) -> None:
    """Check the deepest level of the whole network really has ``output_stride`` (timm may ignore it)."""
    actual = body.feature_info.info[-1]["reduction"]
    if actual == output_stride:
        return
    valid = DILATED_FAMILIES.get(family, (actual,))
    why = "timm did not apply it" if family in DILATED_FAMILIES else "this family cannot dilate"
    raise ConfigError(
        f"model.output_stride={output_stride} is not supported by {name!r} (family {family!r}: {why}, "
        f"its deepest map has stride {actual}); valid output strides for {name!r}: {list(valid)}"
    )


def _load_weights(body: nn.Module, name: str, kwargs: dict, state_dict: dict, path) -> nn.Module:
    """Load a local checkpoint into ``body``; through timm's loader when shapes need adapting."""
    full_kwargs = {k: v for k, v in kwargs.items() if k not in ("features_only", "out_indices")}
    try:
        with torch.device("meta"):  # key names of the full classifier, without allocating it
            full_keys = list(timm.create_model(name, **full_kwargs).state_dict())
    except Exception:  # a model whose init needs real tensors (e.g. calls .item())
        full_keys = list(timm.create_model(name, **full_kwargs).state_dict())
    own = body.state_dict()
    pairs, missing, unexpected = match_keys(own, state_dict, full_keys)
    if missing or unexpected:
        raise ConfigError(describe_mismatch(path, name, missing, unexpected))
    if all(own[k].shape == state_dict[c].shape for k, c in pairs.items()):
        body.load_state_dict({k: state_dict[c] for k, c in pairs.items()})
        return body
    # Shapes differ (e.g. a ViT position embedding for another img_size): timm's own checkpoint filter
    # resamples them. It expects the full model's key names and loads non-strictly, so check afterwards.
    by_norm = {k.replace(".", "_"): k for k in full_keys}
    renamed = {by_norm.get(k.replace(".", "_"), k): v for k, v in state_dict.items()}
    try:
        body = _build(name, kwargs, True, pretrained_cfg_overlay={"state_dict": renamed})
    except RuntimeError as e:
        raise ConfigError(f"model.weights: {str(path)!r} does not fit backbone {name!r}: {e}") from e
    loaded = body.state_dict()
    wrong = [k for k, c in pairs.items() if loaded[k].shape == state_dict[c].shape]
    wrong = [k for k in wrong if not torch.equal(loaded[k], state_dict[pairs[k]].to(loaded[k].dtype))]
    if wrong:
        raise ConfigError(
            f"model.weights: {str(path)!r}: timm did not load {len(wrong)} key(s), e.g. {wrong[:5]}"
        )
    return body
