"""Gathering and cleaning documents: the first step of `bricklm prepare`.

    scan = scan_sources(["_posts", "notes.txt"])         # which files, which skipped
    for item in read_documents(scan.files, code="drop"):  # one file at a time
        ...                                               # a Document or a Skipped

    clean("---\\ntitle: x\\n---\\nHello [world](http://x)", "markdown")  # -> "Hello world"
    print(explain("_posts/2020-01-01-hello.md"))         # one file before and after cleaning

What a cleaner keeps is what a reader of the rendered page would read
(bricklm.text.markup turns Markdown and HTML into that prose). Plain `.txt` files
are only normalised (line endings, NFC, trailing spaces, blank lines),
because `<`, `[` and `{{` in plain text are the writer's own characters.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bricklm.errors import UserError
from bricklm.text.markup import Cleaned, check_options, to_prose

KINDS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html"}
BUILTINS = ("python-docs",)
BINARY_SNIFF_BYTES = 8192


# ---------------------------------------------------------------- cleaning


def clean(text: str, kind: str = "markdown", code: str = "drop", *, images="drop", tables="keep") -> str:
    """Return the readable text of one document.

    kind is "markdown", "html" or "text" (see KINDS); code ("drop" or "keep") decides what
    happens to code blocks, images ("drop" or "alt") to images, tables ("keep" or "drop")
    to tables. See bricklm.text.markup for what is removed and what is kept.
    """
    return clean_document(text, kind, code=code, images=images, tables=tables).text


def clean_document(text: str, kind: str = "markdown", **options) -> Cleaned:
    """clean(), with the counts of markup removed or converted (options: code, images, tables)."""
    check_options(**options)
    text = _normalise_lines(text)
    cleaned = Cleaned(text) if kind == "text" else to_prose(text, kind, **options)
    cleaned.text = _tidy(unicodedata.normalize("NFC", cleaned.text))
    return cleaned


def _normalise_lines(text: str) -> str:
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _tidy(text: str) -> str:
    """Strip trailing spaces, collapse runs of blank lines to one, trim blank lines at both ends."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


# ---------------------------------------------------------------- gathering


@dataclass
class Skipped:
    """A file that was found but not used, and why."""

    path: str
    reason: str


@dataclass
class Document:
    """One cleaned document. note says how it was read when that needs saying (a fallback encoding);
    markup counts what cleaning removed or converted, source_characters is its length before."""

    name: str
    text: str
    note: str | None = None
    markup: Counter = field(default_factory=Counter, compare=False)
    source_characters: int = field(default=0, compare=False)


@dataclass
class Scan:
    """What scan_sources found: text files to read (sorted), files skipped, counts of files ignored."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  # reason -> count
    ignored_extensions: Counter = field(default_factory=Counter)  # ".jpg" -> count


def scan_sources(sources: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> Scan:
    """Find the text files under sources (files or folders, recursively), sorted by path.

    Hidden files and folders (".git") are ignored, and so are the folders in
    exclude (the output folder, so a re-run never reads its own corpus.txt).
    Directory symlinks are followed, each real folder once, so loops end.
    A source path that does not exist is a UserError.
    """
    scan = Scan()
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: set[str] = set()
    found: dict[str, Path] = {}

    def visit(path: Path, top: bool) -> None:
        if not top and path.name.startswith("."):
            scan.ignored["hidden"] += 1
            return
        try:
            st = path.stat()
        except OSError as e:
            scan.skipped.append(Skipped(display_path(path), _stat_failure(path, e)))
            return
        if stat.S_ISDIR(st.st_mode):
            real = os.path.realpath(path)
            if real in excluded:
                scan.ignored["output folder"] += 1
            elif real in seen_dirs:
                if path.is_symlink():
                    scan.skipped.append(Skipped(display_path(path), "symlink to a folder already read"))
            else:
                seen_dirs.add(real)
                try:
                    children = sorted(path.iterdir())
                except OSError as e:
                    scan.skipped.append(Skipped(display_path(path), f"folder unreadable ({_why(e)})"))
                    return
                for child in children:
                    visit(child, top=False)
            return
        suffix = path.suffix.lower()
        if suffix not in KINDS:
            scan.ignored["extension"] += 1
            scan.ignored_extensions[suffix or "(none)"] += 1
        elif not stat.S_ISREG(st.st_mode):
            scan.skipped.append(Skipped(display_path(path), "not a regular file"))  # a FIFO would block the read
        else:
            found.setdefault(os.path.abspath(path), path)

    for src in sources:
        path = Path(src)
        if not os.path.lexists(path):
            raise UserError(f"no such file or folder: {src}")
        visit(path, top=True)
    scan.files = sorted(found.values())
    return scan


def display_path(path: str | Path) -> str:
    """path as valid Unicode for reports and meta.json: bytes that aren't UTF-8 in a file name (which
    Python carries as lone surrogates, unprintable and unencodable) are shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _stat_failure(path: Path, e: OSError) -> str:
    if path.is_symlink():
        return "symlink loop" if e.errno == errno.ELOOP else "broken symlink"
    return f"unreadable ({_why(e)})"


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def decode(raw: bytes) -> tuple[str, str]:
    """Decode file bytes: UTF-8 (or UTF-16 with a BOM), else cp1252, else latin-1. Returns (text, encoding)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"  # every byte is a latin-1 character, so this cannot fail


def read_document(path: Path, code: str = "drop", **options) -> Document | Skipped:
    """Read, decode and clean one file; any reason not to use it comes back as Skipped.

    options: images ("drop" or "alt") and tables ("keep" or "drop"), as for clean().
    """
    source = _read_source(path)
    if isinstance(source, Skipped):
        return source
    text, note = source
    cleaned = clean_document(text, KINDS[path.suffix.lower()], code=code, **options)
    return Document(display_path(path), cleaned.text, note, cleaned.counts, len(text))


def _read_source(path: Path) -> tuple[str, str | None] | Skipped:
    """The decoded text of a file and a note on its encoding, or why it can't be used."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        return Skipped(display_path(path), f"unreadable ({_why(e)})")
    is_utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
    if b"\x00" in raw[:BINARY_SNIFF_BYTES] and not is_utf16:
        return Skipped(display_path(path), "binary (NUL byte in the first 8 KB)")
    text, encoding = decode(raw)
    return text, None if encoding in ("utf-8", "utf-16") else f"decoded as {encoding} (not valid UTF-8)"


def read_documents(files: Iterable[Path], code: str = "drop", **options) -> Iterator[Document | Skipped]:
    """read_document for each file, in order, one at a time."""
    for path in files:
        yield read_document(path, code, **options)


def explain(path: str | Path, code: str = "drop", **options) -> str:
    """One file before and after cleaning, and what was removed or converted, as text to print.

    options: images and tables, as for clean(). A path that is not a readable text file is a UserError.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {display_path(path)}")
    if path.is_dir():
        raise UserError(f"--explain shows one file, and {display_path(path)} is a folder")
    if not path.is_file():
        raise UserError(f"{display_path(path)} is not a regular file")  # reading a FIFO would block
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"--explain reads {', '.join(KINDS)} files, not {display_path(path)}")
    source = _read_source(path)
    if isinstance(source, Skipped):
        raise UserError(f"cannot explain {source.path}: {source.reason}")
    before = _normalise_lines(source[0])
    cleaned = clean_document(before, kind, code=code, **options)
    removed = 1 - len(cleaned.text) / len(before) if before else 0
    lines = [f"=== {display_path(path)}: before cleaning ({len(before):,} characters, {kind})", before]
    lines += [f"=== after cleaning ({len(cleaned.text):,} characters, {removed:.0%} removed)", cleaned.text]
    lines.append("=== markup removed or converted")
    lines += [f"  {what}: {n:,}" for what, n in cleaned.counts.most_common()] or ["  none"]
    return "\n".join(lines)


def builtin_documents(name: str) -> Iterator[Document]:
    """The documents of a built-in corpus. "python-docs": CPython's pydoc topics, one per topic, by name."""
    if name != "python-docs":
        raise UserError(f"unknown built-in corpus {name!r}; choose from: {', '.join(BUILTINS)}")
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise UserError("the python-docs corpus needs pydoc_data, which this Python installation lacks") from None
    for topic in sorted(topics):
        yield Document(f"python-docs:{topic}", clean(topics[topic], "text"))
