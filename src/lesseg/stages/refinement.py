"""Stages between CAMs and pseudo-labels (IRN's recipe, as Puzzle-CAM uses it):

affinity_labels (confident CAM regions) -> boundary (IRN's boundary branch on the classifier's frozen
backbone, trained with the affinity loss) -> random_walk (CAMs propagated within regions the boundary map
encloses) -> refine_eval (pseudo-label mIoU and coverage of CAM, CAM + CRF, random walk, random walk + CRF).

The official code puts an ImageNet backbone under the boundary branch; with random init that would be random
features, so the trained classifier's backbone is used (it learned from the same tags: no mask is read).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.data.imageio import load_image, load_label_png
from lesseg.data.splits import Supervision
from lesseg.engine.trainer import TrainSettings
from lesseg.eval import record_metrics
from lesseg.models.boundary import BoundaryNet
from lesseg.pipeline import RunContext
from lesseg.predict import normalize_image
from lesseg.progress import track
from lesseg.refine import CamResult, load_cams, save_cams, save_pseudo_label
from lesseg.refine.affinity import affinities_from_boundary, pair_offsets
from lesseg.refine.affinity_labels import affinity_labels, downsample_labels
from lesseg.refine.affinity_loss import affinity_loss
from lesseg.refine.random_walk import propagate_labels
from lesseg.stages.cams import cam_path
from lesseg.stages.common import device_of, is_main, load_weights, train_and_save
from lesseg.stages.pseudo_labels import pseudo_label_scores

RW_FOLDER = "random_walk"


def _label_crf(iterations: int):
    """The label CRF as ``affinity_labels`` calls it, or None for 0 iterations."""
    if iterations == 0:
        return None
    from lesseg.refine.crf import crf_on_labels

    def crf(image, labels, num_labels):
        return crf_on_labels(image, labels, num_labels, iterations=iterations)

    return crf


def make_affinity_labels(ctx: RunContext) -> None:
    cfg, source = ctx.cfg, ctx.source
    a = cfg.affinity_labels
    bg = source.classes.background is not None
    crf = _label_crf(a.crf_iterations) if bg else None
    records = source.split(cfg.data.train_split)
    if ctx.env is not None:
        records = records[ctx.env.rank :: ctx.env.world_size]
    for r in track(records, "affinity labels", enabled=is_main(ctx)):
        res = load_cams(cam_path(ctx, r.id))
        label = affinity_labels(res, source.classes, fg_threshold=a.fg_threshold, bg_threshold=a.bg_threshold,
                                crf=crf, image=load_image(r.image) if crf else None, min_score=a.min_score,
                                min_margin=a.min_margin)  # fmt: skip
        save_pseudo_label(ctx.path("affinity_labels", f"{r.id}.png"), label, source.classes)


def build_boundary_net(ctx: RunContext) -> BoundaryNet:
    """A boundary branch on the trained classifier's backbone (frozen unless boundary.freeze_backbone is
    false)."""
    classifier = load_weights(ctx, "classifier", ctx.method.build_model())
    return BoundaryNet(classifier.encoder, freeze_backbone=ctx.cfg.boundary.freeze_backbone)


def train_boundary(ctx: RunContext) -> None:
    cfg, source = ctx.cfg, ctx.source
    b = cfg.boundary
    classes = source.classes
    offsets = pair_offsets(b.radius)

    def step(model, batch, _ctx) -> dict:
        prob = torch.sigmoid(model(batch["image"])["boundary_logits"].float())
        labels = downsample_labels(batch["mask"], tuple(prob.shape[-2:]))
        affinity = affinities_from_boundary(prob, b.radius)
        return affinity_loss(affinity, labels, offsets.to(prob.device), classes.background_index,
                             classes.ignore_index)  # fmt: skip

    def labels(r):
        return load_label_png(ctx.path("affinity_labels", f"{r.id}.png")).astype(np.int64)

    d, k = b.data.resolve(cfg.data), b.image_scale
    transform = T.Compose([
        T.RandomRescale(scale=(d.scale_range[0] * k, d.scale_range[1] * k)), T.RandomCrop(round(d.crop_size * k)),
        T.RandomHorizontalFlip(), T.Normalize(),
    ])  # fmt: skip
    dataset = SegDataset(source, cfg.data.train_split, transform=transform,
                         supervision=Supervision(masks="none"), seed=b.train.seed, labels=labels)  # fmt: skip
    torch.manual_seed(b.train.seed)
    model = build_boundary_net(ctx)
    settings = TrainSettings.from_config(cfg, optim=b.optim, train=b.train, data=b.data)
    train_and_save(ctx, "boundary", settings, model, step, dataset)


@torch.inference_mode()
def boundary_map(model: BoundaryNet, image: np.ndarray, device, scale: float = 1.0) -> torch.Tensor:
    """[ceil(H'/4), ceil(W'/4)] boundary probabilities of the image resized by ``scale`` to H' x W': the
    image and its flip, logits averaged (IRN)."""
    x = normalize_image(image).to(device)
    if scale != 1.0:
        size = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    logits = model(torch.cat([x, x.flip(-1)]))["boundary_logits"].float()
    return torch.sigmoid((logits[0, 0] + logits[1, 0].flip(-1)) / 2)


def walk_cams(cams: np.ndarray, edge: torch.Tensor, scale: float, rw) -> np.ndarray:
    """``cams`` ``[K, H, W]`` (full resolution) walked over the boundary map ``edge`` (the stride-4 grid of
    the image resized by ``scale``) with the settings ``rw`` (:class:`lesseg.config.RandomWalkConfig`), back
    at ``H x W`` and divided by their global max (IRN)."""
    h, w = cams.shape[-2:]
    # IRN walks its stride-4 CAMs; ours are at full resolution, so they are resized onto the grid
    mode = "area" if edge.shape[0] <= h else "bilinear"  # area-average unless the grid is finer
    grid = F.interpolate(torch.from_numpy(cams)[None], size=tuple(edge.shape), mode=mode)[0]
    walked = propagate_labels(grid, edge, None, rw.radius, rw.beta, rw.exp_times)
    hs, ws = round(h * scale), round(w * scale)  # the resized image; the grid may overhang it
    up = F.interpolate(walked[None], scale_factor=4, mode="bilinear", align_corners=False)[..., :hs, :ws]
    if scale != 1:
        up = F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
    up = up[0]
    return (up / up.max().clamp_min(1e-5)).numpy().astype(np.float32)


def run_random_walk(ctx: RunContext) -> None:
    cfg, source = ctx.cfg, ctx.source
    rw = cfg.random_walk
    device = device_of(ctx)
    model = load_weights(ctx, "boundary", build_boundary_net(ctx))
    model = model.to(device).eval()
    records = source.split(cfg.data.train_split)
    if ctx.env is not None:
        records = records[ctx.env.rank :: ctx.env.world_size]
    for r in track(records, "random walk", enabled=is_main(ctx)):
        res = load_cams(cam_path(ctx, r.id))
        if len(res.classes):
            edge = boundary_map(model, load_image(r.image), device, cfg.boundary.image_scale).cpu()
            maps = walk_cams(res.cams, edge, cfg.boundary.image_scale, rw)
        else:
            maps = res.cams
        save_cams(ctx.path(RW_FOLDER, f"{r.id}.npz"), CamResult(res.classes, maps))


VARIANTS = {  # name: (CAM folder, label CRF)
    "cam": ("cams", False),
    "cam_crf": ("cams", True),
    "random_walk": (RW_FOLDER, False),
    "random_walk_crf": (RW_FOLDER, True),
}


def evaluate_refinement(ctx: RunContext) -> None:
    """Pseudo-label mIoU (on the labelled pixels) and coverage of each variant against the train masks;
    the CRF rows are left out, with the reason, when the crf extra is missing."""
    if not is_main(ctx):
        return
    from lesseg.refine.crf import crf_unavailable_reason

    cfg = ctx.cfg
    why = crf_unavailable_reason()
    iterations = cfg.pseudo_labels.crf_iterations or 1  # Puzzle-CAM's README: 1 iteration
    out: dict = {}
    for name, (folder, crf) in VARIANTS.items():
        if crf and why:
            out[name] = {"skipped": why}
            continue
        scores = pseudo_label_scores(ctx, folder, crf_iterations=iterations if crf else 0)
        out[name] = {"miou": scores.get("miou"), "coverage": scores["coverage"]}
    record_metrics(ctx.run_dir, "refinement", out)
