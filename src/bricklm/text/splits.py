"""The text of a corpus's train and val splits, read back from corpus.txt the way `prepare` split it.

    meta = read_meta("corpus/")
    for piece in split_pieces("corpus/", meta, "train"):   # pieces in order; joined, the split's text
        piece.document, piece.offset, piece.text          # which document, where in it, the text

What train.bin and val.bin hold, as text: with the "tail" split, the first (or last) characters of
corpus.txt, cut at tail_split_index; with the "documents" split, the documents of that split (the val
ones are meta.json's val_documents) joined by prepare's SEPARATOR. meta.json's files_read gives every
document's name and length in corpus.txt's order, so each piece names its document. One document (or a
chunk of one) is in memory at a time, as in prepare.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bricklm.errors import UserError
from bricklm.text.data import tail_split_index

SEPARATOR = "\n\n"  # what prepare writes between documents, so one post never runs into the next
CHUNK_CHARS = 1 << 20
SPLITS = ("train", "val")


@dataclass
class Piece:
    document: int  # index into meta["files_read"]
    offset: int  # characters into that document (a separator after it starts at its length)
    text: str


def read_meta(corpus_dir: str | Path) -> dict:
    """corpus/meta.json as a dict; a UserError naming the file if it is missing or damaged."""
    path = Path(corpus_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path} is not a JSON object")
    return meta


def document_names(meta: dict) -> list[str]:
    return [str(f.get("path", "?")) for f in _documents(meta)]


def split_pieces(corpus_dir: str | Path, meta: dict, split: str) -> Iterator[Piece]:
    """The text of `split` ("train" or "val") as pieces, read from corpus_dir/corpus.txt one chunk at a time.

    A UserError if corpus.txt is missing or does not have the length meta.json gives it.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    docs = _documents(meta)
    lengths = [int(d["characters"]) for d in docs]
    total = sum(lengths) + len(SEPARATOR) * max(len(lengths) - 1, 0)
    path = Path(corpus_dir) / "corpus.txt"
    if meta.get("characters", total) != total:
        raise UserError(f"{path.parent / 'meta.json'} does not add up (its documents' lengths and its total differ)")
    if not path.is_file():
        raise UserError(f"{path} not found")
    if meta.get("split") == "documents":
        held_out = set(meta.get("val_documents") or [])
        wanted = [(str(d["path"]) in held_out) == (split == "val") for d in docs]
        lo, hi = 0, total
    else:  # "tail": one cut in the text, separators and all
        cut = tail_split_index(total, float(meta.get("val_fraction", 0.1)))
        wanted = [True] * len(docs)
        lo, hi = (0, cut) if split == "train" else (cut, total)
    yield from _read(path, lengths, wanted, lo, hi, joined=meta.get("split") == "documents")


def _documents(meta: dict) -> list[dict]:
    docs = meta.get("files_read")
    if not isinstance(docs, list) or not all(isinstance(d, dict) and "characters" in d for d in docs):
        raise UserError("the corpus's meta.json has no list of documents (files_read); run `bricklm prepare` again")
    return docs


def _read(path: Path, lengths: list[int], wanted: list[bool], lo: int, hi: int, joined: bool) -> Iterator[Piece]:
    """Walk corpus.txt document by document (each followed by its separator), yielding what lies in [lo, hi) of
    the wanted documents. joined: the documents split, where a separator is written only between two wanted
    documents (as prepare wrote the token files), attributed to the earlier one."""
    pos, previous = 0, None  # pos: characters of corpus.txt read so far
    with open(path, encoding="utf-8", newline="") as f:
        for i, length in enumerate(lengths):
            sep = len(SEPARATOR) if i < len(lengths) - 1 else 0
            if wanted[i] and joined and previous is not None:
                yield Piece(previous, lengths[previous], SEPARATOR)
            if wanted[i]:
                previous = i
            stop = length if joined else length + sep  # the tail split keeps the separators in place
            done = 0
            while done < length + sep:
                text = f.read(min(CHUNK_CHARS, length + sep - done))
                if not text:
                    raise UserError(f"{path} is shorter than meta.json says; run `bricklm prepare` again")
                start, end = pos + done, pos + done + len(text)
                a, b = max(start, lo), min(end, hi, pos + stop)
                if wanted[i] and a < b:
                    yield Piece(i, a - pos, text[a - start : b - start])
                done += len(text)
            pos += length + sep
        if f.read(1):
            raise UserError(f"{path} is longer than meta.json says; run `bricklm prepare` again")
