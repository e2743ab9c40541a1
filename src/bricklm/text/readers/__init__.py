"""One reader per kind of source, picked by a file's name and first bytes; base.py says what a reader is.

    reader = pick("export.xml", head)      # the Reader these first 8 KB are, or None
    for item in reader.read(entry, config): ...

    markup.py     .md, .markdown, .txt, .html, .htm files, one document each (Obsidian's Markdown too)
    wordpress.py  WordPress exports (WXR): published posts and pages
    feeds.py      Blogger exports and Atom or RSS feeds: each entry's content
    ghost.py      Ghost exports (JSON): published posts and pages
    substack.py   Substack exports (a zip: posts.csv and posts/*.html): published posts
    medium.py     Medium exports (a zip: README.html and posts/*.html): published posts
    notion.py     Notion's Markdown export: pages without the ids in their names, databases' CSVs skipped
    jupyter.py    Jupyter notebooks (.ipynb): markdown and code cells, never outputs
    twitter.py    Twitter/X archives (tweets.js): the owner's tweets, a thread one document
    telegram.py   Telegram Desktop exports (result.json): a document per chat
    chatgpt.py    ChatGPT exports (conversations.json): a document per conversation, its current branch
    whatsapp.py   WhatsApp chat exports (.txt): the chat as one document
    chats.py      what the chat readers share: messages, threads, "Name: message" documents

Adding a kind of source is one module: detect(filename, head), read(entry, config) and a READER,
listed in READERS (the first whose detect says yes reads the file). Zips are not a reader but a
kind of folder (bricklm.text.archive): the readers pick their members the same way.
"""

from __future__ import annotations

from bricklm.text.readers import (
    chatgpt,
    feeds,
    ghost,
    jupyter,
    markup,
    medium,
    notion,
    substack,
    telegram,
    twitter,
    whatsapp,
    wordpress,
)
from bricklm.text.readers.base import Reader

READERS: tuple[Reader, ...] = (
    wordpress.READER,
    feeds.BLOGGER_READER,
    feeds.READER,
    ghost.READER,
    substack.READER,
    medium.READER,
    jupyter.READER,
    twitter.READER,
    telegram.READER,
    chatgpt.READER,
    whatsapp.READER,
    notion.READER,
    markup.READER,
)
# The readers whose exports are chats, and how each turns one into messages (`finetune --me` reads them).
CHATS = {
    r.kind: m.messages for r, m in ((telegram.READER, telegram), (chatgpt.READER, chatgpt), (whatsapp.READER, whatsapp))
}
CHAT_KINDS = "a WhatsApp .txt, a Telegram result.json or a ChatGPT conversations.json"
MARKUP = markup.READER
KINDS = markup.KINDS  # file extensions read as writing without looking inside
ARCHIVE_SUFFIXES = (".zip",)
# Extensions worth a look inside when a folder holds them: an export is recognised by its content.
SNIFFED = frozenset(s for r in READERS if r is not MARKUP for s in r.suffixes) | set(ARCHIVE_SUFFIXES)


def pick(filename: str, head: bytes) -> Reader | None:
    """The reader for a file with this name whose first bytes are head, or None."""
    return next((r for r in READERS if r.detect(filename, head)), None)


def pick_named(filename: str) -> Reader:
    """The reader of a file of writing (.md, .html, .txt) by its name alone: a Notion page's, else MARKUP's."""
    return next((r for r in READERS if r.named and r.detect(filename, b"")), MARKUP)


def pick_zip(paths: list[str]) -> Reader | None:
    """The reader of an export that is a whole zip whose members have these paths (Substack's), or None."""
    return next((r for r in READERS if r.detect_zip is not None and r.detect_zip(paths)), None)


def described() -> str:
    """What bricklm reads, for messages: ".md, ... files, a WordPress export, ..., or a zip of these"."""
    others = [f"{'an' if r.label[0] in 'AEIOU' else 'a'} {r.label}" for r in READERS if r is not MARKUP]
    return f"{', '.join(KINDS)} files, {', '.join(others)}, or a zip of these"


def listed() -> str:
    """Every kind of source with its extensions, for `prepare --help`."""
    kinds = [f"{r.label}s ({', '.join(r.suffixes)})" for r in (MARKUP, *(r for r in READERS if r is not MARKUP))]
    return "; ".join(kinds) + "; zips of any of these (.zip, read in place)"
