"""One run writes into a run folder at a time: a second `lesseg run` on a folder in use stops at once with
one line naming the folder and the holder's pid; the lock of a killed run is taken over, with a message;
a run starts by removing the temporary files that killed writes left."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lesseg.cli import main
from lesseg.runlock import LOCK_NAME, RunFolderLocked, RunLock
from tiny_data import run_args, tiny_scenes

LESSEG = [sys.executable, "-m", "lesseg"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return tiny_scenes(tmp_path_factory.mktemp("d") / "textured")


def holder_pid(run: Path, timeout: float = 120) -> int:
    """The pid written in the run's lock file, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (run / LOCK_NAME).read_text() if (run / LOCK_NAME).is_file() else ""
        if text:
            return json.loads(text)["pid"]
        time.sleep(0.1)
    raise AssertionError(f"no lock in {run} after {timeout} s")


def test_second_run_stops_at_once_and_a_killed_runs_lock_is_taken_over(tmp_path, scenes, capsys):
    args = run_args(scenes, tmp_path)
    first = subprocess.Popen([*LESSEG, *args, "train.epochs=200"], env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder_pid(tmp_path / "r") == first.pid
        while not (tmp_path / "r" / "stages.json").exists() and not (tmp_path / "r" / "log.jsonl").exists():
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.1)  # until it trains
        config_before = (tmp_path / "r" / "config.yaml").read_text()
        start = time.monotonic()
        second = subprocess.run([*LESSEG, *args, "pseudo_labels.bg_threshold=0.6"], env=ENV,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 2
        assert time.monotonic() - start < 30  # at once: no stage ran (the time is Python and torch starting)
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert str(tmp_path / "r") in lines[0] and f"pid {first.pid}" in lines[0] and "in use" in lines[0]
        assert (tmp_path / "r" / "config.yaml").read_text() == config_before  # nothing of the second's landed
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    # the killed run's lock is stale: the next run takes it over and says so
    capsys.readouterr()
    assert main([*args, "train.epochs=1", "--stage", "cam_eval"]) == 2  # (its classifier is not done)
    assert f"taking over the stale lock of pid {first.pid}" in capsys.readouterr().out
    assert (tmp_path / "r" / LOCK_NAME).read_text() == ""  # released, even on an error


def test_lock_in_process(tmp_path):
    with RunLock(tmp_path / "r") as lock:
        assert lock.held
        assert json.loads((tmp_path / "r" / LOCK_NAME).read_text())["pid"] == os.getpid()
        # another holder in this process (flock locks belong to the open file, not the process)
        with pytest.raises(RunFolderLocked, match=rf"in use by another lesseg run \(pid {os.getpid()},"):
            RunLock(tmp_path / "r").acquire()
    messages = []
    with RunLock(tmp_path / "r", log=messages.append):
        pass
    assert messages == []  # a clean release leaves nothing stale


def test_run_removes_stale_temporary_files(tmp_path, scenes, capsys):
    run = tmp_path / "r"
    stale = [
        run / "pseudo_labels" / ".1_s.png.k2x_8abc.tmp",
        run / "checkpoints" / ".classifier_last.pt.abcd1234.tmp",
    ]
    kept = run / "pseudo_labels" / "notes.tmp"  # not a name atomic_write makes
    for path in [*stale, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    args = run_args(scenes, tmp_path)
    assert main([*args, "train.epochs=1", "--stage", "classifier"]) == 0
    assert f"{run}: removed 2 temporary file(s) left by a killed run" in capsys.readouterr().out
    assert not any(p.exists() for p in stale) and kept.exists()
