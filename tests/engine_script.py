"""A tiny training run for the engine tests, started as a command (plain python or torchrun).

    python tests/engine_script.py RUN_DIR DATA_DIR [--sleep S] [key=value ...]

A GroupNorm convnet learns the tags of a synthetic dataset with the real Trainer, SegDataset and seeded
transforms; the final weights of every rank go to RUN_DIR/final_rank<r>.pt.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset
from lesseg.engine import Trainer, init_distributed


class TinyGN(nn.Module):
    def __init__(self, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GroupNorm(8, 32), nn.ReLU(),
            nn.Dropout(dropout),  # draws from the RNG: a resumed run must restore its state
        )  # fmt: skip
        self.head = nn.Conv2d(32, num_classes, 1, bias=False)

    def param_groups(self):
        return {
            "backbone_weight": [
                p for n, p in self.body.named_parameters() if n.endswith("weight") and p.dim() > 1
            ],
            "backbone_bias": [
                p for n, p in self.body.named_parameters() if not (n.endswith("weight") and p.dim() > 1)
            ],
            "new_weight": list(self.head.parameters()),
        }

    def forward(self, x):
        return self.head(self.body(x)).mean((2, 3))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("data_dir")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    torch.set_num_threads(1)
    cfg = load_config(None, ["data.workers=0", "train.log_every=1", "optim.lr=0.05", *args.overrides])
    source = read_dataset(args.data_dir)
    tf = T.Compose([T.RandomRescale(scale=(0.75, 1.25)), T.RandomCrop(32), T.RandomHorizontalFlip(),
                    T.ColorJitter(), T.Normalize()])  # fmt: skip
    dataset = SegDataset(source, "train", transform=tf, seed=cfg.train.seed)
    torch.manual_seed(0)
    model = TinyGN(source.classes.num_classes, args.dropout)

    def step_fn(model, batch, ctx):
        if args.sleep:
            time.sleep(args.sleep)
        logits = model(batch["image"])
        return {"loss": F.multilabel_soft_margin_loss(logits, batch["tags"])}

    env = init_distributed(cfg.train.device)
    trained = Trainer(cfg, model, step_fn, dataset, args.run_dir, env=env).fit()
    torch.save(trained.state_dict(), f"{args.run_dir}/final_rank{env.rank}.pt")


if __name__ == "__main__":
    main()
