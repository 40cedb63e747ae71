"""MCIS: Sun, Wang, Dai & Van Gool, "Mining Cross-Image Semantics for Weakly Supervised Semantic
Segmentation", ECCV 2020.

The classifier (:class:`~lesseg.models.MCISNet`) is trained on pairs of images that share a class
(:class:`~lesseg.data.pairs.PairDataset`). Per pair ``(m, n)`` with tags ``y_m``, ``y_n`` (Eq. 10, all
weights 1, every term a multi-label soft-margin loss):

* single-image CAM loss of each image on its own tags;
* co-attention loss: each image's co-attentive feature (re-expressed through the other image) classified
  by the co-attention head against the **common** classes ``y_m * y_n``;
* contrastive co-attention loss: each image's own features with what the partner explains gated out,
  classified by the same head against its **unshared** classes ``y_m - y_m * y_n``; from the second epoch
  on (``method.contrastive_from_epoch``) and only when the batch has unshared classes, as the official code.

The official code adds three self-pairs per image (its flip, its 0.75x and its 2x rescale), each with a
single-image term on the view and a co-attention term on the image, against the image's own tags
(``method.self_pairs``, on by default). Deviation: images are rescaled and cropped as the CAM baseline's
(``data.crop_size``, ``data.scale_range``) instead of the official square 256x256 resize, so that every
CAM method here sees the same crops; the official ColorJitter(0.3, 0.3, 0.3, 0.1) is kept.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from lesseg.config import MethodConfig
from lesseg.config import config_field as _f
from lesseg.data import transforms as T
from lesseg.data.imageio import load_image
from lesseg.data.pairs import PARTNER_SUFFIX, PairDataset
from lesseg.engine.distributed import barrier
from lesseg.errors import ConfigError
from lesseg.methods.cam import CAMMethod
from lesseg.models import MCISNet, multilabel_soft_margin_loss
from lesseg.pipeline import Stage
from lesseg.predict import normalize_image
from lesseg.progress import track
from lesseg.refine import CamResult, save_cams
from lesseg.registry import register_method
from lesseg.stages import weak_supervision_stages
from lesseg.stages.cams import cam_path
from lesseg.stages.common import device_of, load_weights


@dataclass
class MCISConfig(MethodConfig):
    """The ``method`` section of MCIS.

    * ``self_pairs``: also pair each image with its flip, its 0.75x and its 2x rescale (the official code's
      extra loss terms, not in the paper's Eq. 10); on by default, as the official code trains.
    * ``contrastive_from_epoch``: the contrastive co-attention loss joins at this epoch (0-based); the
      official code starts it at the second epoch (1).
    * ``partners``: partner images per class at co-segmentation inference (official 3, drawn with
      replacement among the training images holding the class).
    * ``cam_inference``: ``cosegmentation`` (official, default: the co-attention head's maps, averaged over
      partners and fused with the self-pair maps) or ``single`` (the single-image CAM head, multi-scale with
      flips like the CAM baseline's; cheaper).
    """

    #: settings that only change inference: changing them does not retrain the classifier
    INFERENCE_ONLY: ClassVar[tuple[str, ...]] = ("partners", "cam_inference")

    self_pairs: bool = True
    contrastive_from_epoch: int = _f(1, min=0)
    partners: int = _f(3, min=1)
    cam_inference: str = _f("cosegmentation", choices=("cosegmentation", "single"))


#: The official self-pair rescales (besides the flip).
SELF_PAIR_SCALES = (0.75, 2.0)


def pair_targets(y_m: torch.Tensor, y_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(common, unshared_m, unshared_n)`` of multi-hot tag batches ``[N, C]``: the classes both images
    hold, and those only ``m`` / only ``n`` holds.

    Example:
        >>> common, only_m, only_n = pair_targets(torch.tensor([[1.0, 1, 0]]), torch.tensor([[0.0, 1, 1]]))
        >>> common.tolist(), only_m.tolist(), only_n.tolist()
        ([[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
    """
    common = y_m * y_n
    return common, y_m - common, y_n - common


def self_pair_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The official self-pair partners of a batch: its flip, and its 0.75x and 2x rescales (bilinear)."""
    views = [x.flip(-1)]
    for s in SELF_PAIR_SCALES:
        size = (max(1, round(x.shape[-2] * s)), max(1, round(x.shape[-1] * s)))
        views.append(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
    return views


@register_method("mcis", config=MCISConfig)
class MCISMethod(CAMMethod):
    """MCIS's pairs, network and losses (module docstring); CAM inference by co-segmentation or by the
    single-image head (``method.cam_inference``)."""

    def stages(self) -> list:
        """The CAM family's pipeline; with ``method.cam_inference=cosegmentation`` its cams stage infers
        by co-segmentation (:func:`cosegmentation_cams`)."""
        stages = weak_supervision_stages(self.cfg)
        if self.cfg.method.cam_inference != "cosegmentation":
            return stages
        keys = ("cams", "method.cam_inference", "method.partners")
        return [Stage("cams", infer_cosegmentation_cams, keys, ("classifier",)) if s.name == "cams" else s
                for s in stages]  # fmt: skip

    def train_transform(self) -> T.Compose:
        d = self.cfg.data
        return T.Compose([
            T.RandomRescale(scale=tuple(d.scale_range)), T.RandomCrop(d.crop_size), T.RandomHorizontalFlip(),
            T.ColorJitter(0.3, 0.3, 0.3, 0.1, p=1.0), T.Normalize(),
        ])  # fmt: skip

    def train_dataset(self, dataset):
        """Each training image with a partner sharing one of its classes."""
        return PairDataset(dataset, seed=self.cfg.train.seed)

    def build_model(self) -> MCISNet:
        m = self.cfg.model
        if m.name not in ("mcis", "cam_classifier"):
            raise ConfigError(f"method mcis trains model.name=mcis, got {m.name!r}")
        return MCISNet(**self.model_kwargs())

    def training_step(self, model, batch, ctx) -> dict:
        m = self.cfg.method
        keep = list(self.classes.tag_indices)
        x, y = batch["image"], batch["tags"][:, keep]
        partner, y_p = batch["image" + PARTNER_SUFFIX], batch["tags" + PARTNER_SUFFIX][:, keep]
        partners = [partner, *(self_pair_views(x) if m.self_pairs else [])]
        out = model(x, partners=partners)
        pair = out["pairs"][0]
        common, only_x, only_p = pair_targets(y, y_p)

        def mlsm(key_or_logits, target, source=pair):
            logits = source[key_or_logits] if isinstance(key_or_logits, str) else key_or_logits
            return multilabel_soft_margin_loss(logits.float(), target)

        single = mlsm(out["logits"], y) + mlsm("partner_logits", y_p)
        co = mlsm("co_logits", common) + mlsm("partner_co_logits", common)
        self_terms = sum((mlsm("partner_logits", y, p) + mlsm("co_logits", y, p) for p in out["pairs"][1:]),
                         start=torch.zeros((), device=x.device))  # fmt: skip
        if ctx.epoch >= m.contrastive_from_epoch and (only_x.sum() + only_p.sum()) > 0:
            contrast = mlsm("contrast_logits", only_x) + mlsm("partner_contrast_logits", only_p)
        else:  # zero, but in the graph: under DDP every parameter (the gate's too) must get a gradient
            contrast = 0.0 * (pair["contrast_logits"].sum() + pair["partner_contrast_logits"].sum())
        loss = single + co + self_terms + contrast
        return {"loss": loss, "single": single, "co": co, "self_pairs": self_terms, "contrast": contrast}


#: A self-pair map joins the fusion when sigmoid(mean of its raw map) exceeds this (official).
SELF_MAP_MIN_SCORE = 0.1


@torch.inference_mode()
def cosegmentation_cams(model: MCISNet, image: torch.Tensor, classes: list[int], partners: dict[int, list[torch.Tensor]],
                        out_size: tuple[int, int]) -> torch.Tensor:  # fmt: skip
    """MCIS's co-segmentation CAMs of one normalised image ``[1, 3, H, W]`` (official ``test.py``).

    For each class ``k`` of ``classes`` (model-output indices): the image's co-attention map of class ``k``
    averaged over its pairs with ``partners[k]`` (normalised ``[1, 3, h, w]`` images holding ``k``), and
    the co-attention maps of the self-pairs: the image's own in (image, flip), the flip's flipped back, the
    0.75x and the 2x rescale's, resized to the image's map. Each map is ReLU'd and max-normalised; the
    partner average always counts, a self-pair map only when sigmoid of its raw mean exceeds
    :data:`SELF_MAP_MIN_SCORE`; the kept maps are summed and divided by their total number (5). Returns
    ``[K, *out_size]``, bilinearly resized and max-normalised to [0, 1] per class.
    """
    views = self_pair_views(image)
    self_out = model(image, partners=views)
    size = tuple(self_out["cams"].shape[-2:])

    def resized(m: torch.Tensor) -> torch.Tensor:
        return (
            m
            if tuple(m.shape[-2:]) == size
            else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        )

    flip, small, large = self_out["pairs"]
    self_maps = [flip["co_cams"], flip["partner_co_cams"].flip(-1), resized(small["partner_co_cams"]),
                 resized(large["partner_co_cams"])]  # fmt: skip
    fused = []
    for k in classes:
        pair_maps = [p["co_cams"][:, k] for p in model(image, partners=partners[k])["pairs"]]
        maps = [torch.stack(pair_maps).mean(0)] + [m[:, k] for m in self_maps]
        total = torch.zeros_like(maps[0])
        for i, m in enumerate(maps):
            if i == 0 or torch.sigmoid(m.mean()) > SELF_MAP_MIN_SCORE:
                r = F.relu(m)
                total = total + r / (r.amax() + 1e-5)
        fused.append(total / len(maps))
    cams = F.interpolate(torch.cat(fused)[None], size=out_size, mode="bilinear", align_corners=False)[0]
    cams = cams.clamp_min(0)
    return cams / (cams.amax(dim=(1, 2), keepdim=True) + 1e-5)


def infer_cosegmentation_cams(ctx) -> None:
    """Stage ``cams`` of MCIS with co-segmentation inference: every training image's CAMs of its tagged
    classes, each from ``method.partners`` partner images holding the class (drawn with replacement among
    the other training images, seeded by ``train.seed``, the image and the class) and the self-pairs."""
    cfg, source = ctx.cfg, ctx.source
    device = device_of(ctx)
    model = load_weights(ctx, "classifier", ctx.method.build_model()).to(device).eval()
    output_of = {c: k for k, c in enumerate(source.classes.tag_indices)}
    records = source.split(cfg.data.train_split)
    tags = [sorted(output_of[c] for c in (source.tags_of(r) or ())) for r in records]
    holders: dict[int, list[int]] = {}
    for i, t in enumerate(tags):
        for k in t:
            holders.setdefault(k, []).append(i)
    mine = range(len(records)) if ctx.env is None else range(ctx.env.rank, len(records), ctx.env.world_size)

    @functools.lru_cache(maxsize=64)  # partners recur across an image's classes and between images
    def partner(j: int) -> torch.Tensor:
        return normalize_image(load_image(records[j].image)).to(device)

    for i in track(mine, "co-segmentation cams", enabled=ctx.env is None or ctx.env.is_main):
        image = load_image(records[i].image)
        if not tags[i]:
            save_cams(
                cam_path(ctx, records[i].id),
                CamResult(np.zeros(0, np.int64), np.zeros((0, *image.shape[:2]), np.float32)),
            )
            continue
        partners = {}
        for k in tags[i]:
            rng = np.random.default_rng([cfg.train.seed, i, k])
            pool = [j for j in holders[k] if j != i] or [i]
            picks = rng.choice(pool, size=cfg.method.partners, replace=True)
            partners[k] = [partner(int(j)) for j in picks]
        x = normalize_image(image).to(device)
        cams = cosegmentation_cams(model, x, tags[i], partners, image.shape[:2])
        save_cams(
            cam_path(ctx, records[i].id),
            CamResult(np.asarray(tags[i], np.int64), cams.cpu().numpy().astype(np.float32)),
        )
    if ctx.env is not None:
        barrier(ctx.env)
