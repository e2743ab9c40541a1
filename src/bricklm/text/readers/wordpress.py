"""WordPress exports (WXR, from Tools → Export → All content): published posts and pages, one document each.

    for item in READER.read(FileEntry(Path("export.xml")), PrepareConfig(comments=True)):
        ...   # a Document per published post or page, a Skipped (within the export) per item left out

WXR is RSS 2.0 with WordPress's namespaces (wp: http://wordpress.org/export/1.2/, content:
http://purl.org/rss/1.0/modules/content/). It is parsed by defusedxml, which refuses a DTD,
entity declarations and external references (where an entity-expansion bomb would hide),
and streamed: each <item> is read when it ends, then cleared, so memory holds one post.

Read: items whose wp:post_type is post or page and whose wp:status is publish (with
include_drafts, also draft, pending, future and private). Everything else is left out and
counted by reason: drafts, scheduled, pending and private posts, trash, revisions,
attachments, menu items, other post types. A post's content:encoded has its shortcodes
resolved (bricklm.text.shortcodes), then goes through the HTML path, where block-editor
comments (<!-- wp:paragraph -->) and <!--more--> go like any HTML comment. Its <title> is
the title (first line with titles = "keep"). With comments, the approved reader comments
(not pingbacks or trackbacks) follow their post's text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import iterparse

from bricklm.config import PrepareConfig
from bricklm.text.documents import Document, Skipped, clean_document, one_line, titled
from bricklm.text.readers.base import Entry, Reader, left_out
from bricklm.text.readers.xmlfile import read_xml
from bricklm.text.shortcodes import expand_shortcodes

WP_NAMESPACE = "http://wordpress.org/export/"  # then the WXR version: 1.0/, 1.1/, 1.2/
CONTENT_NAMESPACE = "http://purl.org/rss/1.0/modules/content/"
POST_TYPES = ("post", "page")
DRAFT_STATUSES = {"draft": "draft", "pending": "pending review", "future": "scheduled", "private": "private"}
OTHER_STATUSES = {"trash": "trash", "auto-draft": "auto-draft", "inherit": "revision"}
OTHER_TYPES = {"revision": "revision", "attachment": "attachment", "nav_menu_item": "menu item"}
COMMENTS_KEPT = "reader comments kept after their post"
ITEM_DEPTH = 3  # <rss> 1, <channel> 2, <item> 3


def detect(filename: str, head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return start.startswith((b"<?xml", b"<rss", b"<!--")) and b"<rss" in head and WP_NAMESPACE.encode() in head


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    yield from read_xml(
        entry, cfg, _items, kind="a WordPress export", cut="the export may be cut short: export it again"
    )


def _items(entry: Entry, source, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    depth, channel = 0, None
    for event, elem in iterparse(source, events=("start", "end"), forbid_dtd=True):
        if event == "start":
            depth += 1
            channel = elem if depth == ITEM_DEPTH - 1 else channel
            continue
        depth -= 1
        if depth == ITEM_DEPTH - 1 and channel is not None:
            if _local(elem.tag) == ("", "item"):
                yield from _item(entry, _fields(elem), cfg)
            channel.clear()  # the item (or author, term, ...) just read: memory holds one at a time


def _local(tag: str) -> tuple[str, str]:
    """("wp", "status") for "{http://wordpress.org/export/1.2/}status"; ("", "title") for "title"."""
    if not tag.startswith("{"):
        return "", tag
    namespace, _, name = tag[1:].partition("}")
    if namespace == CONTENT_NAMESPACE:
        return "content", name
    if namespace.startswith(WP_NAMESPACE) and "/excerpt/" not in namespace:
        return "wp", name
    return namespace, name


def _fields(item: Element) -> dict:
    """An item's fields: title, content, status, post_type, post_name, post_id, and its comments (dicts)."""
    fields: dict = {"comments": []}
    for child in item:
        ns, name = _local(child.tag)
        if (ns, name) == ("", "title"):
            fields["title"] = child.text or ""
        elif (ns, name) == ("content", "encoded"):
            fields["content"] = child.text or ""
        elif ns == "wp" and name == "comment":
            fields["comments"].append({_local(c.tag)[1]: c.text or "" for c in child})
        elif ns == "wp":
            fields[name] = (child.text or "").strip()
    return fields


def _left_out_reason(item: dict, cfg: PrepareConfig) -> str | None:
    """Why an item is not read, or None to read it."""
    kind, status = item.get("post_type", ""), item.get("status", "")
    if kind not in POST_TYPES:
        return OTHER_TYPES.get(kind, f"post type {kind or '(none)'}")
    if status == "publish" or (cfg.include_drafts and status in DRAFT_STATUSES):
        return None
    if status in DRAFT_STATUSES:
        return f"{DRAFT_STATUSES[status]} (--include-drafts reads it)"
    return OTHER_STATUSES.get(status, f"status {status or '(none)'}")


def _item(entry: Entry, item: dict, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    options = {"code": cfg.code, "images": cfg.images, "tables": cfg.tables}
    title = one_line(clean_document(item.get("title", ""), "html", templated=False, **options).text)
    label = f'"{title}"' if title else item.get("post_name") or f"item {item.get('post_id', '?')}"
    reason = _left_out_reason(item, cfg)
    if reason:
        yield left_out(entry, label, reason)
        return
    counts: Counter = Counter()
    content = item.get("content", "")
    html = expand_shortcodes(content, counts, cfg.code)
    cleaned = clean_document(html, "html", templated=False, **options)
    counts.update(cleaned.counts)
    parts = [cleaned.text]
    for n, comment in enumerate(item["comments"], 1):
        why = _comment_left_out(comment, cfg)
        if why:
            yield left_out(entry, f"comment {n} on {label}", why)
            continue
        text = clean_document(comment.get("comment_content", ""), "html", templated=False, **options).text
        counts[COMMENTS_KEPT] += bool(text)
        parts.append(text)
    body = "\n\n".join(part for part in parts if part)
    name = f"{entry.name}#{item.get('post_name') or item.get('post_id', '?')}"
    yield Document(name, titled(body, title, cfg.titles), None, +counts, len(content), within=entry.name)


def _comment_left_out(comment: dict, cfg: PrepareConfig) -> str | None:
    kind = comment.get("comment_type", "").strip() or "comment"
    if kind != "comment":
        return kind  # pingback, trackback: another site's words about the post
    approved = comment.get("comment_approved", "").strip()
    if approved != "1":
        return {"spam": "spam comment", "trash": "trashed comment"}.get(approved, "unapproved comment")
    return None if cfg.comments else "reader comment (--comments reads it)"


READER = Reader("wordpress", "WordPress export", (".xml", ".wxr"), detect, read, export=True)
