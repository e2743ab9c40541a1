"""The parts of `bricklm prepare` that keep memory bounded on corpora bigger than memory.

    groups = with_progress(read_sources(scan, cfg), scan.files)  # a bar over files and bytes
    for text in corpus_chunks("corpus.txt"): ...              # corpus.txt back, a chunk at a time
    tok = build_tokenizer("bpe", chars, "corpus.txt", 4000)   # char vocabulary or a trained BPE

Nothing here holds more than one document or one chunk of text: the character set,
the documents' lengths, and `tokenizers`' word counts are what grows with the corpus.
Bars are drawn on stderr only when it is a terminal (tqdm's disable=None).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from bricklm.config import TOKENIZERS
from bricklm.errors import UserError
from bricklm.text.tokenizer import BPETokenizer, CharTokenizer

CHUNK_CHARS = 1 << 20
# tokenizers' train_from_iterator pulls a buffer of items (256) ahead, so its chunks must stay small.
TRAIN_CHUNK_CHARS = 1 << 16


def with_progress(items: Iterable, files: list[Path] | None = None, desc: str = "reading") -> Iterator:
    """Yield items unchanged, advancing a bar by each file's size (or by one item when there are no files).

    With files, there is one item per file (what its reader yields for it); a file may be a zip's member."""
    sizes = []
    for path in files or []:
        try:  # a zip's member says its size; a file on disk is asked
            sizes.append(path.size() if hasattr(path, "size") else os.stat(path).st_size)
        except OSError:
            sizes.append(0)  # its reader reports why; the bar just doesn't count it
    bar = tqdm(
        total=sum(sizes) if files else None,
        desc=desc,
        unit="B" if files else " docs",
        unit_scale=bool(files),
        disable=None,
        dynamic_ncols=True,
        leave=False,
    )
    try:
        for i, item in enumerate(items):
            bar.update(sizes[i] if files and i < len(sizes) else 1)
            if files:
                bar.set_postfix_str(f"{i + 1}/{len(files)} files", refresh=False)
            yield item
    finally:
        bar.close()


def corpus_chunks(path: str | Path, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """corpus.txt a chunk at a time, each ending at a line end where one comes soon, so words aren't cut."""
    with open(path, encoding="utf-8", newline="") as f:
        while chunk := f.read(chunk_chars):
            yield chunk + f.readline(chunk_chars)


def char_progress(total_chars: int, desc: str = "tokenizing"):
    """A bar over characters for the tokenizing pass."""
    return tqdm(
        total=total_chars, desc=desc, unit=" chars", unit_scale=True, disable=None, dynamic_ncols=True, leave=False
    )


def build_tokenizer(kind: str, chars: set[str], corpus_path: Path, vocab_size: int):
    """char: the characters seen in the first pass; bpe: merges trained by streaming corpus.txt."""
    if kind == "char":
        return CharTokenizer(sorted(chars))
    if kind == "bpe":
        return BPETokenizer.train(corpus_chunks(corpus_path, TRAIN_CHUNK_CHARS), vocab_size)
    raise UserError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, not {kind!r}")
