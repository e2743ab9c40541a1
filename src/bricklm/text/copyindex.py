"""The copying meter: which spans of a generated text were copied verbatim from the training text.

    build_index("corpus/", "runs/blog/copying")            # once: the training split, indexed
    with CopyIndex.open("runs/blog/copying") as index:
        copying = index.measure(text, min_span=32)
        print(copying.line())   # copied: longest 57 characters (from posts/x.md), 12% of the text in spans of 32+

What is indexed: the training split's text exactly as train.bin holds it (splits.py reads it back from
corpus.txt: the tail split's first part, or the train documents joined by prepare's separator), as UTF-8
bytes in train.txt, with a table of where each document's text starts (index.json's "pieces") so a span
names its document and the character it starts at. val.txt holds the held-out split's text, for comparing
a model's copying with what "not copying" looks like in this corpus.

How: a suffix array over the bytes (libdivsufsort, through pydivsufsort): every position of the text,
sorted by the text that starts there, 4 bytes per byte of text (8 past 2 GB). The longest prefix of a
query that the text holds sits beside the query's place in that order, found by binary search (the
standard matching-statistics search), so each generated character costs one search of about log2(n)
comparisons of short byte strings, read from the memory-mapped files. Building holds the text and the
array in memory (5 bytes per byte of training text); reading maps the files and holds nothing.

Chance: index.json's "chance" records how long a match held-out text finds anyway: the longest copied
span of CHANCE_WINDOWS random held-out windows of CHANCE_CHARS characters, its median, 95th percentile
(chance_length) and maximum. Copying shorter than that says nothing about memorising.
"""

from __future__ import annotations

import json
import mmap
import random
import shutil
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydivsufsort import divsufsort

from bricklm.errors import UserError
from bricklm.files import atomic_write_json, fsync_tree, swap_in, temp_sibling
from bricklm.text.splits import document_names, read_meta, split_pieces

INDEX = "index.json"  # written last: a folder without it is incomplete
TEXT, SUFFIXES, HELDOUT = "train.txt", "suffixes.bin", "val.txt"
VERSION = 1
MIN_SPAN = 32  # characters: shorter matches are common words and phrases, not recitation
CHANCE_WINDOWS, CHANCE_CHARS = 64, 1000
FIRST_PATTERN = 256  # bytes of a query compared at first; a match that long is searched again with more


@dataclass
class Copying:
    """What a text copied: its longest span found in the training text, and the share inside long spans."""

    characters: int  # characters measured
    longest: int  # characters in the longest span also found in the training text
    start: int  # where that span starts in the measured text
    document: str | None  # the training document it was found in (None when nothing matched)
    offset: int | None  # characters into that document
    share: float  # share of the characters inside spans of at least min_span copied characters
    min_span: int
    # {"start", "length", "document", "position"} of each span >= min_span (position: its byte in train.txt)
    spans: list[dict] = field(default_factory=list)

    def line(self) -> str:
        source = f" (from {self.document})" if self.document else ""
        return (
            f"copied: longest {self.longest} characters{source}, "
            f"{self.share:.0%} of the text in spans of {self.min_span}+"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def common_prefix(a: bytes, b: bytes) -> int:
    """How many leading bytes a and b share."""
    n, lo, step = min(len(a), len(b)), 0, 16
    while lo < n:  # slices of growing size, compared in C; then the differing one byte by byte
        hi = min(lo + step, n)
        if a[lo:hi] != b[lo:hi]:
            return next(i for i in range(lo, hi) if a[i] != b[i])
        lo, step = hi, step * 4
    return n


class CopyIndex:
    """A built index, memory-mapped. Use as a context manager, or call close()."""

    def __init__(self, folder: str | Path, info: dict):
        self.folder, self.info = Path(folder), info
        self.names = info["documents"]
        self.pieces = info["pieces"]  # [document, byte where its text starts in train.txt, character offset]
        self._piece_bytes = [p[1] for p in self.pieces]
        self._file = open(self.folder / TEXT, "rb")
        self.text = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._sa_file = open(self.folder / SUFFIXES, "rb")
        self._sa_map = mmap.mmap(self._sa_file.fileno(), 0, access=mmap.ACCESS_READ)
        self.suffixes = np.frombuffer(self._sa_map, dtype=np.dtype(info["suffix_dtype"]))
        self._heldout: str | None = None

    @classmethod
    def open(cls, folder: str | Path) -> CopyIndex:
        """An index build_index wrote; a UserError naming the file if it is incomplete or damaged."""
        folder = Path(folder)
        try:
            info = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{folder} holds no copying index ({INDEX} missing)") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{folder / INDEX} is damaged ({type(exc).__name__}); delete {folder} to rebuild") from None
        keys = ("version", "bytes", "suffix_dtype", "documents", "pieces")
        if not isinstance(info, dict) or any(k not in info for k in keys) or info["version"] != VERSION:
            raise UserError(f"{folder / INDEX} is not a copying index this bricklm reads; delete {folder} to rebuild")
        sizes = {TEXT: info["bytes"], SUFFIXES: info["bytes"] * np.dtype(info["suffix_dtype"]).itemsize}
        for name, size in sizes.items():
            if not (folder / name).is_file() or (folder / name).stat().st_size != size:
                raise UserError(f"{folder / name} is missing or not the size {INDEX} says; delete {folder} to rebuild")
        return cls(folder, info)

    def close(self) -> None:
        self.suffixes = None  # the array views the map: drop it before closing the map
        for handle in (self._sa_map, self._sa_file, self.text, self._file):
            handle.close()

    def __enter__(self) -> CopyIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def chance_length(self) -> int | None:
        """The 95th percentile of held-out windows' longest match (see the module docstring)."""
        return self.info.get("chance", {}).get("chance_length")

    # --- the search ----------------------------------------------------------------------------------

    def _longest(self, query: bytes, start: int) -> tuple[int, int]:
        """(bytes, position): the longest prefix of query[start:] that the training text holds, and where."""
        n, size = len(self.suffixes), FIRST_PATTERN
        while True:
            pattern = query[start : start + size]
            width = len(pattern)
            # The first suffix not below the pattern; the suffix sharing the most with it is there or just before.
            j = bisect_left(self.suffixes, pattern, key=lambda p: self.text[p : p + width])
            best, where = 0, -1
            for k in (j - 1, j):
                if 0 <= k < n:
                    p = int(self.suffixes[k])
                    m = common_prefix(pattern, self.text[p : p + width])
                    if m > best:
                        best, where = m, p
            if best < width or start + size >= len(query):
                return best, where
            size *= 8  # matched all we compared: look again with more of the query

    def matches(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """For each character of text: how many characters from there on the training text holds (the longest
        match), and the byte position in train.txt where that match starts (-1 for none)."""
        query = text.encode("utf-8", "surrogatepass")
        data = np.frombuffer(query, np.uint8)
        starts = np.flatnonzero((data & 0xC0) != 0x80)  # the byte each character starts at
        found = [self._longest(query, s) for s in starts.tolist()]
        nbytes = np.array([f[0] for f in found], np.int64).reshape(-1)
        where = np.array([f[1] for f in found], np.int64).reshape(-1)
        # Whole characters only: a match can end inside a character whose first bytes agree.
        ends = np.searchsorted(np.append(starts, len(query)), starts + nbytes, side="right")
        return ends - 1 - np.arange(len(starts)), where

    def measure(self, text: str, min_span: int = MIN_SPAN) -> Copying:
        """The copying in text: the longest span found in the training text, and the share of text inside
        spans of at least min_span characters."""
        lengths, where = self.matches(text)
        m = len(lengths)
        if not m:
            return Copying(0, 0, 0, None, None, 0.0, min_span)
        long = np.flatnonzero(lengths >= max(min_span, 1))
        edges = np.zeros(m + 1, np.int64)
        np.add.at(edges, long, 1)
        np.add.at(edges, long + lengths[long], -1)
        share = float((np.cumsum(edges)[:m] > 0).mean())
        k = int(lengths.argmax())
        longest = int(lengths[k])
        document, offset = self.source(int(where[k])) if longest else (None, None)
        spans, end = [], -1
        for i in long.tolist():  # each span that reaches past the ones before it
            if i + lengths[i] > end:
                end = int(i + lengths[i])
                found = {"document": self.source(int(where[i]))[0], "position": int(where[i])}
                spans.append({"start": i, "length": int(lengths[i]), **found})
        return Copying(m, longest, k, document, offset, share, min_span, spans)

    def holds(self, text: str) -> bool:
        """Does the training text hold `text`, verbatim, anywhere (the empty text: yes)? One search."""
        query = text.encode("utf-8", "surrogatepass")
        return not query or self._longest(query, 0)[0] == len(query)

    def excerpt(self, position: int, length: int, context: int) -> dict:
        """The training text at a byte position of train.txt: `length` characters from there, and up to
        `context` characters either side, never past the document piece that holds the position."""
        if not 0 <= position < len(self.text):
            raise ValueError(f"position {position} is outside the training text (0..{len(self.text) - 1})")
        i = bisect_right(self._piece_bytes, position) - 1
        first = self._piece_bytes[i]
        last = self._piece_bytes[i + 1] if i + 1 < len(self._piece_bytes) else len(self.text)
        while position > first and self.text[position] & 0xC0 == 0x80:  # the start of the character
            position -= 1
        text = self.text[position : min(last, position + 4 * length)].decode("utf-8", "ignore")[:length]
        end = position + len(text.encode("utf-8"))
        head = self.text[max(first, position - 4 * context) : position].decode("utf-8", "ignore")
        tail = self.text[end : min(last, end + 4 * context)].decode("utf-8", "ignore")
        document, offset = self.source(position)
        return {
            "document": document,
            "offset": offset,
            "before": head[-context:] if context else "",
            "text": text,
            "after": tail[:context],
        }

    def source(self, position: int) -> tuple[str, int]:
        """(document name, character offset in it) of a byte position of train.txt."""
        i = bisect_right(self._piece_bytes, position) - 1
        document, start, offset = self.pieces[i]
        return self.names[document], offset + len(self.text[start:position].decode("utf-8", "replace"))

    # --- held-out text -------------------------------------------------------------------------------

    def heldout(self, length: int, count: int, seed: int = 0) -> list[str]:
        """count windows of `length` characters of the held-out split at seeded random places; fewer, side by
        side, when the split is shorter than count windows (the whole split, once, when shorter than one)."""
        if self._heldout is None:
            self._heldout = (self.folder / HELDOUT).read_bytes().decode("utf-8", "replace")
        text = self._heldout
        if len(text) <= length:
            return [text] if text else []
        if len(text) < count * length:  # too short for count windows apart: as many as fit, side by side
            return [text[s : s + length] for s in range(0, len(text) - length + 1, length)]
        rng = random.Random(seed)
        return [text[s : s + length] for s in (rng.randrange(len(text) - length + 1) for _ in range(count))]

    def chance(self, windows: int = CHANCE_WINDOWS, chars: int = CHANCE_CHARS) -> dict:
        """How long a match held-out text finds in the training text anyway (index.json's "chance")."""
        longest = [int(self.matches(w)[0].max(initial=0)) for w in self.heldout(chars, windows)]
        if not longest:
            return {"window_chars": chars, "windows": 0, "median": None, "chance_length": None, "max": None}
        pick = lambda q: int(np.percentile(longest, q, method="higher"))  # noqa: E731 - a length that was seen
        return {
            "window_chars": min(chars, len(self._heldout or "")),
            "windows": len(longest),
            "median": pick(50),
            "chance_length": pick(95),
            "max": max(longest),
        }


def build_index(corpus_dir: str | Path, out: str | Path, extra: dict | None = None) -> CopyIndex:
    """Index the training split of the corpus in corpus_dir into the folder out (replaced whole) and open it.

    extra: more keys for index.json (e.g. the corpus's sha256 the run trained on). A UserError if the corpus
    can't be read back as prepare wrote it.
    """
    corpus_dir, out = Path(corpus_dir), Path(out)
    meta = read_meta(corpus_dir)
    tmp = temp_sibling(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        pieces, characters = _write_text(split_pieces(corpus_dir, meta, "train"), tmp / TEXT)
        _write_text(split_pieces(corpus_dir, meta, "val"), tmp / HELDOUT)
        if meta.get("tokenizer") == "char" and meta.get("train_tokens", characters) != characters:
            raise UserError(f"{corpus_dir}: the training text read back from corpus.txt is not what train.bin holds")
        text = (tmp / TEXT).read_bytes()
        if not text:
            raise UserError(f"{corpus_dir}: the training split is empty")
        dtype = np.dtype("<i4") if len(text) < 2**31 else np.dtype("<i8")
        np.asarray(divsufsort(text), dtype=dtype).tofile(tmp / SUFFIXES)
        info = {
            "version": VERSION,
            "bytes": len(text),
            "characters": characters,
            "suffix_dtype": dtype.str,
            "corpus": str(corpus_dir),
            "split": meta.get("split"),
            **(extra or {}),
            "documents": document_names(meta),
            "pieces": pieces,
        }
        del text
        with CopyIndex(tmp, info) as index:
            info["chance"] = index.chance()
        atomic_write_json(tmp / INDEX, info)
        fsync_tree(tmp)
        swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a swap; what a failure left otherwise
    return CopyIndex.open(out)


def _write_text(pieces, path: Path) -> tuple[list[list[int]], int]:
    """Write the pieces' text as UTF-8; return where each piece starts ([document, byte, offset]) and the
    number of characters."""
    table, position, characters = [], 0, 0
    with open(path, "wb") as f:
        for piece in pieces:
            data = piece.text.encode("utf-8")
            table.append([piece.document, position, piece.offset])
            f.write(data)
            position += len(data)
            characters += len(piece.text)
    return table, characters
