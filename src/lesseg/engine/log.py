"""What a training run reports: a progress bar, one JSON line per logged step, TensorBoard when installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm


class RunLogger:
    """Logs of the main process; the other processes get a logger that does nothing.

    Args:
        run_dir: the run folder; ``log.jsonl`` goes there (and ``tensorboard/`` when TensorBoard is installed).
        total_steps: length of the progress bar.
        enabled: False on non-main processes.
        resume_step: on resume, this stage's lines past this step (written after the last checkpoint) are
            dropped, so the log reads as if the run had never stopped; a fresh start drops all of its lines.
        stage: the name written into every line, so several trained networks can share one log.
    """

    def __init__(
        self,
        run_dir: str | Path,
        total_steps: int,
        enabled: bool = True,
        resume_step: int = 0,
        progress: bool | None = None,
        stage: str = "train",
    ):
        self.enabled = enabled
        self.stage = stage
        self.path = Path(run_dir) / "log.jsonl"
        self.bar = None
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():  # several stages share the file: keep the others' lines untouched

            def keep(record: dict) -> bool:
                return record.get("stage") != stage or record.get("step", 0) <= resume_step

            kept = [ln for ln in self.path.read_text().splitlines() if ln.strip() and keep(json.loads(ln))]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        show = sys.stderr.isatty() if progress is None else progress
        self.bar = tqdm(
            total=total_steps, initial=resume_step, disable=not show, dynamic_ncols=True, unit="step"
        )
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        except Exception:  # TensorBoard is optional
            self.tb = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"stage": self.stage, **record}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None and "step" in record:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(k, v, record["step"])

    def progress(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def postfix(self, **values: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
