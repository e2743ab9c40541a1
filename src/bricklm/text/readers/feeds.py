"""Blogger exports and any Atom or RSS feed file: each entry's content, one document per post or page.

    for item in BLOGGER.read(FileEntry(Path("blog-01-15-2024.xml")), PrepareConfig()):
        ...   # a Document per published post or page, a Skipped (within the export) per entry left out

A Blogger export (Settings → Manage blog → Back up content) is an Atom 1.0 feed holding
every post, page, comment, the template and the settings, each an <entry>. Its kind is a
<category scheme="http://schemas.google.com/g/2005#kind" term="...kind#post"> (#page,
#comment, #template, #settings), a draft carries <app:control><app:draft>yes</app:draft>;
Blogger's newer exports say <blogger:type>POST</blogger:type> and
<blogger:status>LIVE</blogger:status> (DRAFT, SCHEDULED, ...) instead. Any other Atom
feed's entries, and an RSS 2.0 feed's items, are posts.

Read: posts and pages; drafts with include_drafts; comments, as documents of their own, with
comments. Left out and counted: drafts, comments, the template and settings entries, other
kinds. An entry's <content> (type html, xhtml or text; else its <summary>; an RSS item's
content:encoded, else its description) goes through the HTML path. The feed is parsed by
defusedxml (no DTD, no entities) and streamed: one entry at a time is in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from xml.etree.ElementTree import Element, tostring

from defusedxml.ElementTree import iterparse

from bricklm.config import PrepareConfig
from bricklm.text.documents import Document, Skipped, clean_document, one_line, titled
from bricklm.text.readers.base import Entry, Reader, left_out
from bricklm.text.readers.xmlfile import read_xml

ATOM = "http://www.w3.org/2005/Atom"
APP = ("http://purl.org/atom/app#", "http://www.w3.org/2007/app")  # Blogger's (APP draft 1) and RFC 5023's
BLOGGER = "http://schemas.google.com/blogger/"  # then 2008/kind#post, or 2018 for the newer exports' fields
KIND_SCHEME = "http://schemas.google.com/g/2005#kind"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
READ_KINDS = ("post", "page")
OTHER_KINDS = {"template": "blog template", "settings": "blog setting", "comment": "reader comment"}
DRAFT_STATUSES = {"draft": "draft", "scheduled": "scheduled"}
COMMENT_LEFT_OUT = "reader comment (--comments reads it)"


def _xml_start(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"<?xml", b"<feed", b"<rss", b"<!--"))


def detect_blogger(filename: str, head: bytes) -> bool:
    return _xml_start(head) and b"<feed" in head and (BLOGGER.encode() in head or b"www.blogger.com" in head)


def detect_feed(filename: str, head: bytes) -> bool:
    return _xml_start(head) and ((b"<feed" in head and ATOM.encode() in head) or b"<rss" in head)


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    yield from read_xml(entry, cfg, _entries, kind="a feed", cut="the file may be cut short: get it again")


def _entries(entry: Entry, source, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    """Each <entry> of an Atom <feed>, each <item> of an RSS <channel>, read when it ends, then cleared."""
    stack: list[Element] = []
    n = 0
    for event, elem in iterparse(source, events=("start", "end"), forbid_dtd=True):
        if event == "start":
            stack.append(elem)
            continue
        stack.pop()
        parent = stack[-1] if stack else None
        if parent is None or _local(parent.tag) not in ((ATOM, "feed"), ("", "channel")):
            continue
        if _local(elem.tag) in ((ATOM, "entry"), ("", "item")):
            n += 1
            yield from _entry(entry, n, _fields(elem), cfg)
        parent.clear()  # the entry (or feed-level field) just read: memory holds one at a time


def _local(tag: str) -> tuple[str, str]:
    """("http://www.w3.org/2005/Atom", "entry") for "{http://www.w3.org/2005/Atom}entry"; ("", "item")."""
    if not tag.startswith("{"):
        return "", tag
    namespace, _, name = tag[1:].partition("}")
    return namespace, name


def _fields(item: Element) -> dict:
    """An entry's title, body (HTML), kind ("post", "comment", ...), draft (bool) and status."""
    fields: dict = {"kind": "post", "draft": False, "status": ""}
    for child in item:
        ns, name = _local(child.tag)
        if name == "title" and ns in (ATOM, ""):
            fields["title"] = child.text or ""
        elif (ns, name) in ((ATOM, "content"), (CONTENT, "encoded")):
            fields["body"] = _html(child, "text" if ns == ATOM else "html")
        elif (ns, name) in ((ATOM, "summary"), ("", "description")):
            fields.setdefault("summary", _html(child, "text" if ns == ATOM else "html"))
        elif (ns, name) == (ATOM, "category") and child.get("scheme") == KIND_SCHEME:
            fields["kind"] = (child.get("term") or "").rpartition("#")[2]
        elif ns in APP and name == "control":
            fields["draft"] = any(_local(c.tag)[1] == "draft" and (c.text or "").strip() == "yes" for c in child)
        elif ns.startswith(BLOGGER) and name in ("type", "status"):
            fields["kind" if name == "type" else "status"] = (child.text or "").strip().lower()
    fields.setdefault("body", fields.get("summary", ""))
    return fields


def _html(elem: Element, default: str) -> str:
    """An Atom text construct (or an RSS field, HTML by default) as HTML: html as written, xhtml its markup, text
    escaped."""
    kind = elem.get("type", default)
    if kind == "xhtml":
        for node in elem.iter():
            node.tag = _local(node.tag)[1]  # the XHTML namespace off, so the HTML path knows the tags
        return "".join(tostring(child, encoding="unicode", method="html") for child in elem)
    text = elem.text or ""
    if kind in ("text", "plain", "text/plain"):
        return text.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "<br>")
    return text


def _left_out_reason(item: dict, cfg: PrepareConfig) -> str | None:
    kind, status = item["kind"], item["status"]
    if status not in ("", "live", *DRAFT_STATUSES):
        return f"status {status}"  # deleted, trashed, spam: gone from the blog
    if kind == "comment":
        return None if cfg.comments else COMMENT_LEFT_OUT
    if kind not in READ_KINDS:
        return OTHER_KINDS.get(kind, f"kind {kind or '(none)'}")
    draft = "draft" if item["draft"] else DRAFT_STATUSES.get(status)
    if draft and not cfg.include_drafts:
        return f"{draft} (--include-drafts reads it)"
    return None


def _entry(entry: Entry, n: int, item: dict, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    options = {"code": cfg.code, "images": cfg.images, "tables": cfg.tables}
    title = one_line(clean_document(item.get("title", ""), "html", templated=False, **options).text)
    label = f'"{title}"' if title else f"entry {n}"
    reason = _left_out_reason(item, cfg)
    if reason:
        yield left_out(entry, label, reason)
        return
    counts: Counter = Counter()
    cleaned = clean_document(item["body"], "html", templated=False, **options)
    counts.update(cleaned.counts)
    title = None if item["kind"] == "comment" else title
    yield Document(
        f"{entry.name}#{n}",
        titled(cleaned.text, title, cfg.titles),
        None,
        +counts,
        len(item["body"]),
        within=entry.name,
    )


BLOGGER_READER = Reader("blogger", "Blogger export", (".xml", ".atom"), detect_blogger, read, export=True)
READER = Reader("feed", "Atom or RSS feed", (".xml", ".atom", ".rss"), detect_feed, read, export=True)
