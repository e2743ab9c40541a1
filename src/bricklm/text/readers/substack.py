"""Substack exports (Settings → Exports → New export): the zip's published posts, one document each.

    archive = Archive(Path("export-2024-01-15.zip"))
    for item in READER.read(archive, PrepareConfig()):
        ...   # a Document per published post, a Skipped (within the export) per post left out

Substack's export is a zip: posts.csv (one row per post: post_id, post_date, is_published,
email_sent_at, inbox_sent_at, type, audience, title, subtitle, podcast_url), posts/ holding
each post's body as <post_id>.<slug>.html (and its email statistics as .opens.csv and
.delivers.csv, which hold subscribers' addresses and are never read), and the subscriber
lists. The zip as a whole is the export: its reader is picked by the members' paths.

Read: the posts posts.csv says are published (is_published true); the others with
include_drafts. A post's HTML goes through the HTML path less Substack's chrome: subscribe
boxes and buttons, share dialogs, the image's expand button, embedded posts, tweets and
videos (someone else's words), each counted. The title is posts.csv's.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped, clean_document, one_line, titled
from bricklm.text.html_prune import has_class, prune
from bricklm.text.readers.base import Reader, left_out, posts_folder_prefix, read_text

POSTS_CSV = "posts.csv"
COLUMNS = ("post_id", "is_published")
CHROME = "Substack chrome removed (subscribe boxes, buttons, embeds, ...)"
CHROME_CLASSES = (
    "subscription-widget-wrap",
    "subscription-widget-wrap-editor",
    "subscription-widget",
    "subscribe-widget",
    "button-wrapper",
    "captioned-button-wrap",
    "share-dialog",
    "image-link-expand",
    "restack-image",
    "embedded-post-wrap",
    "digest-post-embed",
    "install-substack-app-embed",
    "youtube-wrap",
    "tweet",
    "poll-embed",
    "paywall-jump",
)


def _prefix(paths: list[str]) -> str | None:
    return posts_folder_prefix(paths, POSTS_CSV)


def detect_zip(paths: list[str]) -> bool:
    return _prefix(paths) is not None


def detect(filename: str, head: bytes) -> bool:
    return False  # only a whole zip is a Substack export


def read(archive, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    """archive: the bricklm.text.archive.Archive that detect_zip picked (its members are read in place)."""
    members = {m.info.filename: m for m in archive.members() if not m.hidden}
    prefix = _prefix(list(members)) or ""
    rows = _rows(members[prefix + POSTS_CSV])
    for path, member in members.items():
        if path.startswith(prefix + "posts/") and path.endswith(".html"):
            yield from _post(archive, member, rows, cfg)


def _rows(member) -> dict[str, dict]:
    """posts.csv's rows by post_id ("139921185" or, as newer exports write it, "139921185.my-first-post")."""
    try:
        with io.TextIOWrapper(member.open(), encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{member.name}: not a Substack export's posts.csv (no {' or '.join(missing)} column)")
            return {(row.get("post_id") or "").strip(): row for row in reader}
    except (csv.Error, UnicodeDecodeError) as e:
        raise UserError(f"{member.name}: damaged posts.csv ({e})") from None


def _row(rows: dict[str, dict], filename: str) -> dict | None:
    stem = filename.removesuffix(".html")
    return rows.get(stem) or rows.get(stem.partition(".")[0])


def _chrome(tag: str, attrs: dict) -> bool:
    return has_class(attrs, *CHROME_CLASSES)


def _post(archive, member, rows: dict, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    row = _row(rows, member.filename)
    if row is None:
        yield left_out(archive, member.filename, "not listed in posts.csv")
        return
    title = one_line(row.get("title") or "")
    label = f'"{title}"' if title else member.filename
    if (row.get("is_published") or "").strip().lower() != "true" and not cfg.include_drafts:
        yield left_out(archive, label, "draft (--include-drafts reads it)")
        return
    source = read_text(member)
    if isinstance(source, Skipped):
        yield left_out(archive, label, source.reason)
        return
    page = prune(source[0], drop=_chrome)
    cleaned = clean_document(page.html, "html", templated=False, code=cfg.code, images=cfg.images, tables=cfg.tables)
    counts = Counter(cleaned.counts)
    counts[CHROME] += page.dropped
    text = titled(cleaned.text, title, cfg.titles)
    yield Document(member.name, text, source[1], +counts, len(source[0]), within=archive.name)


READER = Reader("substack", "Substack export", (".zip",), detect, read, export=True, detect_zip=detect_zip)
