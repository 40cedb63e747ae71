"""Atomic file writes: a reader never sees a half-written file, a killed job never leaves one."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


#: the temporary files of :func:`atomic_write`: ``.<name>.<8 random characters of mkstemp>.tmp``
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` left under ``folder`` when its process was
    killed mid-write; returns them. Call it only while no other process writes there (a run holds its
    folder's lock)."""
    removed = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if _TEMP_NAME.fullmatch(name):
                path = Path(dirpath, name)
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")
