"""A run's ``metrics.json``: every evaluation, nested by the stage that produced it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lesseg.errors import DataError
from lesseg.io import atomic_write_json


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def record_metrics(run_dir: str | Path, stage: str, metrics: Any) -> Path:
    """Store ``metrics`` (a dict, or anything with ``to_dict()``) under ``stage``, replacing that stage's
    previous entry and keeping the others. Written atomically; call it from one process (rank 0)."""
    if hasattr(metrics, "to_dict"):
        metrics = metrics.to_dict()
    data = read_metrics(run_dir)
    data[stage] = metrics
    return atomic_write_json(Path(run_dir) / "metrics.json", data)


#: Which references each headline row is read against: (reference, its row), the best of them counts.
#: Only references that read no more masks than the run does count (untrained network, random among the
#: tags; for a semi-supervised run the supervised-only baseline, trained on its labeled images alone; for
#: a weak-shot run the weak-supervision baseline, base masks plus CAM pseudo-labels of the novel tags).
_AGAINST = {
    "cams": (("untrained", "cams"), ("random_tags", "train")),
    "pseudo_labels": (("untrained", "pseudo_labels"), ("random_tags", "train")),
    "stage_one": (("random_tags", "val"), ("weak_baseline", "val")),  # SimFormer before retraining
    "segmenter": (
        ("untrained", "segmenter"),
        ("random_tags", "val"),
        ("supervised_only", "val"),
        ("weak_baseline", "val"),
    ),
    "cluster_eval": (),  # PiCIE: Hungarian-matched clusters; its untrained baseline is a benchmark row
}


def headline(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per evaluated stage: its mIoU, the best reference's mIoU (untrained network or random among
    tags) and the margin between them; ``reference``/``margin`` are None without references."""
    refs = metrics.get("references") or {}
    rows = []
    for stage, against in _AGAINST.items():
        m = metrics.get(stage)
        if not isinstance(m, dict) or "miou" not in m:
            continue
        found = [(f"{a} {b}", refs[a][b]["miou"]) for a, b in against if "miou" in refs.get(a, {}).get(b, {})]
        name, best = max(found, key=lambda f: f[1]) if found else (None, None)
        row = {"stage": stage, "miou": m["miou"], "reference": best, "reference_name": name,
               "margin": None if best is None else m["miou"] - best}  # fmt: skip
        for extra in ("coverage", "best_threshold_miou", "pixel_acc"):
            if extra in m:
                row[extra] = m[extra]
        if isinstance(m.get("multi_tag"), dict):
            row["multi_tag_miou"] = m["multi_tag"]["miou"]
        if isinstance(m.get("subsets"), dict):  # weak-shot: base and novel classes
            row.update(base_miou=m["subsets"]["base"], novel_miou=m["subsets"]["novel"])
        rows.append(row)
    return rows


def format_headline(metrics: dict[str, Any]) -> str:
    """The headline rows as a small text table (what `lesseg run` prints at the end)."""
    lines = [f"{'stage':<14} {'mIoU':>6} {'best ref':>9} {'margin':>7}  notes"]
    for r in headline(metrics):
        ref = "" if r["reference"] is None else f"{r['reference']:.3f}"
        margin = "" if r["margin"] is None else f"{r['margin']:+.3f}"
        notes = []
        if "multi_tag_miou" in r:
            notes.append(f"multi-tag {r['multi_tag_miou']:.3f}")
        if "novel_miou" in r:
            notes.append(f"base {r['base_miou']:.3f}, novel {r['novel_miou']:.3f}")
        if "best_threshold_miou" in r:
            notes.append(f"best-threshold {r['best_threshold_miou']:.3f}")
        if "pixel_acc" in r:
            notes.append(f"pixel accuracy {r['pixel_acc']:.3f}")
        if "coverage" in r:
            notes.append(f"coverage {r['coverage']:.3f}")
        if r["reference_name"]:
            notes.append(f"ref: {r['reference_name']}")
        lines.append(f"{r['stage']:<14} {r['miou']:>6.3f} {ref:>9} {margin:>7}  {', '.join(notes)}")
    lines += below_reference(headline(metrics))
    return "\n".join(lines)


def below_reference(rows: list[dict[str, Any]]) -> list[str]:
    """A sentence for every headline row that scores below its best reference."""
    out = []
    for r in rows:
        if r["margin"] is not None and r["margin"] < 0:
            out.append(f"{r['stage']}: mIoU {r['miou']:.3f} is BELOW the {r['reference_name']} reference "
                       f"({r['reference']:.3f}): this stage learned less than that reference reaches")  # fmt: skip
    return out
