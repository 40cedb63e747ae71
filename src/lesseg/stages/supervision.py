"""Stage `supervision`: the run's supervision splits as data, saved with the run.

With ``data.labeled`` (semi-supervised) or ``data.novel`` (weak-shot) set, the pipeline starts with this
stage: it writes ``splits/labeled.json`` (which training images keep their masks) and/or
``splits/base_novel.json`` (which classes keep only their tags) from the method's
:attr:`~lesseg.methods.Method.splits`, and every stage depends on it, so a different split re-runs them.
Without either key the pipeline is the method's own, and its stage hashes are unchanged.
"""

from __future__ import annotations

from lesseg.pipeline import RunContext, Stage
from lesseg.stages.common import is_main

SUPERVISION_KEYS = ("data.train_split", "data.labeled", "data.labeled_seed", "data.novel", "data.novel_seed")


def save_splits(ctx: RunContext) -> None:
    splits = ctx.method.splits
    if is_main(ctx):
        splits.save(ctx.path("splits"), ctx.source.classes)


def with_supervision(cfg, stages: list[Stage]) -> list[Stage]:
    """``stages`` led by the ``supervision`` stage when the config sets a split (the stages without
    upstream stages then need it; the others depend on it through them)."""
    if cfg.data.labeled is None and cfg.data.novel is None:
        return stages
    led = [s if s.needs else Stage(s.name, s.run, s.keys, ("supervision",)) for s in stages]
    return [Stage("supervision", save_splits, SUPERVISION_KEYS), *led]
