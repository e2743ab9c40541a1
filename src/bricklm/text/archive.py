"""Zip archives read in place: a platform's export is read from the zip, never unpacked into the user's folders.

    archive = Archive(Path("vault.zip"), Limits.of(config))   # opened when first used; close() when done
                                                                # (an export that is a whole zip reads it as its entry)
    for member in archive.members():                            # its files, sorted; a damaged zip: ArchiveError
        member.head()                                           # the first 8 KB (to detect its kind)
        member.read_bytes()                                     # all of it, through the guard
    archive.close()

Every member is read through a guard that counts the bytes it inflates to, as they come:
past Limits.max_bytes, or past max_ratio times its compressed size (once past RATIO_FLOOR,
so a small, very repetitive note still reads), reading stops with a UserError naming the
archive and the member: a zip bomb. The size a zip's header states is never trusted.
A member whose path would leave the archive (`../x`, `/etc/x`, `C:\\x`) is refused the same
way although nothing is ever written out: a zip built to escape is not an export. Members
whose path has a hidden part (`.obsidian/`, `__MACOSX/`) are hidden, like hidden files.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import display_path
from bricklm.text.readers.base import HEAD_BYTES

RATIO_FLOOR = 1 << 20  # bytes a member may inflate to before its compression ratio is checked
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first bytes: a member, or the end of an empty archive
# What a damaged or unusual member raises from zipfile and zlib while it is read.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


class ArchiveError(Exception):
    """A file that is not a readable zip (its central directory is damaged or missing)."""


@dataclass(frozen=True)
class Limits:
    """How far one member may inflate: max_bytes in all, and max_ratio times its compressed size."""

    max_bytes: int = 1024 << 20
    max_ratio: int = 100

    @classmethod
    def of(cls, cfg: PrepareConfig) -> Limits:
        return cls(cfg.archive_max_member_mb << 20, cfg.archive_max_ratio)


DEFAULT_LIMITS = Limits()


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


class Archive:
    """One zip on disk. The zip is opened when first used and again after close(), so members found by one
    pass (the scan) can be read by a later one."""

    def __init__(self, path: Path, limits: Limits = DEFAULT_LIMITS):
        self.path, self.limits, self.name = path, limits, display_path(path)
        self._zip: zipfile.ZipFile | None = None

    def zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
                raise ArchiveError(str(e) or type(e).__name__) from None
        return self._zip

    @property
    def filename(self) -> str:
        return self.path.name

    def size(self) -> int:
        return os.stat(self.path).st_size

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def members(self) -> list[Member]:
        """Its files (not folders), sorted by path; a member whose path leaves the archive is a UserError."""
        found = []
        for info in self.zip().infolist():
            if info.is_dir():
                continue
            if escapes(info.filename):
                raise UserError(
                    f"{self.name}: member {info.filename!r} has a path that leaves the archive; "
                    "refusing the zip (nothing was unpacked)"
                )
            found.append(Member(self, info))
        return sorted(found, key=lambda m: m.parts)


def escapes(name: str) -> bool:
    """True if a member's path is absolute or climbs out ("../"), in either kind of slash."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or parts[0][1:2] == ":"


class Member:
    """A file inside an Archive, readable like a file on disk (a readers.base.Entry)."""

    def __init__(self, archive: Archive, info: zipfile.ZipInfo):
        self.archive, self.info = archive, info
        self.parts = tuple(info.filename.split("/"))
        self.name = f"{archive.name}:{info.filename}"
        self.filename = self.parts[-1]

    @property
    def hidden(self) -> bool:
        return any(part.startswith(".") or part == "__MACOSX" for part in self.parts)

    def size(self) -> int:
        return self.info.file_size  # what the header says: for progress bars only, never for limits

    def open(self) -> io.BufferedReader:
        try:
            raw = self.archive.zip().open(self.info)
        except READ_ERRORS as e:
            raise self._damaged(e) from None
        return io.BufferedReader(_Guard(self, raw))

    def read_bytes(self) -> bytes:
        with self.open() as f:
            return f.read()

    def head(self) -> bytes:
        with self.open() as f:
            return f.read(HEAD_BYTES)

    def _damaged(self, e: BaseException) -> UserError:
        if isinstance(e, RuntimeError) and "encrypted" in str(e):
            return UserError(f"{self.name}: the member is encrypted; bricklm reads zips without a password")
        if isinstance(e, UserError):
            return e
        return UserError(f"{self.name}: damaged zip member ({e or type(e).__name__})")


class _Guard(io.RawIOBase):
    """A member's inflated bytes, counted as they are read; past the limits it raises instead of reading on."""

    def __init__(self, member: Member, raw):
        self.member, self.raw, self.count = member, raw, 0
        limits = member.archive.limits
        self.max_bytes, self.max_ratio = limits.max_bytes, limits.max_ratio
        self.compressed = max(member.info.compress_size, 1)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self.raw.read(len(buffer))
        except READ_ERRORS as e:
            raise self.member._damaged(e) from None
        self.count += len(data)
        if self.count > self.max_bytes:
            self._refuse(f"it inflates past {self.max_bytes >> 20} MB (--archive-max-member-mb)")
        if self.count > RATIO_FLOOR and self.count > self.max_ratio * self.compressed:
            self._refuse(f"it inflates past {self.max_ratio} times its compressed size (--archive-max-ratio)")
        buffer[: len(data)] = data
        return len(data)

    def _refuse(self, why: str) -> None:
        raise UserError(f"{self.member.name}: refusing the zip: {why}; a zip bomb? nothing was unpacked")

    def close(self) -> None:
        self.raw.close()
        super().close()
