"""Streaming prepare: memory stays bounded on a corpus of ~50 MB, and progress bars stay off the logs."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bricklm.text.streaming import corpus_chunks, with_progress

MB = 2**20


def make_corpus(root: Path, mb: int = 50, files: int = 250, seed: int = 0) -> int:
    """mb megabytes of generated sentences over `files` .txt files (fast: lines are drawn from a pool)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzéü"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 9))) for _ in range(5000)]
    lines = [" ".join(rng.choices(words, k=rng.randint(4, 16))).capitalize() + "." for _ in range(20000)]
    root.mkdir(parents=True)
    per_file, total = mb * MB // files, 0
    for i in range(files):
        text = "\n".join(rng.choices(lines, k=per_file // 60)) + "\n"
        (root / f"doc{i:04d}.txt").write_text(text, encoding="utf-8")
        total += len(text.encode())
    return total


# Peak RSS before and after prepare, in a fresh process: torch, numpy and tokenizers are imported
# first, so what grows is what prepare holds.
MEASURE = """
import json, resource, sys
from bricklm.config import PrepareConfig
from bricklm.text.prepare import prepare
import bricklm.text.tokenizer
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
report = prepare([sys.argv[1]], sys.argv[2], PrepareConfig(tokenizer=sys.argv[3]), log=lambda *a: None)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tokens = report.train_tokens + report.val_tokens
print(json.dumps({"growth": after - before, "characters": report.characters, "tokens": tokens}))
"""


@pytest.mark.slow
def test_prepare_memory_stays_far_below_a_50_mb_corpus(tmp_path):
    size = make_corpus(tmp_path / "src")
    assert size > 45 * MB
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "src"), str(tmp_path / "out"), "char"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # char: one token per character, less the separators where the split switches files
    assert result["characters"] > 45 * MB and 0 <= result["characters"] - result["tokens"] <= 2 * 250
    # Holding the corpus would cost its size as a str, 8x that as int64 ids; streaming holds one document.
    grew = result["growth"]
    assert grew < size / 4, f"peak memory grew {grew / MB:.1f} MB on a {size / MB:.0f} MB corpus"
    out = tmp_path / "out"
    assert (out / "train.bin").stat().st_size + (out / "val.bin").stat().st_size == 2 * result["tokens"]  # uint16
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal


def test_with_progress_yields_every_item_unchanged(tmp_path):
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.txt")
        files[-1].write_text("x" * (i + 1))
    assert list(with_progress(iter("abc"), files)) == ["a", "b", "c"]
    assert list(with_progress(iter(range(4)))) == [0, 1, 2, 3]


def test_corpus_chunks_give_back_the_file_and_end_at_line_ends(tmp_path):
    text = "".join(f"line {i} " + "w" * (i % 7) + "\n" for i in range(500))
    (tmp_path / "c.txt").write_text(text)
    chunks = list(corpus_chunks(tmp_path / "c.txt", chunk_chars=100))
    assert "".join(chunks) == text
    assert len(chunks) > 10 and all(c.endswith("\n") for c in chunks)
