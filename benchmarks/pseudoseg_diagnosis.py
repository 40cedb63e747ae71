"""How good PseudoSeg's pseudo-labels are (issue 20): each source on the unlabeled training images.

    .venv/bin/python benchmarks/pseudoseg_diagnosis.py msrc21_imagenet [--fraction 1/8] [--variants semi weak]

For every finished PseudoSeg run of ``benchmarks/pseudoseg.py`` at ``--fraction`` (run that first), the
trained network in inference mode on each unlabeled training image (whole image, no augmentation: the weak
view's network, as training computes the targets) gives the decoder's, SGC's and the fused, sharpened
pseudo-label (the run's gamma and T); their argmax is scored against the unlabeled images' masks, read here
for the diagnosis only, never by training. The classifier's own tags (sigmoid >= 0.5), which gate SGC's
Grad-CAMs in the semi regime (the weak regime gates them with the true tags), are scored against the true
tags: recall, precision, and the share of images given no tag at all. Prints one table and writes
benchmarks/results/pseudoseg_diagnosis_<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from common import mean_std, write_results

from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data.imageio import load_image
from lesseg.eval import ConfusionMatrix
from lesseg.methods.pseudoseg import pseudo_label
from lesseg.predict import normalize_image
from lesseg.registry import get_method

RESULTS = Path(__file__).parent / "results"
SOURCES = ("decoder", "sgc", "fused")


@torch.no_grad()
def diagnose(run_dir: Path) -> dict:
    cfg = load_config(run_dir / "config.yaml")
    source = read_dataset(cfg.data.root, cfg.data.format, **cfg.data.options)
    method = get_method("pseudoseg")(cfg, source)
    net = method.inference_model(run_dir, device="cpu").model.eval()
    classes = source.classes
    unlabeled = set(json.loads((run_dir / "splits" / "labeled.json").read_text())["unlabeled"])
    records = [r for r in source.split(cfg.data.train_split) if r.id in unlabeled and r.mask is not None]
    cms = {s: ConfusionMatrix(classes.num_classes, ignore_index=classes.ignore_index) for s in SOURCES}
    tag_cols = list(classes.tag_indices)
    m = cfg.method
    hits = predicted = true = empty = 0  # the classifier's tags, which gate the semi regime's Grad-CAMs
    for r in records:
        image = normalize_image(load_image(r.image))
        true_tags = torch.zeros(1, len(tag_cols))
        for c in source.tags_of(r) or ():
            true_tags[0, tag_cols.index(c)] = 1.0
        tags = true_tags if m.weak else None
        guess = (torch.sigmoid(net.classifier(net.encoder(image)[-1])) >= 0.5).float()
        hits, predicted, true = (
            hits + int((guess * true_tags).sum()),
            predicted + int(guess.sum()),
            true + int(true_tags.sum()),
        )
        empty += int(guess.sum() == 0)
        valid = torch.ones(1, *image.shape[-2:], dtype=torch.bool)
        out = net.weak_view_targets(image, valid, tags)
        gt = torch.from_numpy(source.load_mask(r))[None, None].float()
        gt = (
            F.interpolate(gt, size=out["weak_decoder_logits"].shape[-2:], mode="nearest")[0, 0].long().numpy()
        )
        for s in SOURCES:
            p = pseudo_label(out["weak_decoder_logits"], out["weak_sgc_logits"], s, m.gamma, m.temperature)
            cms[s].update(p.argmax(1)[0].numpy(), gt)
    return {s: cm.metrics(classes.classes).miou for s, cm in cms.items()} | {
        "images": len(records),
        "classifier_tag_recall": hits / max(true, 1),
        "classifier_tag_precision": hits / max(predicted, 1),
        "classifier_no_tag_images": empty / len(records),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("msrc21_imagenet", "synthetic"))
    parser.add_argument("--fraction", default="1/8")
    parser.add_argument("--variants", nargs="+", help="the benchmark's variants to diagnose (default: all)")
    parser.add_argument("--seeds", nargs="+", help="seeds to diagnose (default: all that ran)")
    args = parser.parse_args()
    bench = RESULTS / f"pseudoseg_{args.dataset}.json"
    if not bench.is_file():
        print(
            f"{bench} not found: run benchmarks/pseudoseg.py {args.dataset} first (nothing to diagnose, exiting)"
        )
        return 0
    runs = json.loads(bench.read_text())["runs"]
    rows: dict[str, dict[str, dict]] = {}
    for variant, by_fraction in runs.items():
        if args.variants and variant not in args.variants:
            continue
        for seed, r in by_fraction.get(args.fraction, {}).items():
            if args.seeds and seed not in args.seeds:
                continue
            run_dir = Path(r["run_dir"])
            if (run_dir / "checkpoints" / "train_final.pt").is_file():
                rows.setdefault(variant, {})[seed] = {**diagnose(run_dir), "val_miou": r["miou"]}
                print(variant, seed, rows[variant][seed], flush=True)
    lines = [f"| pseudo-labels on the unlabeled train images ({args.fraction} labeled) | decoder | SGC | fused | "
             "classifier's tags: recall / precision / images with none | val mIoU of the run | seeds |", "|---" * 7 + "|"]  # fmt: skip
    for variant, by_seed in rows.items():
        cells = [mean_std(r[s] for r in by_seed.values()) for s in SOURCES]
        tags = " / ".join(mean_std(r[k] for r in by_seed.values()) for k in
                          ("classifier_tag_recall", "classifier_tag_precision", "classifier_no_tag_images"))  # fmt: skip
        lines.append(f"| {variant} | {' | '.join(cells)} | {tags} | {mean_std(r['val_miou'] for r in by_seed.values())} | "
                     f"{', '.join(by_seed)} |")  # fmt: skip
    text = "\n".join(lines)
    write_results(RESULTS / f"pseudoseg_diagnosis_{args.dataset}.json", {"fraction": args.fraction, "table": text,
                                                                          "runs": rows})  # fmt: skip
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
