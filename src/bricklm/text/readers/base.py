"""What a reader is, and what it reads: one module per kind of source, picked by a file's name and first bytes.

    READER = Reader("wordpress", "WordPress export (WXR)", (".xml", ".wxr"), detect, read, export=True)
    READER.detect("export.xml", head)           # True when these first bytes are its kind
    for item in READER.read(entry, config):     # Documents and Skippeds, one at a time
        ...

An Entry is one file: on disk (FileEntry) or a member of a zip (archive.Member); either way
it has a name for reports, a file name to detect by, and ways to read its bytes. A reader
holds one document at a time (an export is streamed), and a file it recognised but cannot
read (damaged XML or JSON) is a UserError naming it: half an export is not read quietly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped, decode, display_path

HEAD_BYTES = 8192  # what detection sees of a file; also how far the binary check looks for a NUL byte


class Entry(Protocol):
    """One file to read: name is what reports show, filename its last part (what detection reads)."""

    name: str
    filename: str

    def open(self) -> BinaryIO: ...

    def read_bytes(self) -> bytes: ...

    def size(self) -> int: ...


@dataclass(frozen=True)
class FileEntry:
    """A file on disk."""

    path: Path

    @property
    def name(self) -> str:
        return display_path(self.path)

    @property
    def filename(self) -> str:
        return self.path.name

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def size(self) -> int:
        return os.stat(self.path).st_size


@dataclass(frozen=True)
class Reader:
    """One kind of source. detect(filename, head) says whether a file is this kind from its name and its
    first HEAD_BYTES; read(entry, config) yields its Documents and Skippeds. suffixes: the file names worth
    reading the first bytes of when a folder holds them. export: one file holds many documents (reported
    per export, with what was left out inside it). detect_zip(paths), for an export that is a whole zip
    (Substack's, Medium's): whether a zip whose members have these paths is one; read then gets the
    archive.Archive as its entry.
    named: detect needs the file's name alone (Notion's pages), so it may claim a .md file without reading it.
    viewers: names of files in the same zip that only display the export, ignored there."""

    kind: str
    label: str
    suffixes: tuple[str, ...]
    detect: Callable[[str, bytes], bool]
    read: Callable[[Entry, PrepareConfig], Iterator[Document | Skipped]]
    export: bool = False
    detect_zip: Callable[[list[str]], bool] | None = None
    named: bool = False
    viewers: tuple[str, ...] = ()  # files its platform's zip holds beside it to show it ("Your archive.html")


def suffix(filename: str) -> str:
    """ ".md" for "Post.MD": the lower-cased extension of a file name (a member's path works too)."""
    return PurePosixPath(filename).suffix.lower()


def read_text(entry: Entry) -> tuple[str, str | None] | Skipped:
    """The decoded text of a file and a note on its encoding, or why it can't be used (unreadable, binary)."""
    try:
        raw = entry.read_bytes()
    except OSError as e:
        return Skipped(entry.name, f"unreadable ({e.strerror or type(e).__name__})")
    is_utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
    if b"\x00" in raw[:HEAD_BYTES] and not is_utf16:
        return Skipped(entry.name, "binary (NUL byte in the first 8 KB)")
    text, encoding = decode(raw)
    return text, None if encoding in ("utf-8", "utf-16") else f"decoded as {encoding} (not valid UTF-8)"


def read_whole(entry: Entry, limit_mb: int, setting: str) -> bytes | Skipped:
    """All of a file that is read whole (a JSON export), at most limit_mb: counted as it is read, not taken from
    a size the file system or a zip's header states. Over the limit or unreadable, it is Skipped (saying so)."""
    limit = limit_mb * 2**20
    try:
        with entry.open() as f:
            data = f.read(limit + 1)
    except OSError as e:
        return Skipped(entry.name, f"unreadable ({e.strerror or type(e).__name__})")
    if len(data) > limit:
        return Skipped(entry.name, f"larger than --{setting.replace('_', '-')} {limit_mb} MB (raise it to read this)")
    return data


def left_out(entry: Entry, what: str, reason: str) -> Skipped:
    """An item inside an export that is not read: what names it ('"Draft idea"'), reason says why."""
    return Skipped(what, reason, within=entry.name)


def read_json(entry: Entry, cfg, what: str):
    """A whole-file JSON export parsed (read whole, up to cfg.json_max_mb), or the Skipped that says why not;
    JSON that doesn't parse is a UserError: "ENTRY: damaged WHAT, not valid JSON (...)"."""
    raw = read_whole(entry, cfg.json_max_mb, "json_max_mb")
    if isinstance(raw, Skipped):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise UserError(f"{entry.name}: damaged {what}, not valid JSON ({str(e).splitlines()[0]})") from None


def posts_folder_prefix(paths: list[str], marker: str) -> str | None:
    """The folder a platform's `marker` file is in ("" at the zip's top) when a posts/*.html is beside it, else None:
    how a zip that is one platform's export as a whole is recognised (Substack's posts.csv, Medium's README.html)."""
    for path in paths:
        if PurePosixPath(path).name == marker:
            prefix = path[: -len(marker)]
            if any(p.startswith(prefix + "posts/") and p.endswith(".html") for p in paths):
                return prefix
    return None
