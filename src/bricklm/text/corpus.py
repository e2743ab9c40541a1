"""Finding writing and reading it as documents: the first step of `bricklm prepare`.

    scan = scan_sources(["_posts", "export.xml", "vault.zip"])  # which files, which skipped or ignored
    for items in read_sources(scan, PrepareConfig()):           # one file at a time ...
        for item in items: ...                                  # ... a Document or a Skipped at a time

    clean("---\\ntitle: x\\n---\\nHello [world](http://x)", "markdown")  # -> "Hello world"
    print(explain("_posts/2020-01-01-hello.md"))         # one file before and after cleaning

A source is a file, a folder (read recursively) or a zip exactly as a platform exports it
(read in place, like a folder). Each file is read by the reader its name and first bytes pick
(bricklm.text.readers): Markdown, HTML and text files by their extension, exports by their
content. Hidden files and folders are ignored, and so are files of other extensions; a zip
met in a folder is opened when it holds something bricklm reads, else skipped and counted.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.archive import DEFAULT_LIMITS, Archive, ArchiveError, Limits, Member, is_zip
from bricklm.text.documents import Document, Skipped, clean, clean_document, decode, display_path, normalise_lines
from bricklm.text.readers import KINDS, MARKUP, SNIFFED, described, pick, pick_named, pick_zip
from bricklm.text.readers.base import HEAD_BYTES, FileEntry, Reader, read_text, suffix

# decode and the dataclasses live in documents.py; callers import them from here too
__all__ = ["BUILTINS", "Document", "Scan", "Skipped", "builtin_documents", "clean", "decode", "display_path"]
__all__ += ["explain", "read_document", "read_sources", "scan_sources"]
BUILTINS = ("python-docs",)


# ---------------------------------------------------------------- gathering


@dataclass
class Scan:
    """What scan_sources found: files to read (sorted; a zip's members as archive.Member), the reader of
    each, files skipped, counts of files ignored, and per zip opened, what it held."""

    files: list[Path | Member | Archive] = field(default_factory=list)
    readers: dict = field(default_factory=dict)  # file -> Reader
    skipped: list[Skipped] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  # reason -> count
    ignored_extensions: Counter = field(default_factory=Counter)  # ".jpg" -> count
    archives: list[dict] = field(default_factory=list)  # {"path", "files", "ignored"}


def scan_sources(
    sources: Iterable[str | Path], exclude: Iterable[str | Path] = (), limits: Limits = DEFAULT_LIMITS
) -> Scan:
    """Find the files to read under sources (files, folders recursively, zips), sorted by path.

    Hidden files and folders (".git") are ignored, and so are the folders in exclude (the output
    folder, so a re-run never reads its own corpus.txt). Directory symlinks are followed, each real
    folder once, so loops end. A source path that does not exist is a UserError; so is a file named
    as a source that looks like an export (.xml, .json, .zip, ...) but is none bricklm recognises.
    limits: how far a zip's member may inflate (archive.Limits).
    """
    scan = Scan()
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: set[str] = set()
    found: dict = {}

    def add(key, file, reader: Reader) -> None:
        if key not in found:
            found[key] = file
            scan.readers[file] = reader

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
        ext = path.suffix.lower()
        if ext not in KINDS and not (top or ext in SNIFFED):
            scan.ignored["extension"] += 1
            scan.ignored_extensions[ext or "(none)"] += 1
        elif not stat.S_ISREG(st.st_mode):
            scan.skipped.append(Skipped(display_path(path), "not a regular file"))  # a FIFO would block the read
        elif ext in KINDS and ext not in SNIFFED:
            add(os.path.abspath(path), path, pick_named(path.name))
        else:
            _look_inside(path, top, ext, limits, scan, add)

    for src in sources:
        path = Path(src)
        if not os.path.lexists(path):
            raise UserError(f"no such file or folder: {src}")
        visit(path, top=True)
    scan.files = sorted(found.values(), key=_sort_key)
    return scan


def _look_inside(path: Path, top: bool, ext: str, limits: Limits, scan: Scan, add) -> None:
    """A file whose kind its first bytes tell: an export, a zip, or (not top) a file of another extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        scan.skipped.append(Skipped(display_path(path), f"unreadable ({_why(e)})"))
        return
    if is_zip(head) or (top and ext == ".zip"):
        _scan_zip(Archive(path, limits), top, scan, add)
        return
    reader = pick(path.name, head)
    if reader is not None:
        add(os.path.abspath(path), path, reader)
    elif top and ext in SNIFFED:
        raise UserError(f"{display_path(path)}: not an export bricklm recognises; it reads {described()}")
    else:
        scan.ignored["extension"] += 1
        scan.ignored_extensions[ext or "(none)"] += 1


def _scan_zip(archive: Archive, top: bool, scan: Scan, add) -> None:
    """Add a zip's members that bricklm reads; a zip holding none is skipped (or, named as a source, read as
    empty). A damaged zip named as a source is a UserError; met in a folder, it is skipped."""
    try:
        members = archive.members()
        whole = pick_zip([m.info.filename for m in members if not m.hidden])
        if whole is not None:  # an export that is the whole zip (Substack's): its reader reads the members it needs
            add(os.path.abspath(archive.path), archive, whole)
            return
        ignored, extensions, picked = Counter(), Counter(), []
        for member in members:
            ext = suffix(member.filename)
            reader = None
            if member.hidden:
                ignored["hidden"] += 1
                continue
            if ext in SNIFFED and ext != ".zip":  # a zip inside a zip is not opened; a .txt may be a chat
                reader = pick(member.filename, member.head())
            elif ext in KINDS:
                reader = pick_named(member.filename)
            if reader is None:
                ignored["extension"] += 1
                extensions[ext or "(none)"] += 1
            else:
                picked.append((member, reader))
        viewers = {name for _, reader in picked for name in reader.viewers}
        if viewers:  # a platform's page for showing its export, beside it: not writing
            ignored["viewer"] += sum(m.filename in viewers for m, _ in picked)
            picked = [(m, r) for m, r in picked if m.filename not in viewers]
    except ArchiveError as e:
        if top:
            raise UserError(f"{archive.name}: not a readable zip ({e})") from None
        scan.skipped.append(Skipped(archive.name, f"not a readable zip ({e})"))
        return
    finally:
        archive.close()
    if not picked and not top:
        held = ", ".join(f"{ext} {n}" for ext, n in sorted(extensions.items())) or "nothing"
        scan.skipped.append(Skipped(archive.name, f"a zip of nothing bricklm reads ({held})"))
        return
    scan.ignored.update(ignored)
    scan.ignored_extensions.update(extensions)
    scan.archives.append({"path": archive.name, "files": len(picked), "ignored": sum(ignored.values())})
    real = os.path.abspath(archive.path)
    for i, (member, reader) in enumerate(picked):
        add((real, i), member, reader)


def _sort_key(file: Path | Member | Archive) -> tuple[str, ...]:
    # A zip's members sort where the zip would, each by its path inside; a Path sorts as Path's own ordering.
    if isinstance(file, Archive):
        return file.path.parts
    return file.archive.path.parts + file.parts if isinstance(file, Member) else file.parts


def _stat_failure(path: Path, e: OSError) -> str:
    if path.is_symlink():
        return "symlink loop" if e.errno == errno.ELOOP else "broken symlink"
    return f"unreadable ({_why(e)})"


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


# ---------------------------------------------------------------- reading


def read_sources(scan: Scan, cfg: PrepareConfig) -> Iterator[Iterator[Document | Skipped]]:
    """For each file the scan found, in order, an iterator over what its reader yields (one document for a
    post, many for an export). A zip stays open while its members are read."""
    archive = None
    try:
        for file in scan.files:
            inside = file.archive if isinstance(file, Member) else file if isinstance(file, Archive) else None
            if archive is not None and inside is not archive:
                archive.close()
            archive = inside
            yield scan.readers[file].read(file if inside else FileEntry(file), cfg)
    finally:
        if archive is not None:
            archive.close()


def read_document(path: Path, code: str = "drop", **options) -> Document | Skipped:
    """Read, decode and clean one Markdown, HTML or text file; any reason not to use it comes back as Skipped.

    options: images ("drop" or "alt"), tables ("keep" or "drop") and titles ("drop" or "keep"), as for prepare.
    """
    return next(MARKUP.read(FileEntry(Path(path)), PrepareConfig(code=code, **options)))


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
    source = read_text(FileEntry(path))
    if isinstance(source, Skipped):
        raise UserError(f"cannot explain {source.path}: {source.reason}")
    before = normalise_lines(source[0])
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
