"""Notion's Markdown export (Settings → Export all workspace content, or a page's ⋯ → Export → Markdown & CSV).

    for item in READER.read(FileEntry(Path("My Page 0123456789abcdef0123456789abcdef.md")), PrepareConfig()):
        ...   # one Document: the page's text, without the 32-hex ids Notion writes into names

Notion exports a zip (or, unzipped, a folder) of pages: `My Page <id>.md`, each page's
sub-pages and images in a folder `My Page <id>/`, and each database as `Tasks <id>.csv`
(newer exports add `Tasks <id>_all.csv`) beside a folder of its rows, one page each. The id
is 32 hex digits Notion puts after every name. A page is picked by its file name alone (a
Markdown file whose name ends in an id), so its bytes are read once, by this reader.

Read: each page's Markdown (the Markdown path, without front matter or Liquid: Notion writes
neither), less the heading it opens with, which is its title (--titles keep); a page that
opens otherwise is titled by its file name less the id. The ids Notion writes into link text
("[Plans 0123...](Plans%200123....md)" becomes "Plans") are removed from the prose, counted.
A database's CSV is skipped and counted: its rows are read from their pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from bricklm.config import PrepareConfig
from bricklm.text.documents import Document, Skipped, clean_document, normalise_lines, one_line, titled
from bricklm.text.markdown_text import opening_heading
from bricklm.text.readers.base import Entry, Reader, read_text, suffix

# A file or folder name Notion wrote: the page's title, a space, its id (then _all for a database's full CSV).
_NAMED = re.compile(r"(?P<title>.*) (?P<id>[0-9a-f]{32})(?:_all)?")
_ID_IN_TEXT = re.compile(r"(?<=\S) [0-9a-f]{32}\b")  # in prose (the Markdown already parsed): an id after a name
IDS = "Notion ids removed from link text"
DATABASE = "a Notion database (its rows are read from their pages)"


def title_of(filename: str) -> str | None:
    """ "My Page" for "My Page 0123456789abcdef0123456789abcdef.md", or None for a name Notion did not write."""
    match = _NAMED.fullmatch(PurePosixPath(filename).stem)
    return match["title"] if match else None


def detect(filename: str, head: bytes) -> bool:
    return suffix(filename) in (".md", ".csv") and title_of(filename) is not None


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    if suffix(entry.filename) == ".csv":
        yield Skipped(entry.name, DATABASE)
        return
    source = read_text(entry)
    if isinstance(source, Skipped):
        yield source
        return
    text, note = source
    heading, body = opening_heading(normalise_lines(text))
    cleaned = clean_document(body, "markdown", templated=False, code=cfg.code, images=cfg.images, tables=cfg.tables)
    prose, ids = _ID_IN_TEXT.subn("", cleaned.text)
    cleaned.counts[IDS] += ids
    title = one_line(_ID_IN_TEXT.sub("", heading or "")) or title_of(entry.filename)
    yield Document(entry.name, titled(prose, title, cfg.titles), note, +cleaned.counts, len(text))


READER = Reader("notion", "Notion export", (".md", ".csv"), detect, read, named=True)
