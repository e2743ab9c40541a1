"""ChatGPT exports (bricklm.text.readers.chatgpt): conversations.json's trees followed along the current branch,
system and tool messages dropped and counted, the user as the default owner."""

from datetime import datetime, timezone

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.readers import pick
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.chatgpt import READER, messages
from exporthelp import chatgpt, chatgpt_conversation, make_zip

TURNS = [("user", "What is a list?"), ("assistant", "A sequence you can change."), ("user", "Thanks!")]


def test_the_current_branch_is_read_not_an_edited_away_one(tmp_path):
    conv = chatgpt_conversation("Lists", TURNS, abandoned=(0, "user", "An old question I edited"))
    tool = chatgpt_conversation("Tools", [("user", "Search it"), ("tool", "results..."), ("assistant", "Found it.")])
    path = tmp_path / "conversations.json"
    path.write_text(chatgpt([conv, tool]), encoding="utf-8")
    assert pick(path.name, path.read_bytes()[:8192]) is READER
    export = messages(FileEntry(path), PrepareConfig())
    assert export.default_me == "user"
    assert [t.title for t in export.threads] == ["Lists", "Tools"]
    assert [(m.sender, m.text) for m in export.threads[0].messages] == TURNS
    assert [m.text for m in export.threads[1].messages] == ["Search it", "Found it."]
    assert export.threads[0].messages[0].time == datetime.fromtimestamp(1.7e9, timezone.utc)
    assert sum(export.dropped.values()) == 3  # two empty system messages and the tool's


def test_the_tree_is_followed_from_current_node_up_the_parent_links(tmp_path):
    conv = chatgpt_conversation("Lists", TURNS)
    conv["current_node"] = "n1"  # the user went back: the conversation shown ends at the answer
    path = tmp_path / "conversations.json"
    path.write_text(chatgpt([conv]), encoding="utf-8")
    (doc,) = READER.read(FileEntry(path), PrepareConfig())
    assert doc.text == "user: What is a list?\nassistant: A sequence you can change."


def test_prepare_reads_the_emailed_zip_in_place(tmp_path, capsys):
    export = make_zip(
        tmp_path / "chatgpt-export.zip",
        {"conversations.json": chatgpt([chatgpt_conversation("Lists", TURNS)]), "user.json": '{"id": "user-1"}'},
    )
    assert main(["prepare", str(export), "--out", str(tmp_path / "out")]) == 0
    assert "ChatGPT export): 1 documents read" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncated", "loop", "missing parent", "parent not an id"])
def test_a_damaged_export_is_one_error_and_nothing_is_written(tmp_path, capsys, damage):
    conv = chatgpt_conversation("Lists", TURNS)
    if damage == "loop":
        conv["mapping"]["root"]["parent"] = "n2"
    elif damage == "missing parent":
        conv["mapping"]["n1"]["parent"] = "gone"
    elif damage == "parent not an id":
        conv["mapping"]["n1"]["parent"] = ["sys"]
    text = chatgpt([conv])
    path = tmp_path / "conversations.json"
    path.write_text(text[:-30] if damage == "truncated" else text, encoding="utf-8")
    before = path.read_bytes()
    assert main(["prepare", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bricklm: error:") and "damaged ChatGPT export" in err[0]
    assert not (tmp_path / "out").exists() and path.read_bytes() == before
