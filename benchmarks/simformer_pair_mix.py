"""What crosim's pair sampler does to the training images' mix (issue 21 diagnosis): over 6 epochs of
configs/simformer/msrc21.yaml's ``WeakShotPairDataset`` against 6 epochs of single images, the share of
drawn images that carry a novel tag and the mean share of their pixels that are novel (ignored in stage
one's mask loss). Reads tags and whole-image masks only (no augmentation, no training): a diagnosis, not
what training reads.

    .venv/bin/python benchmarks/simformer_pair_mix.py      # splits 0-3, about a minute

Writes benchmarks/results/simformer_pair_mix_msrc21.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from common import msrc21_or_synthetic, write_results

from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.registry import get_method

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "simformer" / "msrc21.yaml"
OUT = Path(__file__).parent / "results" / "simformer_pair_mix_msrc21.json"
EPOCHS = 6


def class_pixels(source, records) -> np.ndarray:
    """``[images, classes]`` labelled pixel counts of the whole masks, read once for every split."""
    k, ignore = source.classes.num_classes, source.classes.ignore_index
    counts = []
    for r in records:
        mask = source.load_mask(r)
        counts.append(np.bincount(mask[mask != ignore], minlength=k))
    return np.stack(counts)


def mix(split: int, data: Path, source, counts: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """One split's image mix; ``counts`` from :func:`class_pixels` (made here when None), returned."""
    cfg = load_config(CONFIG, [f"data.root={data}", f"data.novel_seed={split}"])
    method = get_method("simformer")(cfg, source)
    pairs = method.stage_one_dataset().dataset  # WithValid around WeakShotPairDataset
    novel = sorted(pairs.novel)
    records = pairs.base.records
    if counts is None:
        counts = class_pixels(source, records)
    novel_share = counts[:, novel].sum(1) / np.maximum(1, counts.sum(1))
    has_novel = np.array([any(c in pairs.novel for c in tags) for tags in pairs.tags])
    drawn = []
    for epoch in range(EPOCHS):
        pairs.set_epoch(epoch)
        for i in range(len(pairs)):
            anchor = pairs.anchor_of(i)
            drawn += [anchor, pairs.partner_of(anchor)]
    drawn = np.array(drawn)
    times = np.bincount(
        drawn
    )  # single images: each drawn EPOCHS times; pairs: the partners' picks are uneven
    return {"split": split, "novel": [source.classes.classes[c] for c in novel],
            "single": {"images_with_novel_tag": float(has_novel.mean()), "novel_pixel_share": float(novel_share.mean())},
            "pairs": {"images_with_novel_tag": float(has_novel[drawn].mean()),
                      "novel_pixel_share": float(novel_share[drawn].mean()),
                      "distinct_images": int(len(set(drawn.tolist()))), "draws": int(len(drawn)),
                      "most_drawn_image": int(times.max()),
                      "draws_of_the_top_tenth": float(np.sort(times)[::-1][: len(records) // 10].sum() / len(drawn))}
            }, counts  # fmt: skip


def main() -> int:
    found = msrc21_or_synthetic("msrc21_imagenet", None)
    if found is None:
        return 0
    data, init = found
    d = load_config(CONFIG, [f"data.root={data}"]).data
    source = read_dataset(d.root, d.format, **d.options)  # one index, one read of the masks, every split
    rows, counts = [], None
    for split in range(4):
        row, counts = mix(split, data, source, counts)
        rows.append(row)
    print(
        "| split | images with a novel tag: single / pairs | novel pixel share: single / pairs | "
        "pairs: most drawn image (single: 6) | pairs: draws of the top tenth (single: 0.10) |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        s, p = r["single"], r["pairs"]
        print(f"| {r['split']} | {s['images_with_novel_tag']:.2f} / {p['images_with_novel_tag']:.2f} | "
              f"{s['novel_pixel_share']:.3f} / {p['novel_pixel_share']:.3f} | {p['most_drawn_image']} | "
              f"{p['draws_of_the_top_tenth']:.2f} |")  # fmt: skip
    write_results(OUT, {"init": "none (no network)", "epochs": EPOCHS, "splits": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
