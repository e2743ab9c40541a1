"""A chat export as messages, found by its content: what `finetune --data EXPORT --me NAME` reads.

    export = read_chat(Path("WhatsApp Chat with Bob.zip"), PrepareConfig(date_order="dmy"))
    export.threads[0].messages[0]     # Message(sender="Bob", text="hi", time=datetime(...))

A file or a zip as the platform exports it (read in place); None when it is no chat export, so the
caller can read it another way (a JSONL file of conversations).
"""

from __future__ import annotations

from pathlib import Path

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.archive import Archive, ArchiveError, Limits, is_zip
from bricklm.text.documents import Skipped, display_path
from bricklm.text.readers import CHAT_KINDS, CHATS, SNIFFED, pick, twitter
from bricklm.text.readers.base import HEAD_BYTES, FileEntry, suffix
from bricklm.text.readers.chats import ChatExport


def read_chat(path: Path, cfg: PrepareConfig) -> ChatExport | None:
    """The chat export at path (a WhatsApp .txt, a Telegram result.json, a ChatGPT conversations.json, or the zip
    one comes in, read in place), or None when it is none (a JSONL file of conversations, say). A damaged zip or
    JSON, or an export without conversations (a Twitter archive), is a UserError."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return None  # the JSONL reader says what is wrong with it
    if is_zip(head) or suffix(path.name) == ".zip":
        archive = Archive(path, Limits.of(cfg))
        try:
            for member in archive.members():
                if not member.hidden and suffix(member.filename) in SNIFFED - {".zip"}:
                    found = _chat(member, member.head(), cfg)
                    if found is not None:
                        return found
        except ArchiveError as e:
            raise UserError(f"{display_path(path)}: not a readable zip ({e})") from None
        finally:
            archive.close()
        raise UserError(f"{display_path(path)}: a zip without a chat export bricklm reads ({CHAT_KINDS})")
    return _chat(FileEntry(path), head, cfg)


def _chat(entry, head: bytes, cfg: PrepareConfig) -> ChatExport | None:
    reader = pick(entry.filename, head)
    if reader is twitter.READER:
        raise UserError(f"{entry.name}: a Twitter archive holds tweets, not conversations; `bricklm prepare` reads it")
    if reader is None or reader.kind not in CHATS:
        return None
    export = CHATS[reader.kind](entry, cfg)
    if isinstance(export, Skipped):
        raise UserError(f"{export.path}: {export.reason}")
    return export
