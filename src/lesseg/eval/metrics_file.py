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
