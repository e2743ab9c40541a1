"""ChatGPT exports (Settings → Data controls → Export data; the emailed `.zip`): `conversations.json`.

    export = messages(FileEntry(Path("conversations.json")), PrepareConfig())   # a thread per conversation
    for item in READER.read(entry, PrepareConfig()): ...                       # a document per conversation

The file is a list of conversations, {"title", "create_time", "mapping", "current_node", ...}.
mapping holds every message ever written, edits and regenerations included, as a tree of nodes
{"id", "message", "parent", "children"}; what the conversation shows is the branch from
current_node up the parent links, which is what is read (reversed, so it runs oldest first). The
user's and the assistant's text messages are kept, as "user" and "assistant"; system and tool
messages, hidden ones and ones without text are dropped and counted. `finetune --me` takes the
user as the owner by default. Read whole (json), up to json_max_mb; bad JSON is a UserError.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped
from bricklm.text.readers.base import Entry, Reader, read_json, suffix
from bricklm.text.readers.chats import ChatExport, Message, Thread, message_text, read_chats

ROLES = ("user", "assistant")
DROPPED = "system, tool and hidden messages"


def detect(filename: str, head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return suffix(filename) == ".json" and start.startswith(b"[") and b'"mapping"' in head


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    yield from read_chats(entry, cfg, messages)


def messages(entry: Entry, cfg: PrepareConfig) -> ChatExport | Skipped:
    """A thread per conversation: its current branch, oldest first."""
    data = read_json(entry, cfg, "ChatGPT export")
    if isinstance(data, Skipped):
        return data
    if not isinstance(data, list) or not all(isinstance(c, dict) and isinstance(c.get("mapping"), dict) for c in data):
        raise UserError(f"{entry.name}: not a ChatGPT export (a list of conversations, each with a mapping)")
    export = ChatExport("ChatGPT export", default_me="user")
    for n, conv in enumerate(data, 1):
        thread = Thread(conv.get("title") if isinstance(conv.get("title"), str) else f"conversation {n}")
        for node in branch(conv["mapping"], conv.get("current_node"), f"{entry.name}: conversation {n}"):
            message = _message(node.get("message"))
            if message is None:
                export.dropped[DROPPED] += node.get("message") is not None
            else:
                thread.messages.append(message)
        export.threads.append(thread)
    return export


def branch(mapping: dict, current, where: str) -> list[dict]:
    """The nodes from the root to current (the conversation as shown); with no current_node, the last leaf's."""
    if not isinstance(current, str) or current not in mapping:
        leaves = [k for k, v in mapping.items() if isinstance(v, dict) and not v.get("children")]
        current = leaves[-1] if leaves else None
    path, seen = [], set()
    while current is not None:
        if not isinstance(current, str):
            raise UserError(f"{where}: damaged ChatGPT export, a parent link is {type(current).__name__}, not an id")
        if current in seen:
            raise UserError(f"{where}: damaged ChatGPT export, its messages' parent links make a loop")
        seen.add(current)
        node = mapping.get(current)
        if not isinstance(node, dict):
            raise UserError(f"{where}: damaged ChatGPT export, message {current!r} is missing from its mapping")
        path.append(node)
        current = node.get("parent")
    return path[::-1]


def _message(message) -> Message | None:
    if not isinstance(message, dict):
        return None
    author = message.get("author") if isinstance(message.get("author"), dict) else {}
    metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
    content = message.get("content") if isinstance(message.get("content"), dict) else {}
    role = author.get("role")
    if role not in ROLES or metadata.get("is_visually_hidden_from_conversation"):
        return None
    if content.get("content_type") not in ("text", "multimodal_text"):
        return None
    parts = content.get("parts") if isinstance(content.get("parts"), list) else []
    text = message_text("\n".join(p for p in parts if isinstance(p, str)))
    return Message(role, text, _time(message.get("create_time"))) if text else None


def _time(stamp) -> datetime | None:
    try:
        return datetime.fromtimestamp(stamp, timezone.utc) if isinstance(stamp, (int, float)) else None
    except (OverflowError, ValueError, OSError):  # a damaged time is no time: the gap rule leaves it alone
        return None


READER = Reader("chatgpt", "ChatGPT export", (".json",), detect, read, export=True)
