"""Medium exports (Settings → Security and apps → Download your information): the zip's published posts.

    archive = Archive(Path("medium-export.zip"))
    for item in READER.read(archive, PrepareConfig()):
        ...   # a Document per published post, a Skipped (within the export) per draft

Medium's export is a zip: README.html, posts/ (one page per post, drafts named draft_...),
and profile/, bookmarks/, claps/, sessions/, ... (your account's data, never read). The zip
as a whole is the export: its reader is picked by README.html beside posts/.

Each post is a whole page: <article class="h-entry"> holding a <header> with the title
(h1.p-name), <section data-field="subtitle">, <section data-field="body" class="e-content">
and a <footer> with the "By ... on ..." byline (p-author, dt-published), the canonical link
and "Exported from Medium on ...". Only the body section is read, less the title Medium
repeats at its top (graf--title) and link cards to other stories (graf--mixtapeEmbed),
counted; then the HTML path. The title is h1.p-name's text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from bricklm.config import PrepareConfig
from bricklm.text.documents import Document, Skipped, clean_document, one_line, titled
from bricklm.text.html_prune import has_class, prune
from bricklm.text.readers.base import Reader, left_out, posts_folder_prefix, read_text

CHROME = "Medium chrome removed (repeated titles, story cards)"
DRAFT_PREFIX = "draft_"


def _prefix(paths: list[str]) -> str | None:
    return posts_folder_prefix(paths, "README.html")


def detect_zip(paths: list[str]) -> bool:
    return _prefix(paths) is not None


def detect(filename: str, head: bytes) -> bool:
    return False  # only a whole zip is a Medium export


def read(archive, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    """archive: the bricklm.text.archive.Archive that detect_zip picked (its members are read in place)."""
    members = {m.info.filename: m for m in archive.members() if not m.hidden}
    posts = (_prefix(list(members)) or "") + "posts/"
    for path, member in members.items():
        if path.startswith(posts) and path.endswith(".html") and "/" not in path[len(posts) :]:
            yield from _post(archive, member, cfg)


def _body(tag: str, attrs: dict) -> bool:
    return tag == "section" and attrs.get("data-field") == "body"


def _title(tag: str, attrs: dict) -> bool:
    return has_class(attrs, "p-name")


def _chrome(tag: str, attrs: dict) -> bool:
    return has_class(attrs, "graf--title", "graf--mixtapeEmbed")


def _post(archive, member, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    source = read_text(member)
    if isinstance(source, Skipped):
        yield left_out(archive, member.filename, source.reason)
        return
    options = {"code": cfg.code, "images": cfg.images, "tables": cfg.tables}
    title = one_line(clean_document(prune(source[0], keep=_title).html, "html", templated=False, **options).text)
    label = f'"{title}"' if title else member.filename
    if member.filename.startswith(DRAFT_PREFIX) and not cfg.include_drafts:
        yield left_out(archive, label, "draft (--include-drafts reads it)")
        return
    page = prune(source[0], keep=_body, drop=_chrome)
    cleaned = clean_document(page.html, "html", templated=False, **options)
    counts = Counter(cleaned.counts)
    counts[CHROME] += page.dropped
    text = titled(cleaned.text, title, cfg.titles)
    yield Document(member.name, text, source[1], +counts, len(source[0]), within=archive.name)


READER = Reader("medium", "Medium export", (".zip",), detect, read, export=True, detect_zip=detect_zip)
