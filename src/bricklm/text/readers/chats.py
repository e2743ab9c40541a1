"""What the chat readers share: a chat export as messages, and those messages as documents for `prepare`.

    export = whatsapp.messages(entry, config)      # a ChatExport: threads of Messages, what was dropped, notes
    for item in documents(entry, export): ...      # one Document per thread: "Name: message" lines

A chat reader (whatsapp.py, telegram.py, chatgpt.py) turns its platform's export into a ChatExport;
`prepare` reads each thread as one document, and `finetune --me` (bricklm.finetune.voice) turns the
same threads into conversations. System lines (the encryption notice, "<Media omitted>", deleted
messages, joins and leaves) are dropped and counted by kind in `dropped`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from bricklm.text.documents import Document, Skipped, normalise_lines, one_line
from bricklm.text.readers.base import Entry

SYSTEM = "system lines dropped (encryption notices, media, deleted messages, joins and leaves)"


@dataclass(frozen=True)
class Message:
    """One message: who sent it, its text (lines kept), and when (None where the export does not say)."""

    sender: str
    text: str
    time: datetime | None = None


@dataclass
class Thread:
    """One conversation of an export: a WhatsApp chat, a Telegram chat, a ChatGPT conversation."""

    title: str
    messages: list[Message] = field(default_factory=list)


@dataclass
class ChatExport:
    """A chat export as read: its threads, the system lines dropped by kind, notes for the report (how dates were
    read), and whose messages are the owner's by default (ChatGPT: the user; None: ask for --me)."""

    label: str
    threads: list[Thread] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    default_me: str | None = None

    def senders(self) -> Counter:
        """Messages per sender, over every thread."""
        return Counter(m.sender for t in self.threads for m in t.messages)


def message_text(text: str) -> str:
    """A message's text with its line endings normalised and the blank edges trimmed."""
    return normalise_lines(text).strip()


def documents(entry: Entry, export: ChatExport) -> Iterator[Document]:
    """One document per thread with messages: a "Name: message" line each (a message's later lines follow it)."""
    note = "; ".join(export.notes) or None
    markup = Counter({SYSTEM: sum(export.dropped.values())}) if export.dropped else Counter()
    for n, thread in enumerate(export.threads, 1):
        if not thread.messages:
            continue
        text = "\n".join(f"{one_line(m.sender)}: {m.text}" for m in thread.messages)
        name = f"{entry.name}#{one_line(thread.title) or n}" if len(export.threads) > 1 else entry.name
        yield Document(name, text, note, markup, len(text), within=entry.name)
        note, markup = None, Counter()  # said once per export


def read_chats(entry: Entry, cfg, messages) -> Iterator[Document | Skipped]:
    """A chat reader's read(): its export's conversations as documents (or what it skipped)."""
    export = messages(entry, cfg)
    yield from export if isinstance(export, Skipped) else documents(entry, export)
