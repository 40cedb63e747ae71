"""An exclusive lock on a run folder: one run writes into a folder at a time.

Two runs on one folder would interleave their stages and leave the folder with one run's config and the
other's artifacts. ``lesseg run`` takes this lock before it writes anything and holds it to the end; a
second run on the same folder stops at once with :class:`RunFolderLocked`, naming the holder's pid.

The lock is an OS file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on ``<run>/.lock``, so the
operating system releases it when its process dies, even by ``kill -9``. The file also records who holds it
(pid, host, start time); a run that finds the file still filled in but unlocked takes over the stale lock of
the dead process and says so. A clean release empties the file.

Example:
    >>> import tempfile
    >>> with RunLock(tempfile.mkdtemp()) as lock:
    ...     lock.held
    True
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from lesseg.errors import LessegError

LOCK_NAME = ".lock"


class RunFolderLocked(LessegError):
    """Another process holds the run folder's lock."""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:  # Windows: the holder's byte lock also blocks reading it
        return {}
    try:
        holder = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "pid unknown"
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {holder.get('pid', '?')}{where}, since {holder.get('started', '?')}"


class RunLock:
    """The lock of run folder ``run_dir`` (created if missing); a context manager.

    Args:
        run_dir: the run folder.
        log: where the stale-lock message goes (``print`` by default).
    """

    def __init__(self, run_dir: str | os.PathLike, log: Callable[[str], None] = print):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.log = log
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunFolderLocked` naming the folder and the holder's pid."""
        if self.held:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            holder = _read_holder(fd)
            os.close(fd)
            raise RunFolderLocked(
                f"{self.run_dir} is in use by another lesseg run ({_describe(holder)}); wait for it to "
                "finish or give this run another name="
            )
        stale = _read_holder(fd)
        if stale:
            self.log(f"{self.run_dir}: taking over the stale lock of {_describe(stale)}, which no longer "
                     "holds it (killed?)")  # fmt: skip
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the file (a clean end: nothing stale for the next run) and unlock it."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def hold_run_folder(
    run_dir: str | os.PathLike, env=None, log: Callable[[str], None] = print
) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the ``with`` block; under torchrun rank 0 holds it for every process
    and all of them stop when it cannot. With the lock held, no other process writes in the folder, so the
    temporary files of killed writes found there are stale: they are removed first."""
    from lesseg.engine.distributed import all_gather_objects
    from lesseg.io import remove_stale_temp_files

    main = env is None or env.is_main
    lock, refused = RunLock(run_dir, log), None
    if main:
        try:
            lock.acquire()
        except RunFolderLocked as e:
            refused = str(e)
    if env is not None and env.distributed:
        refused = all_gather_objects(refused)[0]
    if refused:
        raise RunFolderLocked(refused)
    try:
        if main:
            stale = remove_stale_temp_files(run_dir)
            if stale:
                log(f"{run_dir}: removed {len(stale)} temporary file(s) left by a killed run")
        yield
    finally:
        lock.release()
