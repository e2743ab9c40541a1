"""Documents: what every reader yields, and the one place where a document's text is cleaned.

    doc = Document("notes/a.md", "Hello world")                       # one cleaned document
    Skipped("notes/b.md", "binary (NUL byte in the first 8 KB)")       # found but not used, and why
    clean("---\\ntitle: x\\n---\\nHello [world](http://x)", "markdown")  # -> "Hello world"
    text, encoding = decode(raw)                                     # UTF-8 (or UTF-16), else cp1252, else latin-1
    titled("Body.", "My title", "keep")                              # -> "My title\\n\\nBody." (--titles keep)

What a cleaner keeps is what a reader of the rendered page would read
(bricklm.text.markup turns Markdown and HTML into that prose). Plain `.txt` files
are only normalised (line endings, NFC, trailing spaces, blank lines),
because `<`, `[` and `{{` in plain text are the writer's own characters.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bricklm.text.markup import Cleaned, check_options, to_prose


@dataclass
class Skipped:
    """A file (or, inside an export, an item) that was found but not used, and why.

    within: the export an item was left out of (a WordPress export's draft); None for a whole file."""

    path: str
    reason: str
    within: str | None = field(default=None, compare=False)


@dataclass
class Document:
    """One cleaned document. note says how it was read when that needs saying (a fallback encoding);
    markup counts what cleaning removed or converted, source_characters is its length before;
    within names the export it came from when one file holds many documents (a WordPress export)."""

    name: str
    text: str
    note: str | None = None
    markup: Counter = field(default_factory=Counter, compare=False)
    source_characters: int = field(default=0, compare=False)
    within: str | None = field(default=None, compare=False)


def clean(text: str, kind: str = "markdown", code: str = "drop", *, images="drop", tables="keep") -> str:
    """Return the readable text of one document.

    kind is "markdown", "html" or "text" (see corpus.KINDS); code ("drop" or "keep") decides what
    happens to code blocks, images ("drop" or "alt") to images, tables ("keep" or "drop")
    to tables. See bricklm.text.markup for what is removed and what is kept.
    """
    return clean_document(text, kind, code=code, images=images, tables=tables).text


def clean_document(text: str, kind: str = "markdown", *, templated: bool = True, **options) -> Cleaned:
    """clean(), with the counts of markup removed or converted (options: code, images, tables).

    templated: the text is a static site's file, so front matter and Liquid go first (markup.to_prose);
    False for text a platform stored (a WordPress post, a notebook cell), where `{{` is the writer's own.
    """
    check_options(**options)
    text = normalise_lines(text)
    cleaned = Cleaned(text) if kind == "text" else to_prose(text, kind, templated=templated, **options)
    cleaned.text = _tidy(unicodedata.normalize("NFC", cleaned.text))
    return cleaned


def normalise_lines(text: str) -> str:
    """text without a byte-order mark, its line endings "\\n"."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _tidy(text: str) -> str:
    """Strip trailing spaces, collapse runs of blank lines to one, trim blank lines at both ends."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def one_line(text: str) -> str:
    """A title as one line: whitespace runs (line breaks too) become one space, Unicode NFC."""
    return unicodedata.normalize("NFC", " ".join(text.split()))


def titled(text: str, title: str | None, titles: str) -> str:
    """text with its title on the first line when titles is "keep" (and there is a title); else text."""
    if titles != "keep" or not title:
        return text
    return f"{title}\n\n{text}" if text else title


def display_path(path: str | Path) -> str:
    """path as valid Unicode for reports and meta.json: bytes that aren't UTF-8 in a file name (which
    Python carries as lone surrogates, unprintable and unencodable) are shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
