"""The engine: exact resume after SIGKILL, DDP equals one process, schedules, errors."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lesseg.config import load_config
from lesseg.data.synth import generate
from lesseg.engine.optim import build_optimizer, build_scheduler
from lesseg.engine.sampler import ResumableSampler

SCRIPT = Path(__file__).parent / "engine_script.py"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, images=40, classes=5, seed=1, size=40, val_fraction=0.2)
    return out


def run_script(run_dir, data_dir, *overrides, sleep=0.0, torchrun=0, wait=True, dropout=0.0):
    cmd = [sys.executable, str(SCRIPT)]
    if torchrun:
        cmd = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={torchrun}", str(SCRIPT)]
    cmd += [str(run_dir), str(data_dir), "--sleep", str(sleep), "--dropout", str(dropout), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def weights(run_dir, rank=0):
    return torch.load(Path(run_dir) / f"final_rank{rank}.pt", weights_only=True)


def logged_steps(run_dir):
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [r["step"] for r in lines if "loss" in r]


COMMON = ("data.batch_size=4", "train.epochs=2", "train.checkpoint_every=2", "optim.schedule=poly")


def test_sigkill_mid_epoch_then_rerun_equals_uninterrupted(tmp_path, synth_dir):
    run_script(tmp_path / "straight", synth_dir, *COMMON, dropout=0.2)
    killed = tmp_path / "killed"
    proc = run_script(killed, synth_dir, *COMMON, sleep=0.15, wait=False, dropout=0.2)
    deadline = time.time() + 120
    while time.time() < deadline and max(logged_steps(killed), default=0) < 5:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps_at_kill = max(logged_steps(killed), default=0)
    assert 5 <= steps_at_kill < 16, "the kill must land mid-run (8 steps per epoch, 2 epochs)"
    assert not (killed / "final_rank0.pt").exists()
    run_script(killed, synth_dir, *COMMON, dropout=0.2)  # the same command again
    log = (killed / "log.jsonl").read_text()
    assert '"event": "resumed"' in log
    assert logged_steps(killed) == list(range(1, 17))  # no step lost or repeated in the log
    a, b = weights(tmp_path / "straight"), weights(killed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("schedule, continues", [("poly", False), ("constant", True)])
def test_more_epochs_continue_only_where_the_schedule_allows(tmp_path, synth_dir, schedule, continues):
    """Raising train.epochs continues a finished run under a schedule that ignores the total, and starts
    over under poly (whose decay to 0 depends on it); either way it ends as a longer run from the start."""
    args = ("data.batch_size=4", f"optim.schedule={schedule}")
    run_script(tmp_path / "straight", synth_dir, *args, "train.epochs=2")
    run_script(tmp_path / "longer", synth_dir, *args, "train.epochs=1")
    run_script(tmp_path / "longer", synth_dir, *args, "train.epochs=2")
    assert ('"event": "resumed"' in (tmp_path / "longer" / "log.jsonl").read_text()) == continues
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "longer")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_two_gloo_processes_equal_one_process(tmp_path, synth_dir):
    args = ("data.batch_size=4", "train.epochs=1", "optim.name=sgd", "optim.momentum=0.9")
    run_script(tmp_path / "one", synth_dir, *args)
    run_script(tmp_path / "two", synth_dir, *args, torchrun=2)
    one, r0, r1 = weights(tmp_path / "one"), weights(tmp_path / "two", 0), weights(tmp_path / "two", 1)
    for k in one:
        assert torch.equal(r0[k], r1[k]), f"ranks differ at {k}"
        rel = (r0[k] - one[k]).norm() / one[k].norm().clamp_min(1e-12)
        assert rel < 1e-5, f"{k}: relative difference {rel:.2e}"


def test_sampler_global_batches_do_not_depend_on_process_count():
    one = list(ResumableSampler(20, 4, seed=3))
    ranks = [list(ResumableSampler(20, 2, rank=r, world_size=2, seed=3)) for r in range(2)]
    for b in range(5):
        assert set(one[4 * b : 4 * b + 4]) == set(ranks[0][2 * b : 2 * b + 2] + ranks[1][2 * b : 2 * b + 2])
    s = ResumableSampler(20, 4, seed=3)
    s.set_epoch(0, start_batch=2)
    assert list(s) == one[8:] and len(s) == 12


def lrs(overrides, steps=12, steps_per_epoch=4):
    cfg = load_config(None, overrides)
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(cfg.optim, {"backbone_weight": [model.weight], "new_bias": [model.bias]})
    sched = build_scheduler(cfg.optim, opt, steps, steps_per_epoch)
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out, opt


def test_poly_schedule_with_group_multipliers():
    out, opt = lrs(["optim.name=sgd", "optim.lr=0.1", "optim.schedule=poly", "optim.poly_power=0.9"])
    for step, (w, b) in enumerate(out):
        assert w == pytest.approx(0.1 * (1 - step / 12) ** 0.9)
        assert b == pytest.approx(20 * w)  # new biases x20
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]  # no decay on biases


def test_multistep_schedule_mcis():
    out, opt = lrs(["optim.name=sgd", "optim.nesterov=true", "optim.lr=1e-3", "optim.schedule=multistep",
                    "optim.milestones=[1,2]", "optim.gamma=0.1"])  # fmt: skip
    w = [r[0] for r in out]
    assert w[:4] == pytest.approx([1e-3] * 4) and w[4:8] == pytest.approx([1e-4] * 4)
    assert w[8:] == pytest.approx([1e-5] * 4)
    assert opt.defaults["nesterov"] is True


def test_adam_constant_and_adamw():
    out, opt = lrs(["optim.name=adam", "optim.lr=1e-4", "optim.schedule=constant", "optim.weight_decay=0",
                    "optim.lr_mult={backbone_weight: 1, new_bias: 1}"])  # fmt: skip
    assert all(r == pytest.approx([1e-4, 1e-4]) for r in out) and isinstance(opt, torch.optim.Adam)
    _, opt = lrs(["optim.name=adamw", "optim.lr=1e-4", "optim.schedule=poly"])
    assert isinstance(opt, torch.optim.AdamW)


def test_corrupt_image_stops_with_its_name_or_is_skipped(tmp_path, synth_dir):
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    bad = data / "images" / f"{(data / 'train.txt').read_text().split()[0]}.png"
    bad.write_bytes(bad.read_bytes()[:200])
    cmd = [
        sys.executable,
        str(SCRIPT),
        str(tmp_path / "run"),
        str(data),
        "train.epochs=1",
        "data.batch_size=4",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and f"{bad}: cannot read image" in done.stderr
    run_script(tmp_path / "run_skip", data, "train.epochs=1", "data.batch_size=4", "data.skip_bad=true")
    events = [json.loads(ln) for ln in (tmp_path / "run_skip" / "log.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e.get("event") == "skipped"]
    assert len(skipped) == 1 and str(bad) in skipped[0]["files"][0]


def test_epoch_hooks_in_order_and_again_after_resume(tmp_path, synth_dir):
    from engine_script import TinyGN
    from lesseg.data import read_dataset
    from lesseg.data import transforms as T
    from lesseg.data.dataset import SegDataset
    from lesseg.engine import Trainer

    source = read_dataset(synth_dir)
    dataset = SegDataset(source, "train", transform=T.Compose([T.RandomCrop(32), T.Normalize()]))
    calls = []

    def step(model, batch, ctx):
        calls.append(("step", ctx.epoch))
        return {"loss": torch.nn.functional.multilabel_soft_margin_loss(model(batch["image"]), batch["tags"])}

    def fit(epochs):
        # a constant schedule: more epochs continue the run (under poly they would start over)
        cfg = load_config(None, ["data.workers=0", "data.batch_size=16", f"train.epochs={epochs}",
                                 "optim.schedule=constant"])  # fmt: skip
        model = TinyGN(source.classes.num_classes)
        Trainer(cfg, model, step, dataset, tmp_path, epoch_start=lambda m, e: calls.append(("start", e)),
                epoch_end=lambda m, e: calls.append(("end", e))).fit()  # fmt: skip

    fit(1)
    assert calls == [("start", 0), ("step", 0), ("step", 0), ("end", 0)]  # 32 images, batches of 16
    calls.clear()
    fit(2)  # resumes after epoch 0: only epoch 1 runs, with its own hooks
    assert calls == [("start", 1), ("step", 1), ("step", 1), ("end", 1)]


def test_loader_workers_fork_even_where_the_default_is_spawn():
    """Our datasets and steps hold closures: a DataLoader inside a spawned process (a benchmark's process
    pool; the default start method from Python 3.14 too) must still fork its workers, or it fails to
    pickle them."""
    import multiprocessing

    from lesseg.engine.trainer import loader_context

    assert loader_context(0) is None
    expected = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    assert loader_context(2) == expected


def test_persistent_workers_see_each_epoch_s_augmentation(tmp_path, synth_dir):
    """Workers kept across epochs (persistent_workers) still draw each epoch's augmentation: two epochs with
    2 persistent workers end with the weights of the same run without workers."""
    from engine_script import TinyGN
    from lesseg.data import read_dataset
    from lesseg.data import transforms as T
    from lesseg.data.dataset import SegDataset
    from lesseg.engine import Trainer

    source = read_dataset(synth_dir)
    seen = []

    def step(model, batch, ctx):
        seen.append((ctx.epoch, float(batch["image"].sum())))
        return {"loss": torch.nn.functional.multilabel_soft_margin_loss(model(batch["image"]), batch["tags"])}

    def fit(workers):
        seen.clear()
        dataset = SegDataset(source, "train", transform=T.Compose([T.RandomResizedCrop(32), T.Normalize()]))
        cfg = load_config(None, [f"data.workers={workers}", "data.batch_size=16", "train.epochs=2"])
        torch.manual_seed(0)
        trainer = Trainer(cfg, TinyGN(source.classes.num_classes), step, dataset, tmp_path / f"w{workers}")
        model = trainer.fit()
        assert trainer._persistent == (workers > 0)
        return model.state_dict(), list(seen)

    (a, seen0), (b, seen2) = fit(0), fit(2)
    assert seen0 == seen2 and seen0[0][1] != seen0[2][1]  # the same batches, and epochs 0 and 1 differ
    assert all(torch.equal(a[k], b[k]) for k in a)
