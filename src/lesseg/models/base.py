"""The model every lesseg architecture fills in (encoder, decoder, head), and the model registry.

Example:
    >>> from lesseg.models import create_model
    >>> model = create_model("deeplabv3plus", backbone="resnet18", num_classes=21)
    >>> groups = model.param_groups()
    >>> opt = torch.optim.SGD(
    ...     [{"params": groups["backbone_weight"], "lr": 0.01},
    ...      {"params": groups["backbone_bias"], "lr": 0.02, "weight_decay": 0},
    ...      {"params": groups["new_weight"], "lr": 0.1},
    ...      {"params": groups["new_bias"], "lr": 0.2, "weight_decay": 0}], momentum=0.9)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

from lesseg.errors import ConfigError, did_you_mean
from lesseg.models.backbones import Backbone

PARAM_GROUPS = ("backbone_weight", "backbone_bias", "new_weight", "new_bias")


def split_param_groups(model: nn.Module, encoder: nn.Module) -> dict[str, list[nn.Parameter]]:
    """``model``'s trainable parameters in the four groups of :data:`PARAM_GROUPS`: those of ``encoder``
    (a submodule) are ``backbone_*``, the rest ``new_*``; tensors with 2+ dims are ``*_weight``, 1-D ones
    (biases, norm scales) ``*_bias``. Frozen parameters are left out; shared tensors appear once."""
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in PARAM_GROUPS}
    encoder_ids = {id(p) for p in encoder.parameters()}
    for p in model.parameters():  # nn.Module.parameters() yields each shared tensor once
        if not p.requires_grad:
            continue
        where = "backbone" if id(p) in encoder_ids else "new"
        groups[f"{where}_{'weight' if p.ndim > 1 else 'bias'}"].append(p)
    return groups


class SegmentationModel(nn.Module):
    """Base of lesseg models: ``encoder`` (a :class:`~lesseg.models.Backbone`) -> ``decoder`` -> ``head``.

    ``forward(x)`` checks the input (:meth:`check_input`), runs the encoder and hands its feature list to
    :meth:`decode`, which each architecture implements and which returns a dict of tensors (always with
    ``"logits"``).

    Args:
        encoder: the backbone; its parameters form the "backbone" groups of :meth:`param_groups`.
        decoder: layers between backbone and head (``nn.Identity()`` when there are none).
        head: the final prediction layer.
    """

    #: Channels of the input images (RGB).
    in_channels = 3

    def __init__(self, encoder: Backbone, decoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the model on a batch ``x`` of shape ``[N, 3, H, W]``."""
        self.check_input(x)
        return self.decode(self.encoder(x), tuple(x.shape[-2:]))

    def decode(self, features: list[torch.Tensor], input_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Turn the encoder's feature maps (shallow to deep) into the outputs; set by each architecture."""
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the expected shape when ``x`` cannot be fed to the model.

        Valid: a float tensor ``[N, 3, H, W]``; for a backbone with a fixed input size (a ViT built with
        ``img_size``), ``H, W`` must equal it (ConfigError naming ``model.img_size``).
        """
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor of shape [N, 3, H, W], got {type(x).__name__}")
        if x.ndim != 4:
            hint = " (add a batch dimension: x.unsqueeze(0))" if x.ndim == 3 else ""
            raise ValueError(f"expected a 4-D input [N, 3, H, W], got shape {list(x.shape)}{hint}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channels (RGB) in dim 1 of [N, C, H, W], got shape "
                f"{list(x.shape)}; grey images must be repeated to 3 channels, channels-last moved to dim 1"
            )
        if not x.is_floating_point():
            raise ValueError(f"expected a float input (normalised image), got dtype {x.dtype}")
        self.encoder.check_input_size(int(x.shape[2]), int(x.shape[3]))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split four ways, the IRN / Puzzle-CAM convention.

        ``backbone_weight`` (encoder tensors with 2+ dims: conv/linear kernels, ViT embeddings),
        ``backbone_bias`` (encoder biases and 1-D norm/scale parameters), ``new_weight`` and ``new_bias``
        (the same split of decoder and head). Optimisers typically scale the learning rate by 1, 2, 10, 20
        and skip weight decay on the bias groups. Each trainable parameter appears in exactly one group.
        """
        return split_param_groups(self, self.encoder)


_MODELS: dict[str, Callable[..., SegmentationModel]] = {}


def register_model(name: str) -> Callable:
    """Class/function decorator adding a model constructor to the registry under ``name``."""

    def add(fn: Callable) -> Callable:
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].__qualname__})")
        _MODELS[name] = fn
        return fn

    return add


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> SegmentationModel:
    """Build a registered model, e.g. ``create_model("cam_classifier", backbone="resnet50", num_classes=20)``.

    Raises:
        ConfigError: ``name`` is not registered, or an argument is not an option of that model; the
            message lists the valid names.
    """
    if name not in _MODELS:
        raise ConfigError(
            f"model.name={name!r} is not a model{did_you_mean(name, _MODELS)}; valid: {list_models()}"
        )
    fn = _MODELS[name]
    options = _options(fn)
    unknown = [k for k in kwargs if k not in options]
    if unknown:
        raise ConfigError(
            f"model.{unknown[0]} is not an option of {name!r}{did_you_mean(unknown[0], options)}; "
            f"valid: {sorted(options)}"
        )
    return fn(**kwargs)


def _options(fn: Callable) -> Sequence[str]:
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
