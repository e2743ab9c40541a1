"""Tokenizers: text to token ids and back, saved as JSON. Three kinds, one interface.

    tok = CharTokenizer.from_text("hello")     # one token per character, as in the blog
    tok = BPETokenizer.train(docs, 2000)        # byte-level BPE (Hugging Face tokenizers): any text encodes
    tok = ChatTokenizer(base)                   # a base plus finetune's special tokens after its ids
    tok.encode("hole"); tok.decode([1, 3, 2, 0]); tok.save("tokenizer.json"); load_tokenizer("tokenizer.json")

tokenizer.json is {"type": "char" | "bpe" | "chat", ...}; "type" is what `tokenizer_from_dict`
dispatches on. Every kind has vocab_size, encode, encode_array (numpy, for prepare), decode,
to_dict and save.

Character vocabularies are the distinct characters of the corpus in code point order; text with
a character outside it is refused with the characters listed. Byte-level BPE has the 256 bytes
as its base alphabet, so text the merges never saw still encodes, one byte per token at worst,
and there is no normaliser, so decode(encode(text)) == text. A chat tokenizer puts the special
tokens (<|system|>, <|user|>, <|assistant|>, <|end|>) and any characters the base lacks after
the base's ids; typed text never becomes a special token.

`grow` appends characters to a char or chat tokenizer (prepare --tokenizer-from, --unknown-chars add) and
`extends` says whether one tokenizer is another with tokens appended (train --init-from checks it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from bricklm.errors import UserError
from bricklm.files import atomic_write_json

BYTES = 256  # the BPE base alphabet: every byte value has a token before any merge
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIALS = (SYSTEM, USER, ASSISTANT, END)
ROLE_TOKEN = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}  # the chat template's role tokens


class Tokenizer:
    """What every kind shares: saving, equality by content, a readable repr."""

    kind = ""

    def to_dict(self) -> dict:
        raise NotImplementedError

    def save(self, path) -> None:
        atomic_write_json(path, self.to_dict())

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()


def _as_id_list(ids) -> list[int]:
    """A list, tensor or array of ids as a list of ints; a 2-D input is an error."""
    if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
        if getattr(ids, "ndim", 1) != 1:
            raise ValueError(f"decode takes a 1-D sequence of ids, not shape {tuple(ids.shape)}")
        ids = ids.tolist()
    return [int(i) for i in ids]


class CharTokenizer(Tokenizer):
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
        ids = _as_id_list(ids)
        if ids and (min(ids) < 0 or max(ids) >= len(self.chars)):
            raise ValueError(f"token ids must be in 0..{len(self.chars) - 1}")
        return "".join([self.chars[i] for i in ids])

    def token_bytes(self) -> np.ndarray:
        """The UTF-8 length of each id's text (what bits per byte divides by)."""
        return np.array([len(c.encode("utf-8", "surrogatepass")) for c in self.chars], dtype=np.int64)

    def to_dict(self) -> dict:
        return {"type": self.kind, "chars": list(self.chars)}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        chars = d.get("chars")
        if not isinstance(chars, list):
            raise UserError('char tokenizer has no "chars" list')
        try:
            return cls(chars)
        except ValueError as e:
            raise UserError(str(e)) from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class BPETokenizer(Tokenizer):
    """The same interface as CharTokenizer (vocab_size, encode, decode, to_dict, save, kind)."""

    kind = "bpe"

    def __init__(self, hf: HFTokenizer):
        self.hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> BPETokenizer:
        """Learn merges from texts (streamed: `tokenizers` counts words, it never holds the whole corpus)."""
        if vocab_size < BYTES:
            raise UserError(f"BPE vocab_size must be at least {BYTES} (one token per byte), not {vocab_size}")
        hf = HFTokenizer(models.BPE())
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
        reads: the same ids about twice as fast on long texts (tests/text/test_bpe.py compares).
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
        ids = _as_id_list(ids)
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}")
        return self.hf.decode(ids, skip_special_tokens=False)

    def token_bytes(self) -> np.ndarray:
        """The number of bytes each id stands for: byte-level tokens are spelt one character per byte."""
        return np.array([len(self.hf.id_to_token(i) or "") for i in range(self.vocab_size)], dtype=np.int64)

    def to_dict(self) -> dict:
        return {"type": self.kind, "hf": json.loads(self.hf.to_str())}

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        """Rebuild from to_dict() output; anything `tokenizers` cannot read is a UserError."""
        if not isinstance(d.get("hf"), dict):
            raise UserError('bpe tokenizer has no "hf" object (the Hugging Face tokenizer JSON)')
        try:
            return cls(HFTokenizer.from_str(json.dumps(d["hf"])))
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception for bad JSON
            raise UserError(f"cannot read the bpe tokenizer: {e}") from None

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


class ChatTokenizer(Tokenizer):
    """A base tokenizer plus special tokens (ids right after the base vocabulary) and, optionally,
    characters the base lacks (ids after the specials; see `missing_chars`).

    Works with any base that has encode(text) -> list[int], decode(ids) -> str, vocab_size and
    to_dict(); text runs without added characters go to base.encode whole, so a BPE base keeps
    its merges.
    """

    kind = "chat"

    def __init__(self, base, specials=SPECIALS, added_chars=()):
        if isinstance(base, ChatTokenizer):
            raise ValueError("a ChatTokenizer's base cannot itself be a ChatTokenizer")
        self.base, self.specials, self.added_chars = base, list(specials), list(added_chars)
        if len(set(self.specials)) != len(self.specials) or len(set(self.added_chars)) != len(self.added_chars):
            raise ValueError("special tokens and added characters must not repeat")
        n = base.vocab_size
        self.special_ids = {s: n + i for i, s in enumerate(self.specials)}
        first_added = n + len(self.specials)
        self._added_ids = {c: first_added + i for i, c in enumerate(self.added_chars)}
        self._id_to_piece = {i: s for s, i in self.special_ids.items()} | {i: c for c, i in self._added_ids.items()}

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(self.specials) + len(self.added_chars)

    def id(self, special: str) -> int:
        return self.special_ids[special]

    @property
    def end_id(self) -> int:
        return self.special_ids[END]

    def encode(self, text: str, unknown: str = "error") -> list[int]:
        """Ids of plain text (never special tokens). unknown="drop" leaves out characters nobody knows."""
        if unknown == "drop":  # each distinct character asked about once, not once per occurrence
            known = {c for c in set(text) if c in self._added_ids or can_encode(self.base, c)}
            text = "".join(c for c in text if c in known)
        ids: list[int] = []
        run_start = 0
        for i, c in enumerate(text):
            if c in self._added_ids:
                if i > run_start:
                    ids += self.base.encode(text[run_start:i])
                ids.append(self._added_ids[c])
                run_start = i + 1
        if run_start < len(text):
            ids += self.base.encode(text[run_start:])
        return ids

    def encode_array(self, text: str) -> np.ndarray:
        """encode as an int64 numpy array (what prepare calls)."""
        return np.asarray(self.encode(text), dtype=np.int64)

    def token_bytes(self) -> np.ndarray:
        """The base's byte lengths, then 0 for each special token (no text of the writer's), then each added
        character's UTF-8 length."""
        added = [len(c.encode("utf-8", "surrogatepass")) for c in self.added_chars]
        return np.concatenate([self.base.token_bytes(), np.zeros(len(self.specials), np.int64), added]).astype(np.int64)

    def decode(self, ids, skip_specials: bool = False) -> str:
        out, run = [], []
        n = self.base.vocab_size
        for i in _as_id_list(ids):
            if i < n:
                run.append(i)
                continue
            if run:
                out.append(self.base.decode(run))
                run = []
            if i not in self._id_to_piece:
                raise ValueError(f"token id {i} is outside the vocabulary (0..{self.vocab_size - 1})")
            if not (skip_specials and i in self._id_to_piece and self._id_to_piece[i] in self.special_ids):
                out.append(self._id_to_piece[i])
        if run:
            out.append(self.base.decode(run))
        return "".join(out)

    def to_dict(self) -> dict:
        return {
            "type": self.kind,
            "specials": list(self.specials),
            "added_chars": list(self.added_chars),
            "base": self.base.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ChatTokenizer:
        specials, added, base = d.get("specials"), d.get("added_chars", []), d.get("base")
        if not isinstance(specials, list) or not isinstance(added, list) or not isinstance(base, dict):
            raise UserError('chat tokenizer needs a "specials" list, an "added_chars" list and a "base" tokenizer')
        if base.get("type") == "chat":
            raise UserError("a chat tokenizer's base cannot itself be a chat tokenizer")
        try:
            return cls(tokenizer_from_dict(base), specials, added)
        except ValueError as e:
            raise UserError(str(e)) from None

    def __repr__(self) -> str:
        return f"ChatTokenizer(base={self.base!r}, specials={len(self.specials)}, added_chars={len(self.added_chars)})"


def can_encode(tokenizer, text: str) -> bool:
    try:
        tokenizer.encode(text)
    except (UserError, ValueError, KeyError):
        return False
    return True


def unknown_chars(tokenizer, chars) -> list[str]:
    """The characters of chars that tokenizer cannot encode, in code point order (none for byte-level BPE)."""
    if isinstance(tokenizer, BPETokenizer):
        return []  # every byte has a token: any character encodes
    return sorted(c for c in set(chars) if not can_encode(tokenizer, c))


def grow(tokenizer, chars) -> Tokenizer:
    """tokenizer with chars appended as new tokens after every id it has (so its ids stay what they were).

    A character tokenizer gets them at the end of its list, a chat tokenizer after its added characters;
    byte-level BPE has nothing to add (it encodes any text), so asking it to grow is a bug."""
    chars = list(chars)
    if not chars:
        return tokenizer
    if isinstance(tokenizer, CharTokenizer):
        return CharTokenizer(tokenizer.chars + chars)
    if isinstance(tokenizer, ChatTokenizer):
        return ChatTokenizer(tokenizer.base, tokenizer.specials, tokenizer.added_chars + chars)
    raise ValueError(f"a {tokenizer.kind} tokenizer encodes every character; there is nothing to add")


def extends(tokenizer, base) -> bool:
    """True if tokenizer is base, or base with tokens appended (grow): every id of base means what it did."""
    if type(tokenizer) is not type(base):
        return False
    if isinstance(base, CharTokenizer):
        return tokenizer.chars[: base.vocab_size] == base.chars
    if isinstance(base, ChatTokenizer):
        n = len(base.added_chars)
        same = tokenizer.base == base.base and tokenizer.specials == base.specials
        return same and tokenizer.added_chars[:n] == base.added_chars
    return tokenizer == base


_KINDS = {"char": CharTokenizer, "bpe": BPETokenizer, "chat": ChatTokenizer}


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from to_dict() output; bad content is a UserError."""
    if not isinstance(d, dict) or "type" not in d:
        raise UserError('tokenizer has no "type" field')
    kind = _KINDS.get(d["type"]) if isinstance(d["type"], str) else None
    if kind is None:
        raise UserError(f"unknown tokenizer type {d['type']!r}; this bricklm knows: {', '.join(_KINDS)}")
    return kind.from_dict(d)


def load_tokenizer(path) -> Tokenizer:
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
