"""WhatsApp chat exports (a chat → More → Export chat → Without media): the `.txt`, or the `.zip` it comes in.

    export = messages(FileEntry(Path("WhatsApp Chat with Bob.txt")), PrepareConfig())   # a chats.ChatExport
    for item in READER.read(entry, PrepareConfig()): ...   # the chat as one document, "Name: message" lines

Two styles of line, as the phone wrote them, each with a 24- or a 12-hour clock:

    [31/12/2020, 21:41:05] Alice: Happy new year!        (iPhone: brackets, seconds)
    12/31/20, 9:41 PM - Alice: Happy new year!           (Android: a dash)

A line that does not start so continues the message above it. Whether dates are day-first or
month-first is read from the file: a first number above 12 means day-first, a second one above
12 month-first, and when nothing decides, day-first is assumed (month-first with a 12-hour clock,
as US phones write) and the document's note says so; date_order ("dmy", "mdy") overrides. A file
whose dates fit neither order is a UserError. System lines (the encryption notice, "<Media
omitted>", deleted messages, calls, joins, leaves and group changes) are dropped and counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import PurePosixPath

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped
from bricklm.text.readers.base import Entry, Reader, read_text, suffix
from bricklm.text.readers.chats import ChatExport, Message, Thread, documents, message_text

_MARKS = "\u200e\u200f\ufeff"  # the direction marks WhatsApp puts before system lines and attachments
_DATE = r"(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4})"
_TIME = r"(?P<time>\d{1,2}[:.]\d{2}(?:[:.]\d{2})?)(?:[\s\u202f]*(?P<half>[AaPp])\.?\s?[Mm]\.?)?"
_BRACKET = re.compile(rf"[{_MARKS}]*\[{_DATE},? {_TIME}\] (?P<rest>.*)")
_DASH = re.compile(rf"[{_MARKS}]*{_DATE},? {_TIME} [-\u2013] (?P<rest>.*)")
_SENDER = re.compile(r"(?P<sender>[^:]{1,80}?): (?P<text>.*)", re.DOTALL)
_EDITED = "<This message was edited>"
# A message whose whole text is one of these is a system line, counted by its kind.
_SYSTEM_TEXT = {
    "<Media omitted>": "media omitted",
    "This message was deleted": "deleted messages",
    "You deleted this message": "deleted messages",
    "null": "view-once messages",
    "Missed voice call": "calls",
    "Missed video call": "calls",
}
_OMITTED = ("image omitted", "video omitted", "audio omitted", "sticker omitted", "GIF omitted", "document omitted")
ENCRYPTED = "Messages and calls are end-to-end encrypted"


def detect(filename: str, head: bytes) -> bool:
    if suffix(filename) != ".txt":
        return False
    first = head.decode("utf-8", "replace").lstrip(_MARKS + " \r\n").split("\n", 1)[0]
    return bool(_BRACKET.fullmatch(first.rstrip("\r")) or _DASH.fullmatch(first.rstrip("\r")))


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    export = messages(entry, cfg)
    yield from export if isinstance(export, Skipped) else documents(entry, export)


def messages(entry: Entry, cfg: PrepareConfig) -> ChatExport | Skipped:
    """The chat as one thread of messages; dates read in the order the file shows (or date_order says)."""
    source = read_text(entry)
    if isinstance(source, Skipped):
        return source
    text, _ = source
    raw: list[list] = []  # [date, time, half, rest] per message, later lines joined to rest
    for line in text.splitlines():
        m = _BRACKET.fullmatch(line) or _DASH.fullmatch(line)
        if m:
            raw.append([m["date"], m["time"], m["half"], m["rest"]])
        elif raw:
            raw[-1][3] += "\n" + line
    if not raw:
        raise UserError(f"{entry.name}: not a WhatsApp chat (no line starts with a date and a time)")
    order, note = date_order([r[0] for r in raw], any(r[2] for r in raw), cfg.date_order, entry.name)
    title = PurePosixPath(entry.filename).stem
    export = ChatExport("WhatsApp chat", [Thread(title)], notes=[note] if note else [])
    for date, clock, half, rest in raw:
        when = _when(date, clock, half, order, entry.name)
        kind, sender, body = _classify(rest)
        if kind:
            export.dropped[kind] += 1
        else:
            export.threads[0].messages.append(Message(sender, body, when))
    return export


def _classify(rest: str) -> tuple[str | None, str, str]:
    """(the system line's kind, or None; the sender; the message's text) for what follows a line's time."""
    m = _SENDER.fullmatch(rest)
    if not m or m["sender"].startswith(tuple(_MARKS)):
        return ("encryption notice" if ENCRYPTED in rest else "joins, leaves and group changes"), "", ""
    sender, body = m["sender"].strip(_MARKS + " "), m["text"]
    if body.startswith(tuple(_MARKS)):  # an iPhone's system line under the group's name, or an attachment
        body = body.lstrip(_MARKS)
        if ENCRYPTED in body:
            return "encryption notice", sender, ""
        return ("media omitted" if body.startswith(_OMITTED + ("<attached:",)) else "group changes"), sender, ""
    body = message_text(body.replace(_EDITED, ""))
    if ENCRYPTED in body:
        return "encryption notice", sender, ""
    if body in _SYSTEM_TEXT or body in _OMITTED:
        return _SYSTEM_TEXT.get(body, "media omitted"), sender, ""
    return (None if body else "empty messages"), sender, body


def date_order(dates: list[str], twelve_hour: bool, given: str, where: str) -> tuple[str, str | None]:
    """("dmy", "mdy" or "ymd"; a note when the order was assumed) for these date strings."""
    parts = [[int(p) for p in re.split(r"[./-]", d)] for d in dates]
    if all(len(d.split(".")[0].split("/")[0].split("-")[0]) == 4 for d in dates):
        return "ymd", None
    day_first = any(p[0] > 12 for p in parts)
    month_first = any(p[1] > 12 for p in parts)
    if day_first and month_first:
        raise UserError(
            f"{where}: unknown date style: some dates have a first number above 12, others a second one; "
            "neither day-first nor month-first fits"
        )
    if given != "auto":
        return given, None
    if day_first or month_first:
        return ("dmy" if day_first else "mdy"), None
    guess = "mdy" if twelve_hour else "dmy"
    other = "dmy" if guess == "mdy" else "mdy"
    words = {"dmy": "day-first", "mdy": "month-first"}
    return guess, f"dates assumed {words[guess]} (no day above 12 decides; --date-order {other} reads them otherwise)"


def _when(date: str, clock: str, half: str | None, order: str, where: str) -> datetime:
    a, b, c = (int(p) for p in re.split(r"[./-]", date))
    year, month, day = {"dmy": (c, b, a), "mdy": (c, a, b), "ymd": (a, b, c)}[order]
    hour, minute, *second = (int(p) for p in re.split(r"[:.]", clock))
    if half:
        hour = hour % 12 + (12 if half in "Pp" else 0)
    try:
        return datetime(year + 2000 if year < 100 else year, month, day, hour, minute, second[0] if second else 0)
    except ValueError:
        raise UserError(
            f"{where}: unknown date style: {date}, {clock} is no date read as {order} (--date-order sets the order)"
        ) from None


READER = Reader("whatsapp", "WhatsApp chat export", (".txt",), detect, read, export=True)
