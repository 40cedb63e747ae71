"""Progress of long work on the console: a tqdm bar on a terminal, one line per task otherwise.

Every stage that loops over images or steps (training, CAM inference, random walk, clustering, evaluation,
prediction) reports through :class:`Progress` on stderr. On a terminal the bar shows what runs, how far it
is (done/total), its speed and the time left; when stderr is not a terminal (CI logs, ``nohup``, a pipe)
each task writes one line when it ends. ``LESSEG_PROGRESS=bar|line|off`` overrides the choice.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> for _ in track(range(3), "cams", unit="image", file=out, mode="line"):
    ...     pass
    >>> out.getvalue().startswith("cams: 3/3 images in ")
    True
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

MODES = ("bar", "line", "off")


def _mode(file: IO, mode: str | None) -> str:
    mode = (
        mode
        or os.environ.get("LESSEG_PROGRESS")
        or ("bar" if getattr(file, "isatty", lambda: False)() else "line")
    )
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)} (LESSEG_PROGRESS), got {mode!r}")
    return mode


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Progress of one task of ``total`` units (``None``: unknown).

    Args:
        desc: what runs, e.g. ``"cams"`` or ``"classifier"``.
        total: units to do; ``initial``: units done already (a resumed training).
        unit: what a unit is (``"image"``, ``"step"``, ``"batch"``).
        enabled: False on processes that should stay silent (ranks other than 0).
        file: the stream (stderr); ``mode``: ``bar``, ``line`` or ``off`` (default: bar on a terminal).
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "image", enabled: bool = True,
                 file: IO | None = None, mode: str | None = None, initial: int = 0):  # fmt: skip
        self.desc, self.total, self.unit, self.initial = desc, total, unit, initial
        self.file = file if file is not None else sys.stderr
        self.mode = _mode(self.file, mode) if enabled else "off"
        self.done, self.start, self.postfix_values = initial, time.perf_counter(), {}
        self.bar = None
        if self.mode == "bar":
            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, file=self.file, dynamic_ncols=True
            )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def postfix(self, **values: Any) -> None:
        """Values shown beside the bar (and in the closing line), e.g. ``loss=0.3, epoch=2``."""
        self.postfix_values.update(values)
        if self.bar is not None:
            shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in values.items()}
            self.bar.set_postfix(shown, refresh=False)

    def note(self, text: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        if self.mode == "bar":
            tqdm.write(text, file=self.file)
        elif self.mode == "line":
            print(text, file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "line":
            seconds = time.perf_counter() - self.start
            n = self.done - self.initial
            of = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
            rate = f", {n / seconds:.2f} {self.unit}s/s" if seconds > 0 and n else ""
            extra = "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}"
                            for k, v in self.postfix_values.items())  # fmt: skip
            print(
                f"{self.desc}: {of} {self.unit}s in {format_duration(seconds)}{rate}{extra}",
                file=self.file,
                flush=True,
            )
        self.mode = "off"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(iterable: Iterable, desc: str, total: int | None = None, unit: str = "image", enabled: bool = True,
          file: IO | None = None, mode: str | None = None) -> Iterator:  # fmt: skip
    """``iterable`` with a :class:`Progress` of one unit per item (``total`` defaults to its length)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(desc, total, unit, enabled, file, mode) as progress:
        for item in iterable:
            yield item
            progress.update()
