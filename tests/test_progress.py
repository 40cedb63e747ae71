"""Progress on the console: a bar on a terminal (a pseudo-terminal here), one line per task otherwise, and
a training stage says how long it will take once its first steps are measured."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from lesseg.cli import main
from tiny_data import run_args, tiny_scenes


def test_bar_on_a_terminal():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    code = "from lesseg.progress import track\nfor _ in track(range(40), 'cams'):\n    pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=slave, stdout=slave,
                            env={k: v for k, v in os.environ.items() if k != "LESSEG_PROGRESS"})  # fmt: skip
    os.close(slave)
    proc.wait(timeout=60)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    text = out.decode(errors="replace")
    assert "cams:" in text and "40/40" in text and "\r" in text  # tqdm redraws its line in place


def test_one_line_per_task_when_not_a_terminal(tmp_path, capsys):
    scenes = tiny_scenes(tmp_path / "d")
    assert main(run_args(scenes, tmp_path, "train.log_every=1", "train.epochs=2")) == 0
    err = capsys.readouterr().err.splitlines()
    ends = [line for line in err if " left at " not in line]
    for task in ("classifier: ", "cams: ", "cams scored: ", "pseudo-labels from cams: ", "segmenter: ",
                 "scoring val: "):  # fmt: skip
        assert sum(line.startswith(task) for line in ends) == 1, (task, err)
    done = next(line for line in err if line.startswith("classifier: ") and " steps in " in line)
    assert "/" in done and "steps/s" in done and "loss" in done
    estimate = [line for line in err if line.startswith("classifier: ") and " left at " in line]
    assert len(estimate) == 1 and "images/s (measured on steps 1-1" in estimate[0]


def test_cheap_references_run_without_the_untrained_pass_and_a_shortfall_is_said(tmp_path, capsys):
    import json

    from lesseg.eval import format_headline

    scenes = tiny_scenes(tmp_path / "d")
    assert main(run_args(scenes, tmp_path, "eval.references=false")) == 0  # no untrained pass
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert set(metrics["references"]) == {"random_tags", "largest_class"}
    assert set(metrics["references"]["random_tags"]) == {"train", "val"}
    metrics["segmenter"]["miou"] = metrics["references"]["random_tags"]["val"]["miou"] - 0.05
    table = format_headline(metrics)
    assert "segmenter: mIoU" in table and "is BELOW the random_tags val reference" in table
