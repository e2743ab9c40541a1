"""Gathering and cleaning documents: the first step of `bricklm prepare`.

    scan = scan_sources(["_posts", "notes.txt"])         # which files, which skipped
    for item in read_documents(scan.files, code="drop"):  # one file at a time
        ...                                               # a Document or a Skipped

    clean("---\\ntitle: x\\n---\\nHello [world](http://x)", "markdown")  # -> "Hello world"

What a cleaner keeps is what a reader of the rendered page would read:
front matter, Liquid, HTML markup, images and link targets go; link text,
the text inside tags and (with code="keep") code stay. Plain `.txt` files
are only normalised (line endings, NFC, trailing spaces, blank lines),
because `<`, `[` and `{{` in plain text are the writer's own characters.
"""

from __future__ import annotations

import errno
import html
import os
import re
import stat
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bricklm.errors import UserError

KINDS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html"}
CODE_MODES = ("drop", "keep")
BUILTINS = ("python-docs",)
BINARY_SNIFF_BYTES = 8192


# ---------------------------------------------------------------- cleaning

# Openers of blocks that are cut out before anything else is cleaned, so that
# the prose rules never touch code: fenced code, and Liquid's paired blocks.
_BLOCK_OPENER = re.compile(
    r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$"
    r"|\{%-?\s*(?P<tag>highlight|raw|comment)\b[^%]*?-?%\}",
    re.MULTILINE,
)
_LIQUID_CLOSER = {tag: re.compile(r"\{%-?\s*end" + tag + r"\s*-?%\}") for tag in ("highlight", "raw", "comment")}
_RAW_TAG = re.compile(r"\{%-?\s*(?:end)?raw\s*-?%\}")
# Patterns below stop at the next opener of their kind, so text full of
# unclosed openers ("{{ {{ {{ ...") is cleaned in linear time, not rescanned
# to the end from every opener.
# Liquid tags and outputs may wrap lines but never cross a blank line, so one
# stray "{{" cannot eat the rest of a post.
_NO_BLANK = r"(?:[^\n]|\n(?![ \t]*\n))"
_LIQUID = re.compile(r"\{%(?:(?!\{%)" + _NO_BLANK + r")*?%\}|\{\{(?:(?!\{\{)" + _NO_BLANK + r")*?\}\}")

_COMMENT_OPEN, _COMMENT_CLOSE = re.compile("<!--"), re.compile("-->")
_SCRIPT_STYLE_OPEN = re.compile(r"<(script|style)\b[^<>]*>", re.IGNORECASE)
_SCRIPT_STYLE_CLOSE = {tag: re.compile(rf"</{tag}\s*>", re.IGNORECASE) for tag in ("script", "style")}
_DECLARATION = re.compile(r"<![A-Za-z][^<>]*>|<\?[^<>]*\?>")
_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)(?:\s(?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*)?/?>")
_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt figcaption figure footer "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tr ul".split()
)
# Entities need their semicolon (as in CommonMark), so "a&para=1" stays as is.
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")

_LINK_TEXT = r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]"  # allows one level of nested brackets
_URL_PART = r"\((?:[^()\n]|\([^()\n]*\))*\)"  # allows one level of parentheses in URLs
_IMAGE = re.compile(r"!\[[^\[\]\n]*\](?:" + _URL_PART + r"|\[[^\]\n]*\])")
_INLINE_LINK = re.compile(_LINK_TEXT + _URL_PART)
_REF_LINK = re.compile(_LINK_TEXT + r"\[([^\[\]\n]*)\]")
_REF_DEF = re.compile(r"^[ ]{0,3}\[(?!\^)([^\]\n]+)\]:[ \t]*\S[^\n]*(?:\n|\Z)", re.MULTILINE)
_SHORTCUT_REF = re.compile(r"\[([^\[\]\n]+)\](?![(\[:])")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+)>")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(?:[^\n]|\n(?![ \t]*\n))+?(?<!`)\1(?!`)")


def clean(text: str, kind: str = "markdown", code: str = "drop") -> str:
    """Return the readable text of one document.

    kind is "markdown", "html" or "text" (see KINDS); code is "drop" or "keep"
    and decides what happens to fenced code and `{% highlight %}` blocks.
    """
    if code not in CODE_MODES:
        raise UserError(f"code must be one of {', '.join(CODE_MODES)}, not {code!r}")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if kind != "text":
        text = strip_front_matter(text)
        # Reference definitions apply to the whole document, wherever they stand.
        labels = {_ref_label(m.group(1)) for m in _REF_DEF.finditer(text)} if kind == "markdown" else set()
        parts = []
        for part_kind, part in _split_blocks(text, fences=kind == "markdown"):
            if part_kind == "prose":
                parts.append(_clean_prose(part, kind == "markdown", labels))
            elif part_kind == "raw":
                parts.append(part)
            elif part_kind == "code" and code == "keep":
                parts.append(_RAW_TAG.sub("", part))  # Liquid runs before Markdown, so readers never see these
        text = "".join(parts)
    return _tidy(unicodedata.normalize("NFC", text))


def strip_front_matter(text: str) -> str:
    """Remove YAML (---) or TOML (+++) front matter, only at the very start of the text.

    A `---` later in the body is a horizontal rule and is left alone; so is an
    opening fence that is never closed.
    """
    first, _, rest = text.partition("\n")
    fence = first.rstrip()
    if fence not in ("---", "+++"):
        return text
    closers = ("---", "...") if fence == "---" else ("+++",)
    pos = 0
    while pos <= len(rest):
        end = rest.find("\n", pos)
        line = rest[pos:] if end == -1 else rest[pos:end]
        if line.rstrip() in closers:
            return "" if end == -1 else rest[end + 1 :]
        if end == -1:
            break
        pos = end + 1
    return text


def _split_blocks(text: str, fences: bool) -> Iterator[tuple[str, str]]:
    """Yield ("prose" | "code" | "raw" | "comment", text) pieces that join back to the input.

    "code" is a fenced block (fence lines included) or a highlight block's
    content; "raw" is the content of {% raw %}, kept verbatim; "comment" is
    a {% comment %} block. An unclosed block runs to the end, as in Markdown.
    """
    pos = 0
    while True:
        m = _BLOCK_OPENER.search(text, pos)
        while m and m.group("fence") and not _is_fence(m, fences):
            m = _BLOCK_OPENER.search(text, m.end())
        if not m:
            yield "prose", text[pos:]
            return
        yield "prose", text[pos : m.start()]
        if m.group("fence"):
            fence = m.group("fence")
            closer = re.compile(rf"^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
            c = closer.search(text, m.end() + 1)
            end = c.end() if c else len(text)
            yield "code", text[m.start() : end]
        else:
            tag = m.group("tag")
            c = _LIQUID_CLOSER[tag].search(text, m.end())
            inner_end, end = (c.start(), c.end()) if c else (len(text), len(text))
            yield {"highlight": "code"}.get(tag, tag), text[m.end() : inner_end]
        pos = end


def _is_fence(m: re.Match, fences: bool) -> bool:
    # A backtick fence's info string can't contain a backtick (CommonMark), so "```a```" is inline code.
    return fences and not (m.group("fence")[0] == "`" and "`" in m.group("info"))


def _clean_prose(text: str, markdown: bool, labels: set[str]) -> str:
    text = _LIQUID.sub("", text)
    text = _cut(text, _COMMENT_OPEN, lambda m: _COMMENT_CLOSE)
    text = _cut(text, _SCRIPT_STYLE_OPEN, lambda m: _SCRIPT_STYLE_CLOSE[m.group(1).lower()])
    if markdown:
        text = _REF_DEF.sub("", text)
        text = _IMAGE.sub("", text)
        text = _INLINE_LINK.sub(r"\1", text)
        text = _REF_LINK.sub(r"\1", text)
        if labels:
            text = _SHORTCUT_REF.sub(lambda m: m.group(1) if _ref_label(m.group(1)) in labels else m.group(0), text)
        text = _AUTOLINK.sub(r"\1", text)
        # Inline code shows "<br>" and "&lt;" literally, so markup rules skip it.
        return _outside(_CODE_SPAN, text, _strip_markup)
    return _strip_markup(text)


def _cut(text: str, opener: re.Pattern, closer_for) -> str:
    """Remove each opener through the first match of closer_for(opener) after it; unclosed openers stay."""
    out, pos, start, unclosed = [], 0, 0, set()
    while m := opener.search(text, start):
        closer = closer_for(m)
        c = None if closer.pattern in unclosed else closer.search(text, m.end())
        if c is None:
            unclosed.add(closer.pattern)  # no closer after here means none after any later opener either
            start = m.end()
            continue
        out.append(text[pos : m.start()])
        pos = start = c.end()
    out.append(text[pos:])
    return "".join(out)


def _strip_markup(text: str) -> str:
    text = _DECLARATION.sub("", text)
    text = _TAG.sub(lambda m: "\n" if m.group(1).lower() in _BLOCK_TAGS else "", text)
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def _outside(pattern: re.Pattern, text: str, fn) -> str:
    """Apply fn to the stretches of text that pattern does not match."""
    out, pos = [], 0
    for m in pattern.finditer(text):
        out += [fn(text[pos : m.start()]), m.group(0)]
        pos = m.end()
    out.append(fn(text[pos:]))
    return "".join(out)


def _ref_label(label: str) -> str:
    return " ".join(label.split()).casefold()


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
    """One cleaned document. note says how it was read when that needs saying (a fallback encoding)."""

    name: str
    text: str
    note: str | None = None


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


def read_document(path: Path, code: str = "drop") -> Document | Skipped:
    """Read, decode and clean one file; any reason not to use it comes back as Skipped."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        return Skipped(display_path(path), f"unreadable ({_why(e)})")
    is_utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
    if b"\x00" in raw[:BINARY_SNIFF_BYTES] and not is_utf16:
        return Skipped(display_path(path), "binary (NUL byte in the first 8 KB)")
    text, encoding = decode(raw)
    note = None if encoding in ("utf-8", "utf-16") else f"decoded as {encoding} (not valid UTF-8)"
    return Document(display_path(path), clean(text, KINDS[path.suffix.lower()], code), note)


def read_documents(files: Iterable[Path], code: str = "drop") -> Iterator[Document | Skipped]:
    """read_document for each file, in order, one at a time."""
    for path in files:
        yield read_document(path, code)


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
