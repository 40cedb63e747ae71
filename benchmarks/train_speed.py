"""Training throughput of the CAM classifier (images/s): backbone x precision, on this machine's device.

    .venv/bin/python benchmarks/train_speed.py [--backbones resnet18 resnet50] [--steps 5] [--device auto]

One training step = forward, multilabel soft-margin loss, backward, SGD step, as the engine runs it
(autocast for bf16), on random 224x224 images in batches of 16, output stride 16, random init (no weights
can be downloaded here). Data loading is left out: benchmarks/data_speed.py measures it separately and it is
far faster than these steps. Prints a table and writes benchmarks/results/train_speed_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from lesseg.models import create_model, multilabel_soft_margin_loss

RESULTS = Path(__file__).parent / "results"


def measure(
    backbone: str, dtype: torch.dtype | None, device: torch.device, steps: int, batch: int, size: int
):
    torch.manual_seed(0)
    model = create_model("cam_classifier", backbone=backbone, num_classes=20, output_stride=16).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    y = (torch.rand(batch, 20, device=device) < 0.15).float()
    ctx = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext

    def step():
        with ctx():
            loss = multilabel_soft_margin_loss(model(x)["logits"].float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: allocations, kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    rows = []
    for backbone in args.backbones:
        rates = {}
        for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            rates[label] = measure(backbone, dtype, device, args.steps, args.batch, args.size)
        rows.append({"backbone": backbone, "output_stride": 16, "size": args.size, "batch": args.batch,
                     "fp32_images_per_s": rates["fp32"], "bf16_images_per_s": rates["bf16"],
                     "bf16_over_fp32": rates["bf16"] / rates["fp32"]})  # fmt: skip
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"CAM classifier training, {args.size}x{args.size}, batch {args.batch}, OS16, random init; device: {name}"
    )
    print(f"{'backbone':<12} {'fp32 img/s':>11} {'bf16 img/s':>11} {'bf16/fp32':>10}")
    for r in rows:
        print(
            f"{r['backbone']:<12} {r['fp32_images_per_s']:>11.2f} {r['bf16_images_per_s']:>11.2f} "
            f"{r['bf16_over_fp32']:>10.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"train_speed_{device.type}.json"
    meta = {"device": name, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "steps": args.steps}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
