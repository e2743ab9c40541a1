"""bricklm chat: history within the window, the end-of-turn stop, and the command driven as a subprocess."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch

from bricklm.cli import main
from bricklm.config import ModelConfig
from bricklm.finetune.chat import Chat
from bricklm.finetune.conversations import render
from bricklm.model.gpt import GPT
from bricklm.text.tokenizer import CharTokenizer, ChatTokenizer

CHATS = [
    {"prompt": "fox?", "response": "the dog."},
    {"prompt": "a dog", "response": "a fox."},
    {"prompt": "lazy?", "response": "brown."},
]


@pytest.fixture(scope="module")
def chat_run(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    data = root / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CHATS))
    out = root / "ft"
    flags = ["--max-iters", "2", "--eval-interval", "2", "--batch-size", "2", "--eval-iters", "1", "--device", "cpu"]
    assert main(["finetune", "--from", str(tiny_run), "--data", str(data), "--out", str(out), *flags]) == 0
    return out


def run_chat(args, stdin):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bricklm", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_chat_subprocess_reset_and_quit(chat_run):
    r = run_chat(
        ["--run", str(chat_run), "--max-new-tokens", "5", "--temperature", "0.5", "--top-k", "5"],
        "the fox?\n/reset\n\na dog\n/nope\n/quit\nnever read\n",
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("bot> ") == 2
    assert "(conversation reset)" in out and "(unknown command /nope" in out
    assert "never read" not in out  # /quit stopped reading
    assert "you> the fox?" in out and "you> a dog" in out


def test_chat_compiled_says_what_the_eager_chat_says(chat_run, monkeypatch, capsys):
    answers = []
    for flags in ([], ["--compile"]):  # the compiled decode step (or, without a C compiler, the eager one)
        monkeypatch.setattr(sys, "stdin", io.StringIO("the fox?\na dog\n"))
        assert main(["chat", "--run", str(chat_run), "--max-new-tokens", "12", "--temperature", "0", *flags]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0].count("bot> ") == 2 and answers[1] == answers[0]


def test_chat_refuses_a_run_that_was_not_fine_tuned(tiny_run, capsys):
    assert main(["chat", "--run", str(tiny_run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bricklm: error:") and "bricklm finetune --from" in err and "\n" not in err


def make_chat(block_size=32, max_new_tokens=8, **kw):
    torch.manual_seed(0)
    tok = ChatTokenizer(CharTokenizer.from_text("abcdefgh ?"))
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16))
    notes = []
    chat = Chat(model.eval(), tok, max_new_tokens=max_new_tokens, notify=notes.append, temperature=0, **kw)
    return chat, tok, model, notes


def test_reply_stops_at_the_end_token():
    chat, tok, model, _ = make_chat()
    with torch.no_grad():
        model.head.bias.zero_()
        model.head.weight.zero_()
        model.head.bias[tok.encode("a")[0]] = 5.0  # greedy says "a" forever: cut at max_new_tokens
    reply = "".join(chat.say("abc"))
    assert set(reply) == {"a"} and chat.last_reply_cut  # never ended: cut at max_new_tokens
    with torch.no_grad():
        model.head.bias[tok.end_id] = 10.0
    assert "".join(chat.say("abc")) == "" and not chat.last_reply_cut
    assert [m["role"] for m in chat.history] == ["user", "assistant", "user", "assistant"]


def test_oldest_turns_are_dropped_first_and_said_so():
    chat, tok, _, notes = make_chat(block_size=32, max_new_tokens=8)  # prompts may use 24 tokens
    for text in ("aaaa", "bbbb", "cccc"):
        chat.history += [{"role": "user", "content": text}, {"role": "assistant", "content": "hhhh"}]
    chat.history.append({"role": "user", "content": "dddd"})
    ids = chat.prompt_ids()
    assert len(ids) <= 24
    assert [m["content"] for m in chat.history] == ["cccc", "hhhh", "dddd"]  # oldest two exchanges gone
    assert notes == ["(context window full: dropped the oldest turn)"] * 2
    assert ids == render(tok, chat.history, add_generation_prompt=True)[0]


def test_chat_help():
    with pytest.raises(SystemExit) as e:
        main(["chat", "--help"])
    assert e.value.code == 0
