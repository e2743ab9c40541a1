"""Byte-level BPE tokenizer, trained and run by Hugging Face `tokenizers`, saved as JSON.

    tok = BPETokenizer.train(documents, vocab_size=2000)  # documents: any iterable of str
    tok.encode("héllo 🙂")                                 # ids; never an error
    tok.decode(tok.encode(text)) == text                   # for any Unicode text
    tok.save("tokenizer.json"); load_tokenizer("tokenizer.json")

Byte-level means the base vocabulary is the 256 bytes, so text the merges never saw
(emoji, another script, control characters) still encodes, one byte per token at
worst: the "byte fallback" a character vocabulary cannot offer. There is no
normaliser, so decode(encode(text)) gives back exactly the text.

tokenizer.json is {"type": "bpe", "hf": <the Hugging Face tokenizer JSON>}: the
"type" field is what bricklm's load_tokenizer dispatches on; "hf" is readable
by `tokenizers.Tokenizer.from_str(json.dumps(d["hf"]))` in any other project.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from bricklm.errors import UserError

BYTES = 256  # the base alphabet: every byte value has a token before any merge


class BPETokenizer:
    """The same interface as CharTokenizer (vocab_size, encode, decode, to_dict, save, kind)."""

    kind = "bpe"

    def __init__(self, hf: Tokenizer):
        self.hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> BPETokenizer:
        """Learn merges from texts (streamed: `tokenizers` counts words, it never holds the whole corpus)."""
        if vocab_size < BYTES:
            raise UserError(f"BPE vocab_size must be at least {BYTES} (one token per byte), not {vocab_size}")
        hf = Tokenizer(models.BPE())
        # add_prefix_space=False and no normaliser: decoding gives back exactly the text.
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
            special_tokens=[],
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode_array(self, text: str) -> np.ndarray:
        """encode as an int64 numpy array; what prepare calls, once per document or chunk.

        encode_batch_fast skips the character offsets `encode` tracks, which nobody here
        reads: the same ids about twice as fast on long texts (tests/test_bpe.py compares).
        """
        return np.asarray(self.hf.encode_batch_fast([text])[0].ids, dtype=np.int64)

    def encode(self, text: str) -> list[int]:
        """Token ids of text; any text encodes (unseen characters fall back to their bytes)."""
        return self.hf.encode(text).ids

    def decode(self, ids) -> str:
        """Text of token ids: a list or other iterable of ints, or a 1-D tensor or array.

        A sequence that ends inside a multi-byte character decodes that character as U+FFFD;
        `bricklm sample` holds such a tail back until the rest arrives.
        """
        if hasattr(ids, "tolist"):
            if getattr(ids, "ndim", 1) != 1:
                raise ValueError(f"decode takes a 1-D sequence of ids, not shape {tuple(ids.shape)}")
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}")
        return self.hf.decode(ids, skip_special_tokens=False)

    def to_dict(self) -> dict:
        return {"type": self.kind, "hf": json.loads(self.hf.to_str())}

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        """Rebuild from to_dict() output; anything `tokenizers` cannot read is a UserError."""
        if not isinstance(d.get("hf"), dict):
            raise UserError('bpe tokenizer has no "hf" object (the Hugging Face tokenizer JSON)')
        try:
            return cls(Tokenizer.from_str(json.dumps(d["hf"])))
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception for bad JSON
            raise UserError(f"cannot read the bpe tokenizer: {e}") from None

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")

    def __eq__(self, other) -> bool:
        return isinstance(other, BPETokenizer) and self.hf.to_str() == other.hf.to_str()

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"
