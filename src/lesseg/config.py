"""Run configuration: typed dataclasses built from YAML files plus dotted ``key=value`` overrides.

A config file is a small diff: its ``_base_`` files (paths relative to it) are deep-merged underneath, and
overrides such as ``optim.lr=0.1`` go on top. Keys are checked (typos get a "did you mean"), values are
coerced to the field type and checked against the field metadata (``choices``, ``min``, ``check``).
``dict`` fields merge key by key over their defaults and accept any sub-key.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml

from .errors import ConfigError, did_you_mean
from .io import atomic_write_text

__all__ = [
    "Config", "DataConfig", "MethodConfig", "ModelConfig", "OptimConfig", "StageDataConfig", "TrainConfig",
    "config_field",
    "config_hash", "config_to_dict", "hash_view", "format_config", "load_config", "method_config_class",
    "registered_methods", "save_config",
]  # fmt: skip


def _f(default: Any, **meta: Any) -> Any:
    """A dataclass field (a callable default is a factory) with validation metadata.

    ``neutral=True`` marks a key added after runs existed whose default keeps the earlier behaviour: at
    its default it is left out of stage hashes (:func:`config_hash`), so adding it re-runs nothing.
    ``eval_only=True`` marks a key that changes only evaluations (``data.val_split``): sections hash it at
    its default, so training stages ignore it; the stages that evaluate name it themselves."""
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    root: str = ""  # dataset folder
    format: str = _f(
        "auto",
        choices=("auto", "folder", "voc", "cityscapes", "cocostuff", "cocostuff10k", "ade20k", "camvid"),
    )
    options: dict[str, Any] = _f(dict)  # reader options, e.g. {"protocol": "27"}
    train_split: str = "train"
    val_split: str = _f("val", eval_only=True)  # evaluation only: changing it retrains nothing
    crop_size: int = _f(224, min=1)
    # Training images are rescaled by a random factor drawn uniformly from [low, high], then cropped.
    scale_range: tuple[float, float] = _f((0.5, 1.5), check=(lambda r: 0 < r[0] <= r[1], "0 < low <= high"))
    batch_size: int = _f(16, min=1)  # global batch over all processes
    workers: int = _f(2, min=0)
    skip_bad: bool = False  # leave out images the run's data check finds bad (listed in data_check.json)
    # Supervision regimes (lesseg.data.splits.run_splits; a method says which it trains under):
    # labeled: the training images that keep their masks (semi-supervised): a fraction such as 1/8 drawn
    # with labeled_seed, or a file of image ids (one per line; as given, or inside data.root).
    labeled: str | None = _f(None, neutral=True)
    labeled_seed: int = _f(0, neutral=True)
    # novel: the classes known only by image-level tags (weak-shot): a fraction of the object classes drawn
    # with novel_seed, or a file of class names (one per line).
    novel: str | None = _f(None, neutral=True)
    novel_seed: int = _f(0, neutral=True)


@dataclass
class StageDataConfig:
    """A trained stage's own data settings (``segmenter.data``, ``boundary.data``); each left at null
    takes the run's ``data.*`` value, so one network can train on other crops or batches than another."""

    crop_size: int | None = _f(None, min=1)
    scale_range: tuple[float, float] | None = _f(None, check=(lambda r: 0 < r[0] <= r[1], "0 < low <= high"))
    batch_size: int | None = _f(None, min=1)  # global batch over all processes

    def resolve(self, data: DataConfig) -> StageDataConfig:
        """These settings with the run's ``data`` values where unset."""
        return StageDataConfig(self.crop_size or data.crop_size, self.scale_range or data.scale_range,
                               self.batch_size or data.batch_size)  # fmt: skip


@dataclass
class ModelConfig:
    name: str = "cam_classifier"  # a registered model
    backbone: str = "resnet18"
    output_stride: int = _f(16, choices=(8, 16, 32))
    weights: str | None = None  # a local .pth/.safetensors file
    pretrained: bool = False  # timm's pretrained weights (needs network)
    norm: str = _f("bn", choices=("bn", "gn"))
    sync_bn: bool = False


def _lr_mult() -> dict[str, float]:
    return {"backbone_weight": 1.0, "backbone_bias": 2.0, "new_weight": 10.0, "new_bias": 20.0}


@dataclass
class OptimConfig:
    name: str = _f("sgd", choices=("sgd", "adam", "adamw"))
    lr: float = _f(0.01, min=0)
    weight_decay: float = _f(1e-4, min=0)
    momentum: float = _f(0.9, min=0)
    nesterov: bool = False
    betas: tuple[float, float] = _f((0.9, 0.999), check=(lambda b: all(0 <= x < 1 for x in b), "in [0, 1)"))
    lr_mult: dict[str, float] = _f(_lr_mult)  # learning-rate multiplier per parameter group
    schedule: str = _f("poly", choices=("poly", "multistep", "constant"))
    poly_power: float = _f(0.9, min=0)
    milestones: list[int] = _f(
        list, check=(lambda m: m == sorted(m) and min(m, default=0) >= 0, "sorted, >= 0")
    )
    gamma: float = _f(0.1, min=0)
    warmup_steps: int = _f(0, min=0)
    grad_clip: float | None = _f(None, check=(lambda v: v > 0, "positive or null"))  # max total grad norm


@dataclass
class TrainConfig:
    epochs: int = _f(5, min=0)  # 0: no training (evaluate the initial network, e.g. a k-means baseline)
    seed: int = 0
    amp: str = _f("auto", choices=("auto", "bf16", "fp16", "off"))  # auto: bf16 where supported
    device: str = _f(
        "auto", check=(re.compile(r"auto|cpu|cuda(:\d+)?").fullmatch, "auto, cpu, cuda or cuda:N")
    )
    checkpoint_every: int = _f(0, min=0)  # also checkpoint every N steps (0 = only every epoch)
    log_every: int = _f(10, min=1)
    deterministic: bool = False


@dataclass
class MethodConfig:
    """Base of the ``method`` section: its ``name`` picks the registered method (:mod:`lesseg.registry`),
    whose own config class (a subclass with the method's fields, declared in the method's file) the
    loader builds. The CAM baseline has no fields of its own and uses this class."""

    name: str = "cam"
    #: set by :func:`lesseg.registry.register_method` on a method's own config class
    registered_name: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        registered = type(self).__dict__.get("registered_name")
        if registered:
            self.name = registered  # a method's own config class always carries its name


def method_config_class(name: str) -> type[MethodConfig]:
    """The config class of the ``method`` section of method ``name`` (ConfigError if none is registered)."""
    from lesseg.registry import get_method

    return getattr(get_method(name), "config_class", MethodConfig)


def registered_methods() -> list[str]:
    from lesseg.registry import registered_methods as names

    return names()


#: public name of the field helper, for method files declaring their config sections
config_field = _f


def _run_name_ok(name: str) -> bool:
    path = Path(name)
    return bool(name.strip()) and not path.is_absolute() and ".." not in path.parts


@dataclass
class CamConfig:
    """CAM inference (Puzzle-CAM/IRN recipe): scales with flips, ReLU, per-class max normalisation."""

    scales: tuple[float, ...] = _f(
        (0.5, 1.0, 1.5, 2.0), check=(lambda t: len(t) > 0 and min(t) > 0, "positive")
    )
    flip: bool = True
    batch_size: int = _f(8, min=1)  # images per forward pass (each with its flip)


@dataclass
class PseudoLabelConfig:
    """CAMs to pseudo-labels. With a background class: a constant background plane at ``bg_threshold``;
    without one: argmax among the image's own classes. ``ignore_band``: pixels whose top two scores are
    closer than this become ignore (0 = label every pixel)."""

    bg_threshold: float = _f(0.25, min=0)
    ignore_band: float = _f(0.0, min=0)
    # "cams": straight from the CAMs; "random_walk": from the CAMs propagated over the boundary map (IRN,
    # as Puzzle-CAM's official recipe), with the background plane at random_walk.bg_threshold; "saliency":
    # the CAMs with external saliency maps (MCIS's official gen_gt.py, lesseg.refine.saliency), read from
    # saliency_dir/<image id>.png (grey 0..255; extra pixel-level supervision from a saliency model).
    source: str = _f("cams", choices=("cams", "random_walk", "saliency"))
    saliency_dir: str | None = None
    # Label CRF iterations on the pseudo-labels (0 = none; Puzzle-CAM's README: 1). Needs the crf extra.
    crf_iterations: int = _f(0, min=0)


@dataclass
class AffinityLabelConfig:
    """Affinity labels that train the boundary branch (IRN / Puzzle-CAM ``make_affinity_labels``).

    With a background class: confident foreground (background plane at ``fg_threshold``) and confident
    background (plane at ``bg_threshold``), each refined by ``crf_iterations`` of the label CRF (official:
    10; 0 = thresholds only, for machines without the crf extra); pixels where they disagree are ignored.
    Without one: a pixel takes its top class when its score is at least ``min_score`` and beats the
    second by at least ``min_margin``, otherwise it is ignored."""

    fg_threshold: float = _f(0.40, min=0)
    bg_threshold: float = _f(0.10, min=0)
    min_score: float = _f(0.2, min=0)  # see refine/affinity_labels.py: MIN_SCORE, MIN_MARGIN
    min_margin: float = _f(0.2, min=0)
    crf_iterations: int = _f(10, min=0)


def _boundary_optim() -> OptimConfig:
    # IRN trains the boundary layers at lr 0.1 (no x10/x20 multipliers: every trained layer is new)
    return OptimConfig(name="sgd", lr=0.1, weight_decay=1e-4, schedule="poly",
                       lr_mult={"backbone_weight": 1.0, "backbone_bias": 1.0, "new_weight": 1.0, "new_bias": 1.0})  # fmt: skip


@dataclass
class BoundaryConfig:
    """IRN's boundary branch on the trained classifier's frozen backbone, trained with the affinity loss
    on pixel pairs within ``radius`` (at stride 4). Official: 3 epochs, lr 0.1, batch 32, crops of 512.

    ``freeze_backbone``: True (IRN, default) trains only the branch on detached features; False also
    trains the classifier's backbone weights (BatchNorm statistics stay fixed), see
    :class:`lesseg.models.BoundaryNet`.

    ``image_scale``: the branch trains (crops of ``data.crop_size`` and rescaling of ``data.scale_range``,
    both times this factor) and the random walk runs on images resized by this factor. IRN's geometry is a
    128x128 stride-4 grid for 512-pixel crops of VOC's large objects; small images with small objects (the
    synthetic scenes, 128 px) leave objects a few cells wide, where the boundary ring covers them whole, so
    their configs raise it. 1.0 (default) is the official recipe."""

    radius: int = _f(10, min=1)
    freeze_backbone: bool = True
    image_scale: float = _f(1.0, min=0.1)
    optim: OptimConfig = _f(_boundary_optim)
    train: TrainConfig = _f(lambda: TrainConfig(epochs=3))
    data: StageDataConfig = _f(StageDataConfig, neutral=True)  # its crops (then x image_scale); unset: data.*


@dataclass
class RandomWalkConfig:
    """IRN's random walk: transition matrix from boundary affinities within ``radius`` raised to ``beta``,
    applied 2**exp_times times to the stride-4 CAMs times (1 - boundary); then a background plane at
    ``bg_threshold`` (with a background class) or the argmax among the image's classes."""

    radius: int = _f(5, min=1)
    beta: float = _f(10.0, min=0)
    exp_times: int = _f(8, min=0)
    bg_threshold: float = _f(0.35, min=0)


def _segmenter_model() -> ModelConfig:
    return ModelConfig(name="deeplabv3plus", norm="bn")


def _segmenter_optim() -> OptimConfig:
    return OptimConfig(
        name="sgd",
        lr=0.01,
        weight_decay=1e-4,
        momentum=0.9,
        schedule="poly",
        lr_mult={"backbone_weight": 1.0, "backbone_bias": 1.0, "new_weight": 10.0, "new_bias": 10.0},
    )


@dataclass
class SegmenterConfig:
    """The segmenter (DeepLabv3+) trained on pseudo-labels: its own model, optimiser and schedule."""

    model: ModelConfig = _f(_segmenter_model)
    # Start the segmenter's backbone from the trained classifier's (same backbone and output stride needed).
    # Off by default: the papers start it from ImageNet weights (model.pretrained / model.weights). Without
    # pretrained weights (random init, as on a machine with no network) it is the closest stand-in: the
    # classifier learned its features from the same tags, so no mask is read.
    init_from_classifier: bool = False
    optim: OptimConfig = _f(_segmenter_optim)
    train: TrainConfig = _f(TrainConfig)
    data: StageDataConfig = _f(StageDataConfig, neutral=True)  # its crops and batch; unset: the run's data.*
    test_scales: tuple[float, ...] = _f((1.0,), check=(lambda t: len(t) > 0 and min(t) > 0, "positive"))
    test_flip: bool = False  # the papers' test-time protocol: scales (0.5, 0.75, 1, 1.25, 1.5) with flips
    # Dense CRF on the softmax of the summed logits (Puzzle-CAM's test protocol: 10 iterations; Gaussian
    # sxy 3 compat 3, bilateral sxy 80 srgb 13 compat 10). 0 (default) is off: it needs the crf extra.
    test_crf_iterations: int = _f(0, min=0)
    # Images of more than test_slide_above megapixels are predicted by sliding windows (MMSegmentation's
    # `slide` mode: test_window-pixel squares every test_stride pixels, overlaps averaged), so memory is
    # bounded by the window, not the image (benchmarks/slide_predict.py); 0 = always. The default keeps
    # whole-image inference for every dataset lesseg reads (Cityscapes is 2.1 MP) and slides photos.
    test_slide_above: float = _f(4.0, min=0, neutral=True)
    test_window: int = _f(1024, min=16, neutral=True)
    test_stride: int = _f(768, min=1, neutral=True)


@dataclass
class EvalConfig:
    """Evaluation and report settings."""

    # The untrained-network references (the CAM family: the untrained classifier through cams and
    # pseudo_labels, the untrained segmenter on val); the cheap ones (random among tags, largest class by
    # mask) always run.
    references: bool = True
    gallery: int = _f(8, min=0)  # images shown in report.html
    # Also run the refinement stages and score every pseudo-label variant (CAM, CAM + CRF, random walk,
    # random walk + CRF) on train, whatever pseudo_labels.source is (the CRF rows need the crf extra).
    refinement: bool = False
    bg_sweep: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 16))  # CAM mIoU sweep (bg only)


@dataclass
class Config:
    name: str = _f("run", check=(_run_name_ok, "a non-empty relative folder name"))
    run_dir: str = "runs"  # the run folder is <run_dir>/<name>/
    method: MethodConfig = _f(MethodConfig)
    data: DataConfig = _f(DataConfig)
    model: ModelConfig = _f(ModelConfig)
    optim: OptimConfig = _f(OptimConfig)
    train: TrainConfig = _f(TrainConfig)
    cams: CamConfig = _f(CamConfig)
    pseudo_labels: PseudoLabelConfig = _f(PseudoLabelConfig)
    affinity_labels: AffinityLabelConfig = _f(AffinityLabelConfig)
    boundary: BoundaryConfig = _f(BoundaryConfig)
    random_walk: RandomWalkConfig = _f(RandomWalkConfig)
    segmenter: SegmenterConfig = _f(SegmenterConfig)
    eval: EvalConfig = _f(EvalConfig)


# ---- YAML: only true/false are booleans (amp: off is a string), 1e-3 is a float, dates stay strings ----------

_BOOL, _FLOAT, _DATE = (f"tag:yaml.org,2002:{t}" for t in ("bool", "float", "timestamp"))


class _YamlLoader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _DATE)]
        for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class _YamlDumper(yaml.SafeDumper):
    """Quotes strings that YAML 1.1 or ``_YamlLoader`` would read otherwise; short lists on one line."""

    def represent_list(self, data: list) -> yaml.Node:
        flow = not any(isinstance(v, (dict, list)) for v in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_YamlDumper.add_representer(list, _YamlDumper.represent_list)
_YamlLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
for _cls in (_YamlLoader, _YamlDumper):
    _cls.add_implicit_resolver(
        _FLOAT, re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
    )


# ---- loading ----------------------------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and is_dataclass(tp)


def _merge(low: dict, high: dict) -> dict:
    out = dict(low)
    for k, v in high.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _leaf_keys(d: dict, prefix: str = "") -> Iterator[str]:
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaf_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def _read_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    """The file's content as (dict, ' in <file>') layers, its ``_base_`` files first."""
    path = path.expanduser()
    if path.resolve() in chain:
        raise ConfigError(f"config file {path} includes itself through _base_")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(
            f"config file {path} is not valid YAML{at}: {getattr(e, 'problem', None) or e}"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    bases = data.pop("_base_", None) or []
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"_base_ in {path} must be a file path or a list of them, got {bases!r}")
    layers = [layer for b in bases for layer in _read_layers(path.parent / b, (*chain, path.resolve()))]
    sections = {name for name, tp in _hints(Config).items() if _is_section(tp)}
    data = {k: v for k, v in data.items() if not (v is None and k in sections)}  # an empty section
    return [*layers, (data, f" in {path}")]


def _parse_override(text: str) -> dict:
    key, eq, raw = str(text).partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not eq or not all(parts):
        raise ConfigError(
            f"override {text!r} is not of the form key=value (e.g. optim.lr=0.1 or model.weights=null)"
        )
    try:
        value = yaml.load(raw, Loader=_YamlLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw.strip()  # not YAML (e.g. '@x'): take it as a string
    for part in reversed(parts):
        value = {part: value}
    return value


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``; TypeError or ValueError when it does not fit."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError):
                pass
        raise TypeError
    if isinstance(value, bool) != (tp is bool):  # True is neither 1 nor "True"
        raise TypeError
    if tp is int and isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        return int(value)
    if tp in (int, float, str) and isinstance(value, (int, float, str)):
        return tp(value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        if origin is list or args[-1] is Ellipsis:
            return origin(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise ValueError
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if origin is dict and isinstance(value, dict):
        return {str(k): _coerce(v, args[1]) for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


class _Builder:
    """Builds the dataclasses from the merged dict; ``origins`` says where each leaf key was set."""

    def __init__(self, origins: dict[str, str], method_cls: type[MethodConfig]):
        self.origins, self.method_cls = origins, method_cls

    def where(self, key: str) -> str:
        if key in self.origins:
            return self.origins[key]
        return next((w for k, w in self.origins.items() if k.startswith(key + ".")), "")

    def fail(self, key: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"config key {key!r}{self.where(key)} {message}")

    def unknown(self, key: str) -> typing.NoReturn:
        bad = next((k for k in self.origins if k == key or k.startswith(key + ".")), key)
        raise ConfigError(f"unknown config key {bad!r}{self.where(bad)}{did_you_mean(bad, self.all_keys())}")

    def all_keys(self, cls: type = Config, prefix: str = "") -> Iterator[str]:
        for name, tp in _hints(cls).items():
            tp = self.method_cls if prefix + name == "method" else tp
            yield from self.all_keys(tp, f"{prefix}{name}.") if _is_section(tp) else [prefix + name]

    def build(self, cls: type, data: Any, prefix: str = "", start: Any = None) -> Any:
        """``cls`` from ``data``, over ``start`` (a section's own default, e.g. the segmenter's model
        section defaults to DeepLabv3+) or over the class defaults."""
        if not isinstance(data, dict):
            self.fail(prefix[:-1], f"must be a mapping of keys, got {data!r}")
        obj = copy.deepcopy(start) if type(start) is cls else cls()
        hints, meta = _hints(cls), {f.name: f.metadata for f in fields(cls)}
        for name, value in data.items():
            key = f"{prefix}{name}"
            if name not in meta:
                self.unknown(key)
            tp = self.method_cls if key == "method" else hints[name]
            if _is_section(tp):
                value = self.build(tp, value, key + ".", getattr(obj, name))
            else:
                value = self.check(key, tp, meta[name], value, getattr(obj, name))
            setattr(obj, name, value)
        return obj

    def check(self, key: str, tp: Any, meta: Mapping, value: Any, default: Any) -> Any:
        if isinstance(value, dict) and isinstance(default, dict):
            value = _merge(default, value)
        if typing.get_origin(tp) is dict and isinstance(value, dict):  # check each entry, naming its key
            return {
                str(k): self.check(f"{key}.{k}", typing.get_args(tp)[1], {}, v, None)
                for k, v in value.items()
            }
        try:
            value = _coerce(value, tp)
        except (TypeError, ValueError):
            if isinstance(value, dict) and value and dict not in (tp, typing.get_origin(tp)):
                self.unknown(f"{key}.{next(iter(value))}")  # e.g. optim.lr.x=1
            self.fail(key, f"expects {_type_name(tp)}, got {value!r}")
        if value is None:
            return value
        if "choices" in meta and value not in meta["choices"]:
            choices = [str(c) for c in meta["choices"]]
            self.fail(
                key, f"must be one of {', '.join(choices)}; got {value!r}{did_you_mean(str(value), choices)}"
            )
        if "min" in meta and value < meta["min"]:
            self.fail(key, f"must be >= {meta['min']}, got {value!r}")
        if "check" in meta and not meta["check"][0](value):
            self.fail(key, f"must be {meta['check'][1]}, got {value!r}")
        return value


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), base: dict | Config | None = None
) -> Config:
    """The config of ``base`` (lowest), then the YAML file ``path`` (with its ``_base_`` files), then
    ``overrides`` such as ``optim.lr=0.1``; raises ConfigError naming the bad key and where it was set."""
    overrides = [overrides] if isinstance(overrides, str) else overrides
    layers: list[tuple[dict, str]] = []
    if base is not None:
        layers.append((config_to_dict(base), " in the base config"))
    if path is not None:
        layers += _read_layers(Path(path))
    layers += [(_parse_override(text), "") for text in overrides]
    raw: dict = {}
    origins: dict[str, str] = {}
    for data, where in layers:
        raw = _merge(raw, data)
        origins.update(dict.fromkeys(_leaf_keys(data), where))
    method = raw.get("method") or {}
    name = method.get("name", "cam") if isinstance(method, dict) else None
    try:
        method_cls = method_config_class(name) if isinstance(method, dict) else MethodConfig
    except ConfigError as e:
        raise ConfigError(f"config key 'method.name'{origins.get('method.name', '')}: {e}") from None
    return _Builder(origins, method_cls).build(Config, raw)


# ---- saving and hashing -----------------------------------------------------------------------------------


def config_to_dict(cfg: Any) -> dict:
    """Plain YAML/JSON-able data (tuples as lists), keys in field order."""
    if is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in fields(cfg)}
    if isinstance(cfg, dict):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    return cfg


def format_config(cfg: Config | dict) -> str:
    """The config as YAML text (what ``save_config`` writes and ``--print-config`` shows)."""
    return yaml.dump(
        config_to_dict(cfg), Dumper=_YamlDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def save_config(cfg: Config | dict, path: str | Path) -> Path:
    """Write the config as YAML, atomically; ``load_config(path) == cfg``."""
    return atomic_write_text(path, format_config(cfg))


_NEUTRAL = object()  # a neutral key at its default: absent from hashes


def _default(f) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


def hash_view(cfg: Any, pinned: list[str] | None = None, prefix: str = "") -> Any:
    """``config_to_dict`` as hashes see it: ``neutral`` keys at their defaults left out, ``eval_only``
    keys at their defaults whatever their value (their dotted names are appended to ``pinned``)."""
    if not (is_dataclass(cfg) and not isinstance(cfg, type)):
        return config_to_dict(cfg)
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("eval_only"):
            if pinned is not None and value != _default(f):
                pinned.append(prefix + f.name)
            value = _default(f)
        elif f.metadata.get("neutral") and value == _default(f):
            continue
        out[f.name] = hash_view(value, pinned, f"{prefix}{f.name}.")
    return out


def config_hash(cfg: Config | dict, keys: Sequence[str] | None = None) -> str:
    """12 hex chars of sha256 over canonical JSON of the config, or of the dotted sections ``keys``.

    ``neutral`` keys at their defaults are left out, and inside a section ``eval_only`` keys count at
    their default (see :func:`_f`): a stage hashing the whole ``data`` section does not re-run for another
    val split. A stage that names an ``eval_only`` key itself (``data.val_split``) hashes its value, and
    leaves it out at its default as it does a neutral key's."""
    pinned: list[str] = []
    data = hash_view(cfg, pinned)
    if keys is not None:
        keys = [keys] if isinstance(keys, str) else keys
        full = config_to_dict(cfg)
        for key in keys:
            _lookup(full, key)  # an unknown key is an error, a neutral one at its default is not
        evaluated = [key for key in keys if key in pinned or _is_eval_only(cfg, key)]
        picked = {key: _lookup(full if key in pinned else data, key, missing=_NEUTRAL) for key in keys}
        for key in evaluated:  # named by an evaluating stage: its value, left out at its default (neutral)
            if key not in pinned:
                del picked[key]
        data = {k: v for k, v in picked.items() if v is not _NEUTRAL}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _is_eval_only(cfg: Any, key: str) -> bool:
    """Whether dotted ``key`` names an ``eval_only`` field of the dataclass config ``cfg``."""
    *path, name = key.split(".")
    for part in path:
        cfg = getattr(cfg, part, None)
    if not (is_dataclass(cfg) and not isinstance(cfg, type)):
        return False
    return any(f.name == name and f.metadata.get("eval_only") for f in fields(cfg))


def _lookup(data: dict, key: str, missing: Any = None) -> Any:
    """The value at dotted ``key``; an unknown key raises, unless ``missing`` is given to return."""
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            if missing is not None:
                return missing
            raise ConfigError(f"unknown config key {key!r}{did_you_mean(key, [*data, *_leaf_keys(data)])}")
        value = value[part]
    return value
