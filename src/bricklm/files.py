"""Safe files: atomic writes, a file's hash, and the lock that gives one process a directory.

    atomic_write_json(run / "summary.json", result)   # a temporary sibling, fsync, rename: all or nothing
    sha256_file(corpus / "corpus.txt")                 # streamed, any size
    with DirLock(run): ...                             # one training per run directory

A write that is cut short (a crash, kill -9, a full disk) leaves either the old file or the new
one, never half of either. The lock is `flock` on `RUN/train.lock` (msvcrt.locking on Windows):
the kernel drops it when its process dies, however it dies, so a crashed run never leaves its
directory stuck. The file's content (pid, host, start time) is only for the error message.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from bricklm.errors import UserError

LOCK_NAME = "train.lock"


# --- atomic writes ---------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, os.replace, fsync the folder: all or nothing."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def json_bytes(obj: Any) -> bytes:
    """The one JSON layout bricklm writes: indented, UTF-8, a final newline."""
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --- one process per directory -------------------------------------------------------------------

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
    """An exclusive lock on a directory, held from acquire() until release() or process exit."""

    def __init__(self, run_dir: str | Path, name: str = LOCK_NAME, doing: str = "trained"):
        self.path = Path(run_dir) / name
        self.doing = doing  # for the message: "already being <doing> by process ..."
        self.fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns a note about the crashed owner whose lock file was left behind, if any."""
        for _ in range(5):  # retry only if the file was deleted or replaced between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                owner = _describe(_read(fd))
                os.close(fd)
                raise UserError(
                    f"{self.path.parent} is already being {self.doing} by {owner}; two at once would overwrite "
                    f"each other's files, so wait for it or stop it (lock: {self.path})"
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
