"""Shared fixtures: a tiny corpus and a tiny trained run, built once per test session; conversations for them."""

import json
import os
from pathlib import Path

import pytest

# Tests must behave the same on any machine: two threads, as on the CI box.
os.environ.setdefault("OMP_NUM_THREADS", "2")

TINY_TEXT = (
    "The quick brown fox jumps over the lazy dog. A small model learns the shape of words.\n"
    "Training a tiny transformer on a laptop is a fine way to learn what every block does.\n"
) * 30

# Flags for a model that trains in about a second.
TINY_FLAGS = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "16",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--max-iters",
    "6",
    "--eval-interval",
    "3",
    "--eval-iters",
    "2",
    "--warmup-iters",
    "2",
    "--sample-chars",
    "20",
    "--device",
    "cpu",
]


# Conversations made of the tiny corpus's characters, short enough for its 16-token window,
# and one character ("?") the tiny corpus lacks, so finetune must add it.
TINY_CHATS = [
    {"prompt": "fox?", "response": "the dog."},
    {"messages": [{"role": "user", "content": "a dog"}, {"role": "assistant", "content": "a fox."}]},
    {"prompt": "lazy?", "response": "brown."},
    {"prompt": "quick", "response": "a word."},
    {"prompt": "learn?", "response": "a block."},
]
# Flags for a fine-tune of the tiny run that takes a few seconds.
FT_FLAGS = ["--max-iters", "4", "--eval-interval", "2", "--batch-size", "4", "--eval-iters", "1", "--device", "cpu"]


def write_jsonl(path, records):
    """records (dicts, or strings written as they are) one a line; returns path."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_flags(**changes) -> list[str]:
    """TINY_FLAGS with values replaced or added (keys as field names: max_iters -> --max-iters)."""
    out = list(TINY_FLAGS)
    for key, value in changes.items():
        flag = "--" + key.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = str(value)
        else:
            out += [flag, str(value)]
    return out


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from bricklm.text.prepare import prepare

    root = tmp_path_factory.mktemp("tiny")
    src = root / "posts"
    src.mkdir()
    for i in range(6):
        (src / f"post{i}.md").write_text(f"# Post {i}\n\n" + TINY_TEXT)
    out = root / "corpus"
    prepare([src], out, log=lambda *a, **k: None)
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory) -> Path:
    from bricklm.cli import main

    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS]) == 0
    return run
