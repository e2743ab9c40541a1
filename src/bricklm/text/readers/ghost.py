"""Ghost exports (Settings → Advanced → Import/Export → Export content): published posts and pages.

    for item in READER.read(FileEntry(Path("my-site.ghost.2024-01-15-10-00-00.json")), PrepareConfig()):
        ...   # a Document per published post or page, a Skipped (within the export) per one left out

A Ghost export is one JSON file: {"db": [{"meta": {"exported_on": ..., "version": "5.75.0"},
"data": {"posts": [...], "tags": [...], ...}}]} (some exports leave out the "db" wrapper). A
post has a title, a slug, a type ("post" or "page"; before Ghost 2, page 0 or 1), a status
("published"; "sent", a newsletter sent by email; "draft"; "scheduled") and its body in the
forms Ghost has used over the years, read in this order: html (what the page shows), lexical
(Ghost 5's editor), mobiledoc (Ghost 1-4), markdown (Ghost 0.x). lexical and mobiledoc are
walked into HTML: text, headings, quotes and lists kept; cards kept for their text (html,
markdown, callout, toggle) or as code (codeblock, with code = "keep"); images, galleries,
embeds, bookmarks and the other cards dropped. Then the HTML path cleans it.

Read: published and sent posts and pages; drafts and scheduled posts with include_drafts.
The export is read whole (json), up to json_max_mb; JSON that does not parse is a UserError.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterator

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped, clean_document, one_line, titled
from bricklm.text.markdown_text import CODE, markdown_text
from bricklm.text.readers.base import Entry, Reader, left_out, read_json, suffix

PUBLISHED = ("published", "sent")
DRAFTS = {"draft": "draft", "scheduled": "scheduled"}
CARDS_DROPPED = "Ghost cards dropped (images, embeds, bookmarks, ...)"
_BLOCKS = {"paragraph": "p", "quote": "blockquote", "extended-quote": "blockquote", "aside": "aside", "listitem": "li"}
_SECTION_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "aside", "pull-quote", "ul", "ol"}


def detect(filename: str, head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return suffix(filename) == ".json" and start.startswith(b"{") and b'"exported_on"' in head


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    export = read_json(entry, cfg, "Ghost export")
    if isinstance(export, Skipped):
        yield export
        return
    posts = _posts(export)
    if posts is None:
        raise UserError(f"{entry.name}: not a Ghost export (no data.posts list)")
    for n, post in enumerate(posts, 1):
        try:
            yield from _post(entry, n, post, cfg)
        except RecursionError:
            raise UserError(f"{entry.name}: damaged Ghost export: post {n}'s body nests too deep") from None


def _posts(export) -> list | None:
    db = export.get("db") if isinstance(export, dict) else None
    export = db[0] if isinstance(db, list) and db and isinstance(db[0], dict) else export
    data = export.get("data") if isinstance(export, dict) else None
    posts = data.get("posts") if isinstance(data, dict) else None
    return posts if isinstance(posts, list) else None


def _left_out_reason(post: dict, cfg: PrepareConfig) -> str | None:
    kind = post.get("type") or ("page" if post.get("page") in (1, True) else "post")
    status = post.get("status")
    if kind not in ("post", "page"):
        return f"type {kind}"
    if status in PUBLISHED or (cfg.include_drafts and status in DRAFTS):
        return None
    if status in DRAFTS:
        return f"{DRAFTS[status]} (--include-drafts reads it)"
    return f"status {status or '(none)'}"


def _post(entry: Entry, n: int, post, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    if not isinstance(post, dict):
        yield left_out(entry, f"item {n}", "not a post")
        return
    options = {"code": cfg.code, "images": cfg.images, "tables": cfg.tables}
    title = one_line(_text(post.get("title")))
    label = f'"{title}"' if title else _text(post.get("slug")) or f"post {n}"
    reason = _left_out_reason(post, cfg)
    if reason:
        yield left_out(entry, label, reason)
        return
    counts: Counter = Counter()
    body, kind = _body(post, cfg, counts)
    cleaned = clean_document(body, kind, templated=False, **options)
    counts.update(cleaned.counts)
    name = f"{entry.name}#{_text(post.get('slug')) or n}"
    yield Document(name, titled(cleaned.text, title, cfg.titles), None, +counts, len(body), within=entry.name)


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _body(post: dict, cfg: PrepareConfig, counts: Counter) -> tuple[str, str]:
    """(the post's body, "html" or "markdown" or "text"): the first of its forms that holds anything."""
    if _text(post.get("html")).strip():
        return post["html"], "html"
    for form, walk in (("lexical", _lexical), ("mobiledoc", _mobiledoc)):
        source = _text(post.get(form))
        if source.strip():
            try:
                doc = json.loads(source)
            except ValueError:
                continue  # a form Ghost left half written: the next form may hold the post
            return walk(doc, cfg, counts), "html"
    if _text(post.get("markdown")).strip():
        return post["markdown"], "markdown"
    return _text(post.get("plaintext")), "text"


# ---------------------------------------------------------------- Ghost's editors' documents to HTML


def _card(name: str, payload, cfg: PrepareConfig, counts: Counter) -> str:
    """A card (Ghost's block of a kind) as HTML: the ones that hold writing, or nothing."""
    payload = payload if isinstance(payload, dict) else {}
    if name in ("html", "card-html"):
        return _text(payload.get("html"))
    if name in ("markdown", "card-markdown"):
        prose = markdown_text(_text(payload.get("markdown")), counts, code=cfg.code, images=cfg.images)
        return f"<div>{html.escape(prose, quote=False)}</div>"
    if name == "callout":
        return f"<div>{_text(payload.get('calloutText'))}</div>"
    if name == "toggle":
        return f"<div>{_text(payload.get('heading'))}</div><div>{_text(payload.get('content'))}</div>"
    if name in ("code", "codeblock"):
        counts[CODE[cfg.code]] += 1
        code = html.escape(_text(payload.get("code")), quote=False)
        return f"<pre>{code}</pre>" if cfg.code == "keep" else ""
    if name in ("hr", "horizontalrule"):
        return "<hr>"
    counts[CARDS_DROPPED] += 1
    return ""


def _lexical(doc, cfg: PrepareConfig, counts: Counter) -> str:
    out: list[str] = []
    root = doc.get("root") if isinstance(doc, dict) else None
    _lexical_node(root if isinstance(root, dict) else {}, out, cfg, counts)
    return "".join(out)


def _lexical_node(node: dict, out: list[str], cfg: PrepareConfig, counts: Counter) -> None:
    kind = _text(node.get("type"))
    children = [c for c in node.get("children") or [] if isinstance(c, dict)]
    if kind in ("text", "extended-text", "tab"):
        out.append(html.escape(_text(node.get("text")) or "\t" * (kind == "tab"), quote=False))
        return
    if kind == "linebreak":
        out.append("<br>")
        return
    if kind in ("heading", "extended-heading"):
        tag = _text(node.get("tag"))
        tag = tag if tag in ("h1", "h2", "h3", "h4", "h5", "h6") else "h2"
    elif kind == "list":
        tag = "ol" if node.get("listType") == "number" else "ul"
    elif kind in _BLOCKS:
        tag = _BLOCKS[kind]
    elif kind in ("root", "link", "") or children:
        tag = None  # a container: only its children have text
    else:
        out.append(_card(kind, node, cfg, counts))
        return
    out.append(f"<{tag}>" if tag else "")
    for child in children:
        _lexical_node(child, out, cfg, counts)
    out.append(f"</{tag}>" if tag else "")


def _mobiledoc(doc, cfg: PrepareConfig, counts: Counter) -> str:
    doc = doc if isinstance(doc, dict) else {}
    atoms, cards = doc.get("atoms") or [], doc.get("cards") or []
    out = []
    for section in doc.get("sections") or []:
        if not isinstance(section, list) or not section:
            continue
        kind = section[0]
        if kind == 1 and len(section) > 2:  # a markup section: [1, tag, markers]
            tag = section[1] if section[1] in _SECTION_TAGS else "p"
            out.append(f"<{tag}>{_markers(section[2], atoms)}</{tag}>")
        elif kind == 3 and len(section) > 2 and isinstance(section[2], list):  # a list: [3, tag, [markers...]]
            tag = "ol" if section[1] == "ol" else "ul"
            out.append(f"<{tag}>" + "".join(f"<li>{_markers(i, atoms)}</li>" for i in section[2]) + f"</{tag}>")
        elif kind == 10 and len(section) > 1 and isinstance(section[1], int) and 0 <= section[1] < len(cards):
            card = cards[section[1]]
            if isinstance(card, list) and card and isinstance(card[0], str):
                out.append(_card(card[0], card[1] if len(card) > 1 else {}, cfg, counts))
        elif kind == 2:  # an image section
            counts[CARDS_DROPPED] += 1
    return "".join(out)


def _markers(markers, atoms: list) -> str:
    """The text of a mobiledoc section's markers: [0, opened, closed, text] or [1, opened, closed, atom index]."""
    parts = []
    for marker in markers if isinstance(markers, list) else []:
        if not isinstance(marker, list) or len(marker) < 4:
            continue
        value = marker[3]
        if marker[0] == 1 and isinstance(value, int) and 0 <= value < len(atoms) and isinstance(atoms[value], list):
            value = atoms[value][1] if len(atoms[value]) > 1 else ""
        parts.append(html.escape(_text(value), quote=False))
    return "".join(parts)


READER = Reader("ghost", "Ghost export", (".json",), detect, read, export=True)
