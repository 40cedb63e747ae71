"""Tiny datasets written by tests, in the exact on-disk layouts of the real ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lesseg.data.imageio import color_palette

FOLDER_CLASSES = ["building", "grass", "tree", "cow"]


def write_png(path: Path, array: np.ndarray, palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.ascontiguousarray(array))
    if palette:
        im.putpalette(color_palette(256).reshape(-1).tolist())
    im.save(path)
    return path


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_folder_dataset(root: Path, background: str | None = None, with_csv: bool = True) -> Path:
    """4 train + 2 val images of 8x6 (WxH) with palette masks; MSRC-21's layout."""
    classes = (["background"] if background else []) + FOLDER_CLASSES
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(
        json.dumps({"classes": classes, "ignore_index": 255, "background": background})
    )
    ids = [f"{i}_{j}_s" for i, j in [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]]
    rows = ["image,labels"]
    for k, image_id in enumerate(ids):
        write_png(root / "images" / f"{image_id}.png", rgb(6, 8, k))
        mask = np.full((6, 8), k % len(classes), dtype=np.uint8)
        mask[:, 4:] = (k + 1) % len(classes)
        mask[0, 0] = 255
        write_png(root / "masks" / f"{image_id}.png", mask, palette=True)
        present = sorted({int(v) for v in np.unique(mask) if v != 255})
        rows.append(f"{image_id}," + " ".join(classes[c] for c in present if classes[c] != background))
    if with_csv:
        (root / "image_labels.csv").write_text("\n".join(rows) + "\n")
    (root / "train.txt").write_text("\n".join(ids[:4]) + "\n")
    (root / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    return root


def make_camvid(root: Path, absolute_paths: bool = False) -> Path:
    """CamVid in the SegNet layout: train/, trainannot/, val/, valannot/ and `image mask` pair lists."""
    for split, names in {"train": ["0001TP_006690", "0001TP_006720"], "val": ["0016E5_07959"]}.items():
        lines = []
        for k, name in enumerate(names):
            write_png(root / split / f"{name}.png", rgb(6, 8, k))
            mask = np.arange(48, dtype=np.uint8).reshape(6, 8) % 12  # 0..11, 11 = unlabelled
            write_png(root / f"{split}annot" / f"{name}.png", mask)
            prefix = "/SegNet/CamVid/" if absolute_paths else ""
            lines.append(f"{prefix}{split}/{name}.png {prefix}{split}annot/{name}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_predicting_run(run_dir: Path, num_classes: int = 4, overrides: tuple[str, ...] = ()) -> Path:
    """A run folder that `lesseg predict` accepts, without training: the synthetic config, its classes and
    a DeepLabv3+ at its (seeded) initial weights as `segmenter_final.pt`."""
    import torch

    from lesseg.config import load_config, save_config
    from lesseg.data.classes import ClassInfo
    from lesseg.engine.checkpoint import save_checkpoint
    from lesseg.stages.segmenter import build_segmenter

    cfg = load_config("configs/cam/synthetic.yaml", list(overrides))
    save_config(cfg, run_dir / "config.yaml")
    classes = ClassInfo(
        tuple(["background", *(f"class{i}" for i in range(1, num_classes))]), background="background"
    )
    (run_dir / "classes.json").write_text(json.dumps(classes.to_dict()))
    torch.manual_seed(0)
    model = build_segmenter(cfg.segmenter.model, num_classes)
    save_checkpoint(run_dir / "checkpoints" / "segmenter_final.pt", {"model": model.state_dict()})
    return run_dir


#: overrides that shrink configs/cam/synthetic.yaml to seconds on 48-px scenes
TINY_CAM = ("data.crop_size=48", "data.scale_range=[0.9,1.1]", "data.batch_size=4", "data.workers=0",
            "train.epochs=1", "cams.scales=[1.0]", "segmenter.train.epochs=1", "eval.gallery=1",
            "eval.references=false")  # fmt: skip


def tiny_scenes(root: Path) -> Path:
    """12 synthetic 48-px scenes with a background class (4 classes), in the folder layout."""
    from lesseg.data.synth import generate

    generate(root, images=12, classes=4, seed=0, size=48, background="textured")
    return root


def run_args(data_root: Path, run_dir: Path, *overrides: str) -> list[str]:
    """`lesseg run` of the tiny synthetic CAM pipeline into ``run_dir/r``."""
    return ["run", "configs/cam/synthetic.yaml", f"data.root={data_root}", f"run_dir={run_dir}", "name=r",
            *TINY_CAM, *overrides]  # fmt: skip
