"""What a training run reports: its progress on the console, one JSON line per logged step, TensorBoard when
installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lesseg.progress import Progress


class RunLogger:
    """Logs of the main process; the other processes get a logger that does nothing.

    Args:
        run_dir: the run folder; ``log.jsonl`` goes there (and ``tensorboard/`` when TensorBoard is installed).
        total_steps: length of the progress bar.
        enabled: False on non-main processes.
        resume_step: on resume, this stage's lines past this step (written after the last checkpoint) are
            dropped, so the log reads as if the run had never stopped; a fresh start drops all of its lines.
        stage: the name written into every line, so several trained networks can share one log.
        progress: True/False forces the console bar on/off; None: :mod:`lesseg.progress` decides (a bar on
            a terminal, one line at the end otherwise).
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
        mode = None if progress is None else ("bar" if progress else "off")
        self.bar = Progress(stage, total_steps, "step", mode=mode, initial=resume_step)
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
            self.bar.postfix(**values)

    def note(self, text: str) -> None:
        """A line on the console (above the bar on a terminal)."""
        if self.bar is not None:
            self.bar.note(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
