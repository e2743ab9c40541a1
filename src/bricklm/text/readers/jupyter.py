"""Jupyter notebooks (.ipynb): markdown cells as Markdown, code cells as code blocks, outputs never.

    for item in READER.read(FileEntry(Path("analysis.ipynb")), PrepareConfig(code="keep")):
        ...   # one Document (or a Skipped: unreadable, too large, an nbformat 3 notebook)

The documented nbformat 4 JSON is read with json (nbformat itself is not needed to run):
{"cells": [{"cell_type": "markdown" | "code" | "raw", "source": "..." or ["...", ...]}],
"metadata": {"language_info": {"name": "python"}}, "nbformat": 4}. Each cell is cleaned on
its own, so an unclosed fence in one cell cannot swallow the next: a markdown cell as Markdown
(no front matter or Liquid: a notebook is not a static site's file), a code cell as a fenced
block in the notebook's language (dropped unless code = "keep", as any code block), raw cells
and every output left out. The title is the heading the first markdown cell opens with:
dropped, like every source's title, unless titles = "keep" (then it is the first line).
A notebook is read whole, up to json_max_mb; JSON that does not parse is a UserError.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped, clean_document, titled
from bricklm.text.markdown_text import opening_heading
from bricklm.text.readers.base import Entry, Reader, read_json, suffix

RAW_CELLS = "raw notebook cells dropped"


def detect(filename: str, head: bytes) -> bool:
    return suffix(filename) == ".ipynb" and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    notebook = read_json(entry, cfg, "notebook")
    if isinstance(notebook, Skipped):
        yield notebook
        return
    if isinstance(notebook, dict) and "worksheets" in notebook:
        yield Skipped(entry.name, "notebook format 3 or older (open and save it in Jupyter to make it format 4)")
        return
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise UserError(f"{entry.name}: not a Jupyter notebook (no list of cells)")
    yield _document(entry, cells, _language(notebook), cfg)


def _document(entry: Entry, cells: list, language: str, cfg: PrepareConfig) -> Document:
    options = {"code": cfg.code, "images": cfg.images, "tables": cfg.tables}
    counts: Counter = Counter()
    parts, title, length = [], None, 0
    first_markdown = next((n for n, c in enumerate(cells, 1) if _kind(c) == "markdown"), None)
    for n, cell in enumerate(cells, 1):
        kind, source = _cell(entry, n, cell)
        length += len(source)
        if n == first_markdown:
            title, source = opening_heading(source)  # the heading the first markdown cell opens with: the title
        if kind == "code":
            source = _fenced(source, language)
        elif kind != "markdown":
            counts[RAW_CELLS] += 1
            continue
        cleaned = clean_document(source, "markdown", templated=False, **options)
        counts.update(cleaned.counts)
        parts.append(cleaned.text)
    body = "\n\n".join(part for part in parts if part)
    return Document(entry.name, titled(body, title, cfg.titles), None, +counts, length)


def _kind(cell) -> str | None:
    return cell.get("cell_type") if isinstance(cell, dict) else None


def _cell(entry: Entry, n: int, cell) -> tuple[str, str]:
    """(cell_type, source as one string); a cell that isn't one is a UserError naming it."""
    source = cell.get("source", "") if isinstance(cell, dict) else None
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        source = "".join(source)  # nbformat stores a cell's lines as a list, each ending "\n"
    if not isinstance(source, str) or not isinstance(_kind(cell), str):
        raise UserError(f"{entry.name}: damaged notebook: cell {n} has no cell_type or no text source")
    return cell["cell_type"], source


def _language(notebook: dict) -> str:
    """The notebook's language for its code fences ("python"), from its metadata."""
    meta = notebook.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    for key, field in (("language_info", "name"), ("kernelspec", "language")):
        value = meta.get(key, {}).get(field) if isinstance(meta.get(key), dict) else None
        if isinstance(value, str) and value.strip() and value.strip().isidentifier():
            return value.strip()
    return ""


def _fenced(code: str, language: str) -> str:
    """A code cell as a fenced block, its fence longer than any run of backticks inside it."""
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", code)), default=0) + 1)
    return f"{fence}{language}\n{code.rstrip(chr(10))}\n{fence}"


READER = Reader("jupyter", "Jupyter notebook", (".ipynb",), detect, read)
