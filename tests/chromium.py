"""Headless Chromium for the report tests: find it, run it with a throwaway profile, never hang."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest


def find_chromium() -> str | None:
    """Debian's chromium (or $LESSEG_CHROMIUM; empty: pretend none), else None."""
    found = os.environ.get("LESSEG_CHROMIUM")
    if found is not None:
        return found if found and os.path.exists(found) else None
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def run_chromium(binary, tmp_path, *args, timeout=60):
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    profile.mkdir()
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the browser and its helper processes, which share its group
        proc.communicate()
        pytest.fail(f"chromium did not finish in {timeout} s")
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")
