"""Token files and batches: what `prepare` writes and what `train` reads.

A corpus folder (made by `bricklm prepare`) holds corpus.txt, tokenizer.json,
train.bin and val.bin (raw token ids, uint16 or uint32) and meta.json. Loading checks what
meta.json promises: the vocabulary and token counts, every id below the vocabulary size, and
(for corpora under HASH_LIMIT bytes, where it costs well under a second) each file's sha256.

    train, val, tok, meta = load_corpus("data/blog")
    check_split_length(val, block_size=128, name="val")
    bits_per_byte(loss, tokens_per_byte(meta, {"val": val}, tok)["val"])   # a loss per token in bits per byte
    x, y = get_batch(train, 32, 128, torch.Generator().manual_seed(0))  # (32, 128) int64 each
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from bricklm.errors import UserError
from bricklm.files import sha256_file
from bricklm.text.tokenizer import Tokenizer, load_tokenizer

CORPUS_FILES = ("meta.json", "tokenizer.json", "train.bin", "val.bin")  # what training needs
CORPUS_NAMES = ("corpus.txt", "tokenizer.json", "train.bin", "val.bin", "meta.json")  # all a corpus folder holds
HASH_LIMIT = 256 << 20  # bytes: a corpus up to this size has every file checked against its sha256 on load


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab_size <= 65535), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


class TokenWriter:
    """Appends token ids to a .bin file, hashing as it goes; the file appears only on a clean close.

    Use as `with TokenWriter(path, vocab_size) as w: w.write(ids)`; then read w.count and w.sha256.
    """

    def __init__(self, path, vocab_size: int):
        self.path = Path(path)
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self.count = 0
        self._hash = hashlib.sha256()
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._file = open(self._tmp, "wb")

    def write(self, ids) -> None:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}")
        data = ids.astype(self.dtype.newbyteorder("<"), copy=False).tobytes()  # little-endian on disk
        self._file.write(data)
        self._hash.update(data)
        self.count += ids.size

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self, keep: bool = True) -> None:
        self._file.close()
        if keep:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(keep=exc_type is None)


def write_tokens(path, ids, vocab_size) -> None:
    """Write ids as a raw array of uint16 (or uint32 when vocab_size > 65535)."""
    with TokenWriter(path, vocab_size) as w:
        w.write(ids)


def load_tokens(path) -> np.ndarray:
    """Memory-map a .bin file read-only.

    The dtype comes from meta.json beside it, else from the vocabulary size in
    tokenizer.json beside it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"token file not found: {path}")
    meta_path, tok_path = path.parent / "meta.json", path.parent / "tokenizer.json"
    if meta_path.is_file():
        meta = _read_meta(meta_path)
        if "dtype" not in meta:
            raise UserError(f'{meta_path} has no "dtype"; run `bricklm prepare` again')
        try:
            dtype = np.dtype(meta["dtype"])
        except TypeError:
            raise UserError(f"{meta_path}: unknown dtype {meta['dtype']!r}") from None
    elif tok_path.is_file():
        dtype = token_dtype(load_tokenizer(tok_path).vocab_size)
    else:
        raise UserError(f"cannot tell the dtype of {path}: no meta.json or tokenizer.json beside it")
    dtype = dtype.newbyteorder("<")
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise UserError(f"{path} is {size} bytes, not whole {dtype.name} tokens; run `bricklm prepare` again")
    if size == 0:
        return np.empty(0, dtype=dtype)  # mmap cannot map an empty file
    return np.memmap(path, dtype=dtype, mode="r")


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path} is not a JSON object")
    return meta


def load_corpus(data_dir) -> tuple[np.ndarray, np.ndarray, Tokenizer, dict]:
    """Open a prepared corpus folder: (train tokens, val tokens, tokenizer, meta).

    Anything that disagrees with meta.json (a file changed or mixed in from another prepare, a token
    id outside the vocabulary) is a UserError naming the file.
    """
    data_dir = Path(data_dir)
    hint = f"run `bricklm prepare SRC... --out {data_dir}` first"
    if not data_dir.is_dir():
        raise UserError(f"corpus folder not found: {data_dir}; {hint}")
    missing = [name for name in CORPUS_FILES if not (data_dir / name).is_file()]
    if missing:
        raise UserError(f"{data_dir} is not a complete corpus (missing {', '.join(missing)}); {hint}")
    meta = _read_meta(data_dir / "meta.json")
    _check_hashes(data_dir, meta)
    tokenizer = load_tokenizer(data_dir / "tokenizer.json")
    if meta.get("vocab_size", tokenizer.vocab_size) != tokenizer.vocab_size:
        raise UserError(
            f"{data_dir}: meta.json says vocab_size {meta['vocab_size']} but tokenizer.json has "
            f"{tokenizer.vocab_size}; run `bricklm prepare` again"
        )
    splits = []
    for name in ("train", "val"):
        path = data_dir / f"{name}.bin"
        tokens = load_tokens(path)
        expected = meta.get(f"{name}_tokens", len(tokens))
        if expected != len(tokens):
            raise UserError(
                f"{data_dir}: {name}.bin has {len(tokens)} tokens but meta.json says {expected}; "
                "run `bricklm prepare` again"
            )
        top = int(tokens.max()) if len(tokens) else 0  # one pass over the file; an id past the end crashes training
        if top >= tokenizer.vocab_size:
            raise UserError(
                f"{path} holds token id {top}, but the vocabulary has {tokenizer.vocab_size} tokens "
                f"(ids 0..{tokenizer.vocab_size - 1}); the file is damaged: run `bricklm prepare` again"
            )
        splits.append(tokens)
    return splits[0], splits[1], tokenizer, meta


def _check_hashes(data_dir: Path, meta: dict) -> None:
    """Each file meta.json lists a sha256 for must match it, when the corpus is small enough to hash cheaply."""
    hashes = meta.get("sha256", {})
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise UserError(f"{data_dir / 'meta.json'}: its sha256 entry is not a table of hashes; run prepare again")
    present = {name: data_dir / name for name in hashes if name in CORPUS_NAMES and (data_dir / name).is_file()}
    if sum(p.stat().st_size for p in present.values()) > HASH_LIMIT:
        return  # sizes, token counts and ids are still checked
    for name, path in present.items():
        if sha256_file(path) != hashes[name]:
            raise UserError(
                f"{path} does not match the sha256 in meta.json: it was changed, or mixed in from another "
                f"prepare, since prepare wrote it; run `bricklm prepare ... --out {data_dir} --overwrite` again"
            )


def split_bytes(tokens: np.ndarray, tokenizer: Tokenizer, chunk: int = 1 << 22) -> int:
    """UTF-8 bytes of the text the tokens spell: each id's byte length, counted a chunk at a time (any size)."""
    lengths = tokenizer.token_bytes()
    total = 0
    for start in range(0, len(tokens), chunk):
        counts = np.bincount(np.asarray(tokens[start : start + chunk], dtype=np.int64), minlength=len(lengths))
        total += int(counts[: len(lengths)] @ lengths)
    return total


def tokens_per_byte(meta: dict, splits: dict[str, np.ndarray], tokenizer: Tokenizer) -> dict[str, float]:
    """{"train": ..., "val": ...}: tokens per UTF-8 byte of each split's text, from meta.json's train_bytes and
    val_bytes (prepare writes them), else counted from the tokens (a corpus prepared before they existed)."""
    out = {}
    for name, tokens in splits.items():
        nbytes = meta.get(f"{name}_bytes")
        if not isinstance(nbytes, int) or isinstance(nbytes, bool):
            nbytes = split_bytes(tokens, tokenizer)
        out[name] = len(tokens) / nbytes if nbytes else 0.0
    return out


def bits_per_byte(loss: float, tokens_per_byte: float) -> float:
    """A loss in nats per token as bits per UTF-8 byte of text: loss / ln 2 x tokens per byte.

    Comparable across tokenizers (a character, a BPE token), as nanochat reports it; for ASCII text and a
    character tokenizer it is loss / ln 2.
    """
    return loss / math.log(2) * tokens_per_byte


def check_split_length(tokens, block_size, name) -> None:
    """A split must hold at least one window of block_size + 1 tokens (inputs plus the shifted targets)."""
    if len(tokens) < block_size + 1:
        raise UserError(
            f"the {name} split has {len(tokens)} tokens, fewer than block_size + 1 = {block_size + 1}; "
            "use a smaller --block-size or more text"
        )


def split_documents(lengths: list[int], val_fraction: float, seed: int) -> list[int]:
    """Indices (sorted) of the documents to hold out for validation.

    Walks the documents in an order shuffled by seed, holding each out until
    at least val_fraction of the characters are held out. A document that
    would put more than half the characters in validation is passed over, so
    one huge post cannot leave training with next to nothing.
    """
    total = sum(lengths)
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    held_out, held = [], 0
    for i in order:
        if held >= val_fraction * total:
            break
        if held + lengths[i] <= total / 2:
            held_out.append(i)
            held += lengths[i]
    return sorted(held_out)


def tail_split_index(n_chars: int, val_fraction: float) -> int:
    """Where the tail split cuts: the blog's n = int(0.9 * len(data)) for val_fraction 0.1."""
    return int((1 - val_fraction) * n_chars)


def as_tensor(tokens: np.ndarray) -> torch.Tensor:
    """A torch view of the token array without copying it (a memmap stays on disk)."""
    if isinstance(tokens, torch.Tensor):
        return tokens
    if not tokens.dtype.isnative:
        tokens = tokens.astype(tokens.dtype.newbyteorder("="))
    with warnings.catch_warnings():
        # The memmap is read-only and torch warns about that; we only ever read from the view.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(tokens)


def get_batch(
    tokens: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator, device="cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size random windows of block_size tokens (x) and the same windows shifted by one (y).

    Windows start anywhere, with replacement, as in the blog; the result
    depends only on the generator's state. Both tensors are int64.
    """
    if len(tokens) < block_size + 1:
        check_split_length(tokens, block_size, "given")
    ix = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
    return batch_at(tokens, ix, block_size, device)


def batch_at(tokens: np.ndarray, ix: torch.Tensor, block_size: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The windows starting at ix (x) and the same shifted by one (y); get_batch draws ix at random."""
    index = ix[:, None] + torch.arange(block_size + 1)  # (batch_size, block_size + 1)
    windows = as_tensor(tokens)[index].to(torch.int64)  # gather first, widen only what we took
    x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # a loss may .view() them
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)
