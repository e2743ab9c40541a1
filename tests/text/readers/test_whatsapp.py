"""WhatsApp chat exports (bricklm.text.readers.whatsapp): both line styles, both clocks, messages over several
lines, the date order read from the file, system lines dropped and counted, the .zip read in place."""

from datetime import datetime as D

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.readers import pick
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.chats import SYSTEM
from bricklm.text.readers.whatsapp import READER, messages
from exporthelp import make_zip, whatsapp

LINES = [
    (D(2020, 12, 31, 21, 41, 5), "Alice", "Happy new year!\nSee you tomorrow"),
    (D(2020, 12, 31, 21, 42), "Bob", "<Media omitted>"),
    (D(2020, 12, 31, 21, 43), "Bob", "This message was deleted"),
    (D(2020, 12, 31, 21, 44), "Bob", "You too! <This message was edited>"),
    (D(2021, 1, 1, 9, 3), None, "Carol joined using this group's invite link"),
    (D(2021, 1, 1, 9, 4), "Carol", "Morning: all"),
]


def read(path, **cfg):
    return messages(FileEntry(path), PrepareConfig(**cfg))


@pytest.mark.parametrize("style", ["bracket", "dash"])
@pytest.mark.parametrize("clock", [12, 24])
def test_both_styles_and_clocks_read_the_same_messages(tmp_path, style, clock):
    path = tmp_path / "WhatsApp Chat with Bob.txt"
    path.write_text(whatsapp(LINES, style=style, clock=clock), encoding="utf-8")
    assert pick(path.name, path.read_bytes()[:8192]) is READER
    export = read(path)
    got = [(m.sender, m.text, m.time.hour, m.time.minute) for m in export.threads[0].messages]
    assert got == [
        ("Alice", "Happy new year!\nSee you tomorrow", 21, 41),
        ("Bob", "You too!", 21, 44),
        ("Carol", "Morning: all", 9, 4),
    ]
    assert export.threads[0].messages[0].time.date() == D(2020, 12, 31).date()
    assert sum(export.dropped.values()) == 4  # the notice, the media, the deleted message, the join
    assert export.dropped["encryption notice"] == 1
    assert export.notes == []  # 31 is a day: nothing assumed


def test_the_chat_is_one_document_of_name_lines_with_system_lines_counted(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text(whatsapp(LINES, style="dash"), encoding="utf-8")
    (doc,) = READER.read(FileEntry(path), PrepareConfig())
    assert doc.text == "Alice: Happy new year!\nSee you tomorrow\nBob: You too!\nCarol: Morning: all"
    assert doc.markup == {SYSTEM: 4}


@pytest.mark.parametrize("mdy", [False, True])
def test_a_day_above_12_decides_the_date_order(tmp_path, mdy):
    path = tmp_path / "chat.txt"
    path.write_text(whatsapp(LINES, style="dash", clock=12, mdy=mdy), encoding="utf-8")
    export = read(path)
    assert export.threads[0].messages[-1].time == D(2021, 1, 1, 9, 4)
    assert export.notes == []


def test_when_nothing_decides_the_order_is_assumed_and_said_and_the_flag_overrides(tmp_path):
    lines = [(D(2021, 3, 4, 10, 0), "Alice", "hi"), (D(2021, 5, 6, 10, 0), "Bob", "hey")]
    path = tmp_path / "chat.txt"
    path.write_text(whatsapp(lines, style="bracket"), encoding="utf-8")
    export = read(path)
    assert export.threads[0].messages[0].time == D(2021, 3, 4, 10, 0)
    assert export.notes == ["dates assumed day-first (no day above 12 decides; --date-order mdy reads them otherwise)"]
    flipped = read(path, date_order="mdy")
    assert flipped.threads[0].messages[0].time == D(2021, 4, 3, 10, 0) and flipped.notes == []
    path.write_text(whatsapp(lines, style="dash", clock=12, mdy=True), encoding="utf-8")
    assert "assumed month-first" in read(path).notes[0]  # a 12-hour clock: a US phone


def test_prepare_reports_the_assumed_order(tmp_path, capsys):
    path = tmp_path / "chat.txt"
    path.write_text(whatsapp([(D(2021, 3, 4, 10, 0), "Alice", "hi there")]), encoding="utf-8")
    assert main(["prepare", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "chat.txt (WhatsApp chat export): 1 documents read" in out and "dates assumed day-first" in out
    assert (tmp_path / "out" / "corpus.txt").read_text(encoding="utf-8") == "Alice: hi there"


@pytest.mark.parametrize(
    "text, order, message",
    [
        ("13/1/21, 10:00 - A: x\n1/13/21, 10:00 - B: y\n", "auto", "neither day-first nor month-first"),
        ("13/1/21, 10:00 - A: x\n", "mdy", "no date read as mdy"),
    ],
)
def test_an_unknown_date_style_is_one_error_and_nothing_is_written(tmp_path, capsys, text, order, message):
    path = tmp_path / "chat.txt"
    path.write_text(text, encoding="utf-8")
    before = path.read_bytes()
    assert main(["prepare", str(path), "--out", str(tmp_path / "out"), "--date-order", order]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bricklm: error:") and message in err[0]
    assert not (tmp_path / "out").exists() and path.read_bytes() == before


def test_the_zip_an_iphone_exports_is_read_in_place_and_other_text_files_stay_text(tmp_path):
    export = make_zip(tmp_path / "WhatsApp Chat - Bob.zip", {"_chat.txt": whatsapp(LINES)})
    (tmp_path / "notes.txt").write_text("Just a note, 12/1/21, not a chat.", encoding="utf-8")
    assert main(["prepare", str(export), str(tmp_path / "notes.txt"), "--out", str(tmp_path / "out")]) == 0
    corpus = (tmp_path / "out" / "corpus.txt").read_text(encoding="utf-8")
    assert "Alice: Happy new year!" in corpus and "Just a note" in corpus
    assert sorted(list(tmp_path.iterdir())) == sorted([export, tmp_path / "notes.txt", tmp_path / "out"])
