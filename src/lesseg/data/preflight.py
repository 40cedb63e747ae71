"""What a run checks before its first stage: the data it will read, so that nothing silently changes it.

`lesseg data check` decodes everything; a run checks what it will read, more cheaply: every problem the
reader found in the run's splits (unknown tags, listed images without a file, entries outside the dataset
folder, empty split lists, ...), each image's header (it opens, its size), each mask (decoded: label values
outside the classes, a size that differs from its image) and each image's tags against the classes. The
run then stops with those messages, or, with ``data.skip_bad=true``, leaves the bad images out and lists
them in ``data_check.json`` in the run folder. The result is kept there too, keyed by the files' sizes and
modification times, so a run on unchanged data does not check it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lesseg.data.check import inspect_record
from lesseg.data.source import DatasetSource, Record, listed
from lesseg.errors import DataError
from lesseg.io import atomic_write_json

RESULT_FILE = "data_check.json"
MAX_SHOWN = 20  # problems printed in the error before they are counted


@dataclass
class RunDataCheck:
    """The outcome of :func:`check_run_data`.

    Args:
        splits: the split names the run reads (``a+b`` joins).
        checked: images checked.
        problems: every problem that concerns the run, as ``data check`` words it.
        bad: image id -> its problems, for the images that a skip leaves out.
        key: fingerprint of the files checked (names, sizes, modification times) and of the problems.
        seconds: how long the check took.
    """

    splits: list[str]
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    bad: dict[str, list[str]] = field(default_factory=dict)
    key: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunDataCheck:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def _parts(split_names: list[str]) -> list[str]:
    return list(dict.fromkeys(p for name in split_names for p in name.split("+")))


def _records(source: DatasetSource, split_names: list[str]) -> list[Record]:
    """The distinct records of the splits (``source.split`` names a missing split and lists the valid)."""
    unique: dict[str, Record] = {}
    for name in split_names:
        for r in source.split(name):
            unique.setdefault(r.id, r)
    return list(unique.values())


def fingerprint(source: DatasetSource, records: list[Record], problems: list[str]) -> str:
    """Hash of what a check reads: each record's files with their size and modification time, its tags,
    the class metadata and the reader's problems."""
    h = hashlib.sha256()
    h.update(json.dumps([source.format, str(source.root), source.classes.to_dict()], sort_keys=True).encode())
    for r in records:
        h.update(f"{r.id}\0{r.tags}\0".encode())
        for path in (r.image, r.mask):
            if path is None:
                h.update(b"-\0")
                continue
            try:
                st = os.stat(path)
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            except OSError:
                h.update(f"{path}\0missing\0".encode())
    h.update("\n".join(problems).encode())
    return h.hexdigest()[:16]


def _concerning(source: DatasetSource, split_names: list[str]) -> tuple[list[Record], list[str]]:
    """The records of the run's splits and the reader's problems that concern them."""
    records = _records(source, split_names)
    parts, ids = set(_parts(split_names)), {r.id for r in records}
    return records, [p for p in source.problems if not hasattr(p, "concerns") or p.concerns(parts, ids)]


def check_run_data(source: DatasetSource, split_names: list[str], workers: int = 4) -> RunDataCheck:
    """Check what a run reading ``split_names`` meets (see the module docstring); never raises for a bad
    file, only for a split that does not exist."""
    start = time.perf_counter()
    records, found = _concerning(source, split_names)
    result = RunDataCheck(split_names, len(records), key=fingerprint(source, records, found))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for problems in pool.map(lambda r: inspect_record(source, r, decode_image=False)[0], records):
            found += problems
    for p in found:
        image_id = getattr(p, "image_id", None)
        if image_id is not None:
            result.bad.setdefault(image_id, []).append(str(p))
    result.problems = [str(p) for p in listed(found)]
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def without_bad(source: DatasetSource, check: RunDataCheck) -> DatasetSource:
    """``source`` with the images of ``check.bad`` left out of every split."""
    bad = set(check.bad)
    splits = {name: [r for r in records if r.id not in bad] for name, records in source.splits.items()}
    return dataclasses.replace(source, splits=splits)


def _stop_message(source: DatasetSource, check: RunDataCheck) -> str:
    shown = check.problems[:MAX_SHOWN]
    more = len(check.problems) - len(shown)
    lines = [f"{source.root}: {len(check.problems)} problem(s) in the data this run reads "
             f"(splits {', '.join(check.splits)}):", *(f"  {p}" for p in shown)]  # fmt: skip
    if more:
        lines.append(f"  ... and {more} more (lesseg data check {source.root} lists them all)")
    lines.append("fix them, or set data.skip_bad=true to leave the bad images out (listed in the run folder)")
    return "\n".join(lines)


def prepare_run_data(
    source: DatasetSource, split_names: list[str], run_dir: Path, skip_bad: bool, log=print,
    workers: int = 4, write: bool = True,
) -> tuple[DatasetSource, RunDataCheck]:  # fmt: skip
    """Check the run's data (or reuse the stored check of unchanged files, ``run_dir/data_check.json``,
    written when ``write``), then stop with the problems or, with ``skip_bad``, leave the bad images out.
    Returns the source the run reads and the check.

    Raises:
        DataError: the problems, one per line, unless ``skip_bad``; also with ``skip_bad`` when a split
            the run reads is left with no images.
    """
    path = Path(run_dir) / RESULT_FILE
    stored = None
    if path.is_file():
        try:
            stored = RunDataCheck.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError):
            stored = None
    records, reader_problems = _concerning(source, split_names)
    if stored is not None and stored.splits == split_names and \
            stored.key == fingerprint(source, records, reader_problems):  # fmt: skip
        check = stored
    else:
        check = check_run_data(source, split_names, workers)
        if write:
            atomic_write_json(path, check.to_dict())
    if check.problems and not skip_bad:
        raise DataError(_stop_message(source, check))
    if not check.problems:
        log(f"data: {check.checked} images checked in {check.seconds:.1f} s, no problems")
        return source, check
    kept = without_bad(source, check)
    for name in split_names:
        if not kept.split(name):
            raise DataError(_stop_message(source, check).rsplit("\n", 1)[0] +
                            f"\nsplit {name!r} has no usable images left")  # fmt: skip
    remain = len(_records(kept, split_names))
    log(f"data: {len(check.bad)} image(s) with problems left out (data.skip_bad=true), {remain} of "
        f"{check.checked} remain; {len(check.problems)} problem(s) listed in {path}")  # fmt: skip
    return kept, check
