"""One training per run directory: a lock file that the operating system releases when its process dies.

    lock = RunLock("runs/blog")
    lock.acquire()          # UserError naming the other process if it is held
    ...                     # train
    lock.release()

RUN/train.lock holds the owner's pid, host and start time, for the error message only. The
lock itself is fcntl.flock (msvcrt.locking on Windows) on that file. The kernel drops it when
the process exits, however it exits, so a run that crashed or was kill -9'd never leaves the
directory stuck: the next training finds the file unlocked and takes it over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from bricklm.errors import UserError

LOCK_NAME = "train.lock"

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True


class RunLock:
    """An exclusive lock on a run directory, held from acquire() until release() or process exit."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns a note about the crashed owner whose lock file was left behind, if any."""
        for _ in range(5):  # retry only if the file was deleted or replaced between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                owner = _describe(_read(fd))
                os.close(fd)
                raise UserError(
                    f"{self.path.parent} is already being trained by {owner}; two trainings would overwrite "
                    f"each other's checkpoints, so wait for it or stop it (lock: {self.path})"
                )
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise UserError(f"could not lock {self.path}: it keeps being replaced by another process")
        left = _read(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self.fd = fd
        if left:
            return f"took over the lock left by {_describe(left)}, which is no longer running"
        return None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()  # while still locked, so no one locks a file that is about to vanish
        except OSError:
            pass  # Windows can't delete an open file; the stale file is harmless (it is unlocked)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        info = json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return {}  # unreadable or half-written: still evidence of an owner
    return info if isinstance(info, dict) else {}


def _describe(info: dict | None) -> str:
    if not info or "pid" not in info:
        return "another process"
    return f"process {info['pid']} on {info.get('host', '?')} (started {info.get('started', '?')})"
