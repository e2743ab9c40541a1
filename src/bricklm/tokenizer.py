"""Character tokenizer: one token per character, as in the blog. Saved as JSON.

    tok = CharTokenizer.from_text("hello")   # vocabulary e, h, l, o
    tok.encode("hole")                        # [1, 3, 2, 0]
    tok.decode([1, 3, 2, 0])                  # "hole"
    tok.save("tokenizer.json"); load_tokenizer("tokenizer.json")

tokenizer.json is {"type": "char", "chars": [...]}; "type" is what
load_tokenizer dispatches on, so other tokenizers (BPE) can be added beside.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bricklm.errors import UserError


class CharTokenizer:
    """Maps each character of the vocabulary to its index in `chars`."""

    kind = "char"

    def __init__(self, chars: list[str]):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"a character vocabulary holds single characters, not {bad[:3]!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("the character vocabulary has duplicates")
        self.chars = chars
        self._stoi = {c: i for i, c in enumerate(chars)}
        # Code points sorted, with the id of each: encode looks ids up with one searchsorted.
        codepoints = np.array([ord(c) for c in chars], dtype=np.int64)
        self._order = np.argsort(codepoints, kind="stable")
        self._sorted_codepoints = codepoints[self._order]

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The vocabulary of text: its distinct characters in code point order."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode_array(self, text: str) -> np.ndarray:
        """encode as an int64 numpy array (fast for long texts)."""
        # surrogatepass: a lone surrogate (from a mis-decoded argv) gets reported, not crashed on.
        codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
        if not len(self.chars):
            pos = np.zeros(len(codepoints), dtype=np.int64)
            known = np.zeros(len(codepoints), dtype=bool)
        else:
            pos = np.minimum(np.searchsorted(self._sorted_codepoints, codepoints), len(self.chars) - 1)
            known = self._sorted_codepoints[pos] == codepoints
        if not known.all():
            unknown = dict.fromkeys(c for c in text if c not in self._stoi)  # first-seen order, no repeats
            listed = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown)
            raise UserError(f"prompt has characters not in the vocabulary: {listed}")
        return self._order[pos]

    def encode(self, text: str) -> list[int]:
        """Token ids of text; a UserError lists every character the vocabulary lacks."""
        return self.encode_array(text).tolist()

    def decode(self, ids) -> str:
        """Text of token ids: a list or other iterable of ints, or a 1-D tensor or array."""
        if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
            if getattr(ids, "ndim", 1) != 1:
                raise ValueError(f"decode takes a 1-D sequence of ids, not shape {tuple(ids.shape)}")
            ids = ids.tolist()
        ids = list(ids)
        if ids and (min(ids) < 0 or max(ids) >= len(self.chars)):
            raise ValueError(f"token ids must be in 0..{len(self.chars) - 1}")
        return "".join([self.chars[i] for i in ids])

    def to_dict(self) -> dict:
        return {"type": self.kind, "chars": list(self.chars)}

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


_TYPES = {"char": CharTokenizer}


def tokenizer_from_dict(d: dict) -> CharTokenizer:
    """Rebuild a tokenizer from to_dict() output; bad content is a UserError."""
    if not isinstance(d, dict) or "type" not in d:
        raise UserError('tokenizer has no "type" field')
    if d["type"] == "chat":  # a base tokenizer plus finetune's special tokens (chat_data.py)
        from bricklm.chat_data import ChatTokenizer

        return ChatTokenizer.from_dict(d)
    if d["type"] == "bpe":  # byte-level BPE from Hugging Face tokenizers (bpe.py)
        from bricklm.bpe import BPETokenizer

        return BPETokenizer.from_dict(d)
    if d["type"] not in _TYPES:
        raise UserError(f"unknown tokenizer type {d['type']!r}; this bricklm knows: {', '.join(_TYPES)}")
    chars = d.get("chars")
    if not isinstance(chars, list):
        raise UserError('char tokenizer has no "chars" list')
    try:
        return CharTokenizer(chars)
    except ValueError as e:
        raise UserError(str(e)) from None


def load_tokenizer(path) -> CharTokenizer:
    """Read tokenizer.json; a missing file, bad JSON or unknown type is a UserError naming the file."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"tokenizer file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read tokenizer {path}: {e}") from None
    try:
        return tokenizer_from_dict(d)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
