"""Telegram Desktop exports (bricklm.text.readers.telegram): a chat's result.json or a whole account's, text as a
string or a list of parts, service messages and messages without text dropped and counted."""

import json
from datetime import datetime as D

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.readers import pick
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.telegram import READER, messages
from exporthelp import make_zip, telegram, telegram_chat, telegram_message

T = D(2021, 5, 1, 10, 0)
BOB = telegram_chat(
    "Bob",
    [
        telegram_message(1, T, "Alice", "Hi Bob"),
        telegram_message(2, T, "Bob", ["Look at ", {"type": "link", "text": "https://example.com"}, " now"]),
        telegram_message(3, T, "Bob", "", photo="photos/photo_1.jpg"),
        telegram_message(4, T, "Alice", "", kind="service"),
        telegram_message(5, T, "Alice", [{"type": "bold", "text": "Bold"}, " words\nand a second line"]),
    ],
)
GROUP = telegram_chat("Climbing", [telegram_message(1, T, "Carol", "Saturday?")], kind="private_group")


def test_one_chat_with_text_as_a_string_or_parts(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(telegram([BOB]), encoding="utf-8")
    assert pick(path.name, path.read_bytes()[:8192]) is READER
    export = messages(FileEntry(path), PrepareConfig())
    (thread,) = export.threads
    assert thread.title == "Bob"
    assert [(m.sender, m.text) for m in thread.messages] == [
        ("Alice", "Hi Bob"),
        ("Bob", "Look at https://example.com now"),
        ("Alice", "Bold words\nand a second line"),
    ]
    assert thread.messages[0].time == T
    assert sum(export.dropped.values()) == 2  # the photo and the service message


def test_a_whole_accounts_export_gives_a_document_per_chat(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(telegram([BOB, GROUP], account=True), encoding="utf-8")
    docs = list(READER.read(FileEntry(path), PrepareConfig()))
    assert [d.name.rsplit("/", 1)[-1] for d in docs] == ["result.json#Bob", "result.json#Climbing"]
    assert docs[1].text == "Carol: Saturday?"


def test_prepare_reads_it_from_a_zip(tmp_path, capsys):
    export = make_zip(tmp_path / "Telegram.zip", {"ChatExport_2021-05-01/result.json": telegram([BOB])})
    assert main(["prepare", str(export), "--out", str(tmp_path / "out")]) == 0
    assert "(Telegram export): 1 documents read" in capsys.readouterr().out
    corpus = (tmp_path / "out" / "corpus.txt").read_text(encoding="utf-8")
    assert corpus.startswith("Alice: Hi Bob\nBob: Look at https://example.com now")


@pytest.mark.parametrize("damage", ["truncated", "not chats"])
def test_a_damaged_export_is_one_error_and_nothing_is_written(tmp_path, capsys, damage):
    path = tmp_path / "result.json"
    text = telegram([BOB])
    path.write_text(text[:-40] if damage == "truncated" else json.dumps({"from_id": 1, "chats": 3}), encoding="utf-8")
    before = path.read_bytes()
    assert main(["prepare", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bricklm: error:") and "result.json" in err[0]
    assert not (tmp_path / "out").exists() and path.read_bytes() == before
