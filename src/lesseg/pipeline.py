"""Stages, caching and resume: what `lesseg run CONFIG` executes.

A stage writes its artifacts into the run folder and records in ``stages.json`` that it finished, with a
hash of the config sections it depends on and of the stages it needs. On the next run a stage whose hash is
unchanged is skipped; a changed config re-runs that stage and every stage after it that needs it. A killed
stage is simply not recorded, so it runs again (training stages resume from their own checkpoints).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lesseg.config import config_hash
from lesseg.errors import ConfigError, did_you_mean
from lesseg.io import atomic_write_json


@dataclass
class RunContext:
    """What every stage gets, built once per run: the config, the run folder, the process group, the
    dataset the run reads (after its data check) and the method object, from which stages take what they
    need (its network, its supervision, its inference model) without importing it."""

    cfg: Any
    run_dir: Path
    env: Any = None
    source: Any = None  # lesseg.data.DatasetSource
    method: Any = None  # lesseg.methods.Method
    inputs_key: str = ""  # hash of the running stage's upstream stages (set by Pipeline.run)

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline.

    Args:
        name: its name in ``stages.json`` and for ``--stage``.
        run: does the work; reads its inputs from and writes its artifacts to the run folder.
        keys: dotted config sections that decide its output (``"data"``, ``"cams.scales"``, ...).
        needs: stages whose artifacts it reads.
    """

    name: str
    run: Callable[[RunContext], None]
    keys: tuple[str, ...]
    needs: tuple[str, ...] = ()


class Pipeline:
    """The stages of a run, in order.

    Args:
        stages: the method's stages.
        data_key: what the run's data check left out (a hash of the skipped images' ids), part of every
            stage's hash so that a change in what is skipped re-runs the stages; "" when nothing is.
    """

    def __init__(self, stages: list[Stage], data_key: str = ""):
        self.data_key = data_key
        self.stages = {s.name: s for s in stages}
        for s in stages:
            missing = [n for n in s.needs if n not in self.stages]
            if missing:
                raise ValueError(f"stage {s.name!r} needs unknown stage(s) {missing}")

    def stage_hash(self, name: str, cfg) -> str:
        """Hash of the stage's config sections and, recursively, of the stages it needs."""
        stage = self.stages[name]
        parts = {"config": config_hash(cfg, list(stage.keys)) if stage.keys else ""}
        if self.data_key:
            parts["skipped"] = self.data_key
        parts.update({n: self.stage_hash(n, cfg) for n in stage.needs})
        return config_hash(parts)

    @staticmethod
    def read_state(run_dir: Path) -> dict:
        path = run_dir / "stages.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def is_done(self, name: str, ctx: RunContext, state: dict | None = None) -> bool:
        state = self.read_state(ctx.run_dir) if state is None else state
        return state.get(name, {}).get("hash") == self.stage_hash(name, ctx.cfg)

    def check(self, ctx: RunContext, only: str | None = None, until: str | None = None) -> None:
        """ConfigError for an unknown stage name, or when ``only``'s upstream stages are not done: what
        :meth:`run` would refuse, said before anything is written."""
        for name in (only, until):
            if name is not None and name not in self.stages:
                raise ConfigError(
                    f"unknown stage {name!r}{did_you_mean(name, self.stages)}; stages: {', '.join(self.stages)}"
                )
        if only is not None:
            state = self.read_state(ctx.run_dir)
            stale = [n for n in self.stages[only].needs if not self.is_done(n, ctx, state)]
            if stale:
                raise ConfigError(f"stage {only!r} needs {', '.join(stale)} first (run without --stage)")

    def selected(self, only: str | None = None, until: str | None = None) -> list[str]:
        """The stages a run with ``only`` / ``until`` goes through, in order (done ones included)."""
        names = list(self.stages)
        if only is not None:
            return [only]
        return names[: names.index(until) + 1] if until is not None else names

    def run(self, ctx: RunContext, only: str | None = None, log: Callable[[str], None] = print,
            until: str | None = None) -> dict:  # fmt: skip
        """Run every stage that is not up to date, in order (up to and including ``until``); or just
        ``only`` (always re-run, its needs must be done). Returns ``stages.json``'s content."""
        self.check(ctx, only, until)
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        state = self.read_state(ctx.run_dir)
        main = ctx.env is None or ctx.env.is_main
        for name in self.selected(only, until):
            stage = self.stages[name]
            if only is None and self.is_done(name, ctx, state):
                log(f"stage {name}: up to date, skipped")
                continue
            stale = [n for n in stage.needs if not self.is_done(n, ctx, state)]
            if stale:
                raise ConfigError(f"stage {name!r} needs {', '.join(stale)} first (run without --stage)")
            log(f"stage {name}: running")
            start = time.perf_counter()
            # a training stage must not resume a checkpoint trained on other upstream artifacts
            ctx.inputs_key = config_hash({n: self.stage_hash(n, ctx.cfg) for n in stage.needs})
            stage.run(ctx)
            if ctx.env is not None and ctx.env.distributed:
                from lesseg.engine.distributed import barrier

                barrier(ctx.env)  # the next stage may read what rank 0 alone wrote
            seconds = time.perf_counter() - start
            state[name] = {
                "hash": self.stage_hash(name, ctx.cfg),
                "seconds": round(seconds, 3),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            if main:
                atomic_write_json(ctx.run_dir / "stages.json", state)
            log(f"stage {name}: done in {seconds:.1f} s")
        return state
