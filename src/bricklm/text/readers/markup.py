"""Files of writing: Markdown (.md, .markdown), HTML (.html, .htm) and plain text (.txt), one document each.

    for item in READER.read(FileEntry(Path("_posts/2020-01-01-hello.md")), PrepareConfig()):
        ...   # one Document, or a Skipped (binary, unreadable)

These are named by their extension, as a static site names them: their content is just text.
Front matter and Liquid go, then Markdown or HTML becomes prose (bricklm.text.markup); Obsidian's
syntax is part of the Markdown parser. `.txt` is only normalised. With titles = "keep", the
front matter's `title:` becomes the first line.
"""

from __future__ import annotations

from collections.abc import Iterator

from bricklm.config import PrepareConfig
from bricklm.text.documents import Document, Skipped, clean_document, normalise_lines, one_line, titled
from bricklm.text.markup import front_matter_title
from bricklm.text.readers.base import Entry, Reader, read_text, suffix

KINDS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html"}


def detect(filename: str, head: bytes) -> bool:
    return suffix(filename) in KINDS


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    source = read_text(entry)
    if isinstance(source, Skipped):
        yield source
        return
    text, note = source
    kind = KINDS[suffix(entry.filename)]
    cleaned = clean_document(text, kind, code=cfg.code, images=cfg.images, tables=cfg.tables)
    title = front_matter_title(normalise_lines(text)) if cfg.titles == "keep" and kind != "text" else None
    body = titled(cleaned.text, one_line(title) if title else None, cfg.titles)
    yield Document(entry.name, body, note, cleaned.counts, len(text))


READER = Reader("files", "Markdown, HTML or text file", tuple(KINDS), detect, read)
