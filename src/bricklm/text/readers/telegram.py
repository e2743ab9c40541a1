"""Telegram Desktop exports (a chat's ⋮ → Export chat history, or Settings → Advanced → Export Telegram data,
format "Machine-readable JSON"): `result.json`.

    export = messages(FileEntry(Path("result.json")), PrepareConfig())   # a chats.ChatExport, a thread per chat
    for item in READER.read(entry, PrepareConfig()): ...                 # a document per chat

One chat's export is {"name", "type", "id", "messages": [...]}; a whole account's holds its chats
under {"chats": {"list": [...]}}. A message is {"type": "message", "date": "2021-01-01T10:00:00",
"from": "Alice", "text": ...} whose text is a string, or a list of parts: strings and
{"type": "link", "text": "..."} objects, joined. Service messages (joins, leaves, calls, pins) and
messages with no text (a photo, a sticker) are dropped and counted. The file is read whole (json),
up to json_max_mb; JSON that does not parse is a UserError.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped
from bricklm.text.readers.base import Entry, Reader, read_json, suffix
from bricklm.text.readers.chats import ChatExport, Message, Thread, message_text, read_chats


def detect(filename: str, head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    marks = (b'"date_unixtime"', b'"from_id"', b'"personal_information"')
    return suffix(filename) == ".json" and start.startswith(b"{") and any(m in head for m in marks)


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    yield from read_chats(entry, cfg, messages)


def messages(entry: Entry, cfg: PrepareConfig) -> ChatExport | Skipped:
    """A thread per chat of the export, in the export's order."""
    data = read_json(entry, cfg, "Telegram export")
    if isinstance(data, Skipped):
        return data
    chats = [data]
    if isinstance(data, dict) and "chats" in data:  # a whole account's export
        chats = data["chats"].get("list") if isinstance(data["chats"], dict) else None
    if not isinstance(chats, list) or not all(isinstance(c, dict) and "messages" in c for c in chats):
        raise UserError(f"{entry.name}: not a Telegram export (no chat with a messages list)")
    export = ChatExport("Telegram export")
    for n, chat in enumerate(chats, 1):
        thread = Thread(_text(chat.get("name")) or f"chat {n}")
        for item in chat["messages"] if isinstance(chat["messages"], list) else []:
            if not isinstance(item, dict) or item.get("type") != "message":
                export.dropped["service messages (joins, leaves, calls, pins)"] += 1
                continue
            body = message_text(text_of(item.get("text")))
            if not body:
                export.dropped["media omitted"] += 1
                continue
            sender = _text(item.get("from")) or "(deleted account)"
            thread.messages.append(Message(sender, body, _date(item.get("date"))))
        export.threads.append(thread)
    return export


def text_of(text) -> str:
    """A message's text: a string, or a list of strings and {"text": ...} parts (links, bold, mentions) joined."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        return "".join(p if isinstance(p, str) else _text(p.get("text")) if isinstance(p, dict) else "" for p in text)
    return ""


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _date(value) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


READER = Reader("telegram", "Telegram export", (".json",), detect, read, export=True)
