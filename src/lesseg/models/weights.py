"""Reading local checkpoints (``model.weights``) and matching their keys to a timm feature backbone.

A checkpoint may come in two layouts, both accepted:

* a *feature* checkpoint, saved from a :class:`~lesseg.models.Backbone` (or its timm ``features_only``
  module): keys such as ``body.layer1.0.conv1.weight`` or ``stages_0.blocks.0.conv_dw.weight``;
* a *classifier* checkpoint of the full timm model (what ``timm.create_model(name).state_dict()`` or
  timm's training script saves): keys such as ``stages.0.blocks.0.conv_dw.weight`` plus the classifier
  (``fc.*``, ``head.*``), which a feature backbone does not have and which is dropped.

timm's feature wrappers rename modules (``stages.0`` becomes ``stages_0``; a ViT is held under ``model.``),
so keys are compared after :func:`normalize_key`, which maps both spellings to one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from lesseg.errors import ConfigError

#: File name endings accepted for ``model.weights``.
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
#: Prefixes stripped when *every* key carries them (DataParallel, a SegmentationModel, a Backbone).
STRIP_PREFIXES = ("module.", "encoder.", "body.")
#: Keys of a checkpoint dict under which the state_dict itself may be nested.
NESTED_KEYS = ("state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from a local ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors`` file.

    A dict holding the state_dict under ``"state_dict"`` or ``"model"`` is unwrapped, and a ``module.``
    (DataParallel), ``encoder.`` or ``body.`` prefix shared by all keys is removed.

    Args:
        path: the file. Torch files are read with ``weights_only=True`` (no pickled code runs).

    Raises:
        ConfigError: the file is missing, has another ending, cannot be read or holds no state_dict;
            the message names ``model.weights`` and the path.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.weights: no such file: {str(path)!r}")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ConfigError(f"model.weights: {str(path)!r} must end in one of {', '.join(WEIGHT_SUFFIXES)}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickled objects, wrong format: all the user's file
        raise ConfigError(f"model.weights: could not read {str(path)!r}: {type(e).__name__}: {e}") from e
    while isinstance(obj, Mapping) and any(isinstance(obj.get(k), Mapping) for k in NESTED_KEYS):
        obj = next(obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), Mapping))
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = list(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
        raise ConfigError(f"model.weights: {str(path)!r} holds no state_dict of tensors (found {found})")
    return strip_prefixes(dict(obj))


def read_normalization(path: str | Path) -> dict | None:
    """The input statistics a checkpoint says it expects: the ``conversion.normalization`` record of a file
    written by ``lesseg weights`` (``{"mean": [...], "std": [...]}``), else None (ImageNet's)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return None
    try:
        obj = torch.load(path, map_location="meta", weights_only=True)
    except Exception:
        return None
    record = obj.get("conversion") if isinstance(obj, Mapping) else None
    norm = record.get("normalization") if isinstance(record, Mapping) else None
    return dict(norm) if isinstance(norm, Mapping) and {"mean", "std"} <= set(norm) else None


def strip_prefixes(state_dict: dict[str, torch.Tensor], prefixes: Iterable[str] = STRIP_PREFIXES):
    """Remove each of ``prefixes`` (repeatedly, in any order) while every key starts with it."""
    prefixes = tuple(prefixes)
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if state_dict and all(k.startswith(p) for k in state_dict):
                state_dict = {k[len(p) :]: v for k, v in state_dict.items()}
                changed = True
    return state_dict


def normalize_key(key: str) -> str:
    """One spelling for a parameter name in a full timm model and in its feature wrapper."""
    return key.replace(".", "_")


def match_keys(
    own_keys: Iterable[str], checkpoint_keys: Iterable[str], full_keys: Iterable[str]
) -> tuple[dict[str, str], list[str], list[str]]:
    """Pair the keys a feature backbone needs with a checkpoint's keys.

    Args:
        own_keys: ``state_dict()`` keys of the timm feature module.
        checkpoint_keys: keys of the checkpoint (already unwrapped).
        full_keys: ``state_dict()`` keys of the full timm model (with its classifier), so that a
            checkpoint key the feature module merely does not use (``fc.weight``) is not "unexpected".

    Returns:
        ``(pairs, missing, unexpected)``: ``pairs`` maps own key to checkpoint key; ``missing`` are own
        keys without a partner; ``unexpected`` are checkpoint keys belonging to neither model.
    """
    own_keys, full = list(own_keys), {normalize_key(k) for k in full_keys}
    ckpt = {normalize_key(k): k for k in checkpoint_keys}
    spellings = {k: _spellings(k) for k in own_keys}
    pairs = {}
    for k, names in spellings.items():
        found = [ckpt[n] for n in names if n in ckpt]
        if found:
            pairs[k] = found[0]
    missing = [k for k in own_keys if k not in pairs]
    known = full | {n for names in spellings.values() for n in names}
    unexpected = [k for n, k in ckpt.items() if n not in known]
    return pairs, missing, unexpected


def _spellings(key: str) -> list[str]:
    """Normalised names of an own key; a ViT feature wrapper holds the network under ``model.``."""
    names = [normalize_key(key)]
    if key.startswith("model."):
        names.append(normalize_key(key[len("model.") :]))
    return names


def describe_mismatch(path, name: str, missing: list[str], unexpected: list[str], shown: int = 5) -> str:
    """One message listing the first few missing and unexpected keys."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[:shown]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:shown]}")
    return (
        f"model.weights: {str(path)!r} does not fit backbone {name!r}: {'; '.join(parts)}. "
        "Expected a checkpoint of this timm architecture (a classifier or a lesseg Backbone state_dict)."
    )
