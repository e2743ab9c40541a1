"""Fine-tuning on a chat export in its owner's voice (bricklm.finetune.voice, `finetune --data EXPORT --me NAME`):
the owner's turns are the assistant's, turns joined and cut at silences and to fit the window, bad input refused."""

import json
from datetime import datetime as D
from datetime import timedelta

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.finetune.voice import voice_conversations
from bricklm.text.chatexport import read_chat
from bricklm.text.tokenizer import CharTokenizer, ChatTokenizer
from conftest import FT_FLAGS
from exporthelp import chatgpt, chatgpt_conversation, make_zip, telegram, telegram_chat, telegram_message, whatsapp

T = D(2021, 12, 24, 9, 0)
TOK = ChatTokenizer(CharTokenizer([chr(c) for c in range(32, 127)] + ["\n"]))


def at(minutes: float) -> D:
    return T + timedelta(minutes=minutes)


def chat(tmp_path, lines, **style):
    path = tmp_path / "WhatsApp Chat with Bob.txt"
    path.write_text(whatsapp(lines, **style), encoding="utf-8")
    return path


def made(path, me="Alice", gap=6.0, block_size=128, **cfg):
    return voice_conversations(read_chat(path, PrepareConfig(**cfg)), me, gap, TOK, block_size)


def test_the_owners_messages_are_the_assistants_and_one_persons_run_is_one_turn(tmp_path):
    lines = [(at(0), "Bob", "hi"), (at(1), "Bob", "you up?"), (at(2), "Alice", "yes"), (at(3), "Alice", "why")]
    convs, report = made(chat(tmp_path, lines))
    assert convs == [[{"role": "user", "content": "hi\nyou up?"}, {"role": "assistant", "content": "yes\nwhy"}]]
    assert report.conversations == 1 and report.turns == {"Bob": 1, "Alice": 1}


def test_a_silence_longer_than_the_gap_starts_a_new_conversation(tmp_path):
    lines = [(at(0), "Bob", "a"), (at(1), "Alice", "b"), (at(1 + 7 * 60), "Bob", "c"), (at(2 + 7 * 60), "Alice", "d")]
    path = chat(tmp_path, lines)
    assert len(made(path)[0]) == 2
    assert len(made(path, gap=8.0)[0]) == 1


def test_conversations_are_cut_at_turn_boundaries_to_fit_the_window_and_a_long_message_at_the_window(tmp_path):
    lines = []
    for i in range(6):
        lines += [(at(2 * i), "Bob", f"question {i}?"), (at(2 * i + 1), "Alice", f"answer {i}.")]
    lines += [(at(20), "Bob", "and?"), (at(21), "Alice", "x" * 100)]
    convs, report = made(chat(tmp_path, lines), block_size=40)
    for conv in convs:
        assert sum(len(m["content"]) + 2 for m in conv) <= 41  # the template fits block_size + 1 whole
    assert [m["content"] for m in convs[0]] == ["question 0?", "answer 0."]  # a question stays with its answer
    assert convs[-1] == [{"role": "assistant", "content": "x" * 39}]
    assert report.cut == 1 and report.conversations == len(convs) and report.without_owner == 1  # "and?" alone
    assert "1 turns longer than the window were cut at it" in "\n".join(
        report.describe(read_chat(tmp_path / "WhatsApp Chat with Bob.txt", PrepareConfig()), 6.0)
    )


def test_in_a_group_the_users_turns_say_who_spoke(tmp_path):
    lines = [(at(0), "Bob", "hi"), (at(1), "Carol", "hey"), (at(2), "Alice", "hello both")]
    convs, report = made(chat(tmp_path, lines))
    assert [m["content"] for m in convs[0]] == ["Bob: hi", "Carol: hey", "hello both"]
    assert report.turns == {"Bob": 1, "Carol": 1, "Alice": 1}


def test_a_chatgpt_export_takes_the_user_as_the_owner_unless_me_says_assistant(tmp_path):
    path = tmp_path / "conversations.json"
    path.write_text(chatgpt([chatgpt_conversation("x", [("user", "Why?"), ("assistant", "Because.")])]))
    export = read_chat(path, PrepareConfig())
    convs, _ = voice_conversations(export, "", 6.0, TOK, 64)  # the model learns to ask like its owner
    assert convs == [[{"role": "assistant", "content": "Why?"}, {"role": "user", "content": "Because."}]]
    convs, _ = voice_conversations(export, "assistant", 6.0, TOK, 64)
    assert convs == [[{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."}]]


def test_a_telegram_export_in_a_zip_is_read_in_place(tmp_path):
    messages = [telegram_message(1, T, "Bob", "hi"), telegram_message(2, at(1), "Alice", ["yo ", {"text": "Bob"}])]
    path = make_zip(tmp_path / "export.zip", {"ChatExport/result.json": telegram([telegram_chat("Bob", messages)])})
    convs, _ = made(path)
    assert convs == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo Bob"}]]


def test_no_message_from_me_lists_the_names_found(tmp_path):
    path = chat(tmp_path, [(at(0), "Bob", "hi"), (at(1), "Alice", "yo")])
    with pytest.raises(UserError, match=r'no message from --me "Zed".*Bob \(1\), Alice \(1\)'):
        made(path, me="Zed")
    with pytest.raises(UserError, match="give --me NAME"):
        made(path, me="")
    assert made(path, me="alice")[1].owner == "Alice"  # one name that differs only in case is that name


# --- the command ---------------------------------------------------------------------------------


def voice_lines(days=6):
    lines = []
    for day in range(days):
        lines += [(at(day * 24 * 60), "Bob", "dog?"), (at(day * 24 * 60 + 1), "Alice", "a fox.")]
    return lines


def test_finetune_me_reads_a_chat_and_reports_what_it_made(tmp_path, tiny_run, capsys):
    path = chat(tmp_path, voice_lines(), style="dash", clock=12)
    out = tmp_path / "voice"
    args = ["finetune", "--from", str(tiny_run), "--data", str(path), "--me", "Alice", "--out", str(out), *FT_FLAGS]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "WhatsApp chat: 6 conversations" in printed and "Bob 6 (prompts), Alice 6 (the model's voice)" in printed
    assert "system lines dropped: encryption notice 1" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["finetune"]["me"] == "Alice" and config["finetune"]["gap_hours"] == 6.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["heldout_reply"]["question"] == "dog?"


@pytest.mark.parametrize(
    "case, message",
    [
        ("no message from me", 'no message from --me "Zed" in the WhatsApp chat; the names in it: Bob (6), Alice (6)'),
        ("unknown date style", "unknown date style"),
        ("damaged json", "damaged Telegram export, not valid JSON"),
        ("damaged zip", "not a readable zip"),
        ("me with jsonl", "--me picks the owner of a chat export"),
    ],
)
def test_bad_input_is_one_error_line_nothing_written_files_unchanged(tmp_path, tiny_run, capsys, case, message):
    path = chat(tmp_path, voice_lines())
    if case == "unknown date style":
        path.write_text("13/1/21, 10:00 - Bob: x\n1/13/21, 10:00 - Zed: y\n", encoding="utf-8")
    elif case == "damaged json":
        path = tmp_path / "result.json"
        path.write_text(telegram([telegram_chat("Bob", [telegram_message(1, T, "Zed", "hi")])])[:-10])
    elif case == "damaged zip":
        path = make_zip(tmp_path / "chat.zip", {"_chat.txt": whatsapp(voice_lines())})
        path.write_bytes(path.read_bytes()[:-30])
    elif case == "me with jsonl":
        path = tmp_path / "chats.jsonl"
        path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n')
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    out = tmp_path / "voice"
    assert main(["finetune", "--from", str(tiny_run), "--data", str(path), "--me", "Zed", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bricklm: error:") and message in err[0], err
    assert not out.exists() and {p: p.read_bytes() for p in tmp_path.iterdir()} == before
