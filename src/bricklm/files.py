"""Safe files: atomic writes, folders swapped in whole, a file's hash, the lock that gives one process a
directory, and the checks that turn an impossible output path into one line before anything is written.

    atomic_write_json(run / "summary.json", result)   # a temporary sibling, fsync, rename: all or nothing
    swap_in(temp_sibling(out), out)                    # a finished folder replaces the old one whole
    sha256_file(corpus / "corpus.txt")                 # streamed, any size
    with RunLock(run): ...                             # one training per run directory
    check_out_dir(path, "--out")                       # a UserError if path can't become a folder we write

A write that is cut short (a crash, kill -9, a full disk) leaves either the old file or folder or
the new one, never half of either. The lock is `flock` on `RUN/train.lock` (msvcrt.locking on
Windows): the kernel drops it when its process dies, however it dies, so a crashed run never leaves
its directory stuck. The file's content (pid, host, start time) is only for the error message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
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
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        # Name the file the caller asked for, not our temporary one (the CLI prints the name).
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """atomic_write_bytes of UTF-8 text; a lone surrogate (from a file name that isn't UTF-8) is written as \\udcXX."""
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def json_bytes(obj: Any) -> bytes:
    """The one JSON layout bricklm writes: indented, UTF-8, a final newline."""
    # A path whose name isn't UTF-8 holds lone surrogates: written as JSON \udcXX escapes, which read back as
    # the same string (strict UTF-8 would raise, and surrogateescape would write a file that isn't UTF-8).
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def temp_sibling(path: Path) -> Path:
    """The hidden name a file or folder is built under before it is renamed to `path`."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


# --- folders swapped in whole ----------------------------------------------------------------------


def swap_in(tmp: Path, final: Path) -> None:
    """Rename the finished folder `tmp` to `final`; an existing `final` is replaced whole.

    A folder can't be os.replace'd onto a non-empty one, and deleting the old one first would leave
    a moment with neither: so the old one is renamed aside (`.NAME.old-PID`), the new one renamed in,
    and only then the old one deleted. A crash between the two renames is undone by clean_swap.
    """
    if final.exists():
        aside = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        os.replace(tmp, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)


def clean_swap(final: Path, complete: Callable[[Path], bool]) -> list[str]:
    """Tidy what a killed temp_sibling/swap_in of `final` left beside it: remove half-built temp folders, and
    put back an old copy caught between the two renames (if it is `complete` and nothing took its place).

    Only call this while holding the lock that guards `final`: a live writer's temp folder looks the same.
    Returns what was done, e.g. ["removed .step-000000009.tmp-12345", "restored step-000000006"].
    """
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(tmp|old)-\d+")
    try:
        leftovers = sorted(p for p in final.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir())
    except FileNotFoundError:
        return []
    done = []
    for p in leftovers:
        if p.name.startswith(f".{final.name}.old-") and not final.exists() and complete(p):
            os.replace(p, final)
            done.append(f"restored {final.name}")
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    return done


def fsync_tree(folder: Path) -> None:
    """fsync every file directly in `folder`, then the folder: its contents survive a power cut before a swap."""
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


# --- output paths ----------------------------------------------------------------------------------


def check_out_dir(path: str | Path, flag: str = "--out") -> None:
    """Refuse, before anything is written, an output folder that can't be one: an existing file, a path
    through a file, or a place that isn't writable (a read-only file system, no permission). Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} must be a folder, but {path} is a file")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {path} cannot be created: {existing} is a file, not a folder")
    why = _not_writable(existing)
    if why:
        raise UserError(f"{flag} {path} cannot be written: {existing} is {why}")


def check_out_file(path: str | Path, flag: str) -> None:
    """Refuse, before any work, an output file that names a folder or sits in a place that can't be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    check_out_dir(path.parent, flag)


def make_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create an output folder (and its parents); any reason it can't be is a UserError naming the flag."""
    path = Path(path)
    check_out_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. /proc/x: the parent looks writable but takes no new folders
        raise UserError(f"{flag} {path} cannot be created: {exc.strerror or exc}") from None
    return path


def _not_writable(folder: Path) -> str | None:
    if os.access(folder, os.W_OK):
        return None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "on a read-only file system"
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        pass
    return "not writable (permission denied)"


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

    def __init__(self, run_dir: str | Path, name: str = LOCK_NAME, doing: str = "trained", subject=None):
        self.path = Path(run_dir) / name
        self.doing = doing  # for the message: "<subject> is already being <doing> by process ..."
        self.subject = subject or self.path.parent  # what the lock guards, when it lives beside it
        self.fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns a note about the crashed owner whose lock file was left behind, if any."""
        for _ in range(5):  # retry only if the file was deleted or replaced between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                owner = _describe(_read(fd))
                os.close(fd)
                raise UserError(
                    f"{self.subject} is already being {self.doing} by {owner}; two at once would overwrite "
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
