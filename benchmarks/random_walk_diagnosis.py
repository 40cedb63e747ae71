"""Why does the random walk lower pseudo-label mIoU? Separates the walk from the boundary map it walks on.

    .venv/bin/python benchmarks/random_walk_diagnosis.py [RUN_DIR ...] [--jobs 2]

Default run folders: runs/bench_methods_msrc21_imagenet_cam_s{0,1,2} (benchmarks/cam_methods.py
msrc21_imagenet), any CAM-family run with a ``boundary`` checkpoint works. On the training images (the masks
are read here for scoring only) it scores the pseudo-labels (argmax among the image's tags, no CRF) of:

- ``cam``: the CAMs themselves;
- ``walk, learned boundary``: the run's own random walk (its boundary branch), recomputed;
- ``walk, no boundary``: the same walk with the boundary map set to 0 (pure diffusion within radius);
- ``walk, oracle boundary``: the same walk on the true boundaries (cells where the mask changes, one cell
  dilated): what the walk does with a perfect boundary branch;

and the boundary branch's inputs and output: the affinity labels' precision and coverage against the masks,
and the learned boundary map's AUC at separating true-boundary cells from the others (0.5 = chance). Prints
a table, writes benchmarks/results/random_walk_diagnosis_imagenet.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import mean_std, run_tasks, write_results
from scipy.stats import rankdata

from lesseg.api import run_context
from lesseg.config import load_config
from lesseg.data.imageio import load_image, load_label_png
from lesseg.eval import ConfusionMatrix
from lesseg.refine import CamResult, cams_to_labels, load_cams
from lesseg.refine.affinity_labels import downsample_labels
from lesseg.stages.common import load_weights
from lesseg.stages.refinement import boundary_map, build_boundary_net, walk_cams

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "random_walk_diagnosis_imagenet.json"
VARIANTS = ("cam", "walk, learned boundary", "walk, no boundary", "walk, oracle boundary")


def oracle_boundary(mask: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """1 on the stride-4 cells of ``grid`` that hold a change of mask label (void bands included), dilated
    by one cell (IRN's boundaries are a few cells wide), 0 elsewhere."""
    m = torch.from_numpy(mask.astype(np.int64))
    edge = torch.zeros(m.shape, dtype=torch.float32)
    edge[:, 1:] = torch.maximum(edge[:, 1:], (m[:, 1:] != m[:, :-1]).float())
    edge[1:, :] = torch.maximum(edge[1:, :], (m[1:, :] != m[:-1, :]).float())
    gh, gw = grid
    padded = F.pad(edge, (0, gw * 4 - edge.shape[1], 0, gh * 4 - edge.shape[0]))
    cells = F.max_pool2d(padded[None, None], 4)
    return F.max_pool2d(cells, 3, stride=1, padding=1)[0, 0]


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for the boolean ``positive`` (Mann-Whitney U / n1 n0)."""
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if not n1 or not n0:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def diagnose(run_dir: Path) -> dict:
    cfg = load_config(run_dir / "config.yaml")
    ctx = run_context(cfg, run_dir)
    classes = ctx.source.classes
    model = load_weights(ctx, "boundary", build_boundary_net(ctx)).eval()
    scale, rw = cfg.boundary.image_scale, cfg.random_walk
    has_bg = classes.background is not None
    cms = {v: ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index) for v in VARIANTS}
    aff_right = aff_labelled = aff_pixels = 0
    edge_scores, edge_truth = [], []
    for r in ctx.source.split(cfg.data.train_split):
        res = load_cams(run_dir / "cams" / f"{r.id}.npz")
        if not len(res.classes) or r.mask is None:
            continue
        gt = ctx.source.load_mask(r)
        learned = boundary_map(model, load_image(r.image), "cpu", scale)
        resized = (
            gt
            if scale == 1
            else downsample_labels(gt, (round(gt.shape[0] * scale), round(gt.shape[1] * scale)))
        )
        oracle = oracle_boundary(resized, tuple(learned.shape))
        maps = {
            "cam": res.cams,
            "walk, learned boundary": walk_cams(res.cams, learned, scale, rw),
            "walk, no boundary": walk_cams(res.cams, torch.zeros_like(learned), scale, rw),
            "walk, oracle boundary": walk_cams(res.cams, oracle, scale, rw),
        }
        for name, m in maps.items():
            bg = (cfg.pseudo_labels.bg_threshold if name == "cam" else rw.bg_threshold) if has_bg else None
            label = cams_to_labels(CamResult(res.classes, m), classes, bg_threshold=bg)
            cms[name].update(label, gt)
        aff = load_label_png(run_dir / "affinity_labels" / f"{r.id}.png").astype(np.int64)
        known = (aff != classes.ignore_index) & (gt != classes.ignore_index)
        aff_right += int((aff[known] == gt[known]).sum())
        aff_labelled += int(known.sum())
        aff_pixels += int((gt != classes.ignore_index).sum())
        edge_scores.append(learned.flatten().numpy())
        edge_truth.append(oracle.flatten().numpy() > 0)
    out = {name: cm.metrics(classes.classes).to_dict()["miou"] for name, cm in cms.items()}
    out["affinity label precision"] = aff_right / max(1, aff_labelled)
    out["affinity label coverage"] = aff_labelled / max(1, aff_pixels)
    out["boundary AUC vs true boundaries"] = auc(np.concatenate(edge_scores), np.concatenate(edge_truth))
    out["run_dir"] = str(run_dir)
    out["init"] = "ImageNet init" if cfg.model.weights or cfg.model.pretrained else "random init"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="*", type=Path, help="run folders (default: the msrc21_imagenet CAM runs)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="run folders side by side")
    args = parser.parse_args()
    runs = args.runs or [ROOT / "runs" / f"bench_methods_msrc21_imagenet_cam_s{s}" for s in range(3)]
    runs = [r for r in runs if (r / "checkpoints" / "boundary_final.pt").is_file()]
    if not runs:
        print("no run folder with a trained boundary branch: run benchmarks/cam_methods.py msrc21_imagenet first "
              "(nothing to measure, exiting)")  # fmt: skip
        return 0
    results = [res for _, res in run_tasks(diagnose, [(r,) for r in runs], args.jobs)]
    keys = [k for k in results[0] if k not in ("run_dir", "init")]
    init = ", ".join(sorted({r["init"] for r in results}))
    lines = [f"| ({init}, {len(results)} run(s)) | train pseudo-label mIoU / value |", "|---|---|"]
    lines += [f"| {k} | {mean_std(r[k] for r in results)} |" for k in keys]
    text = "\n".join(lines)
    write_results(OUT, {"init": init, "table": text, "runs": results}, args.jobs)
    print(text)
    print(f"written: {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
