"""A run's tokenizer as Hugging Face `tokenizers` JSON and as a llama.cpp (GGUF) vocabulary, with the same ids.

Hugging Face (`hf_tokenizer`):
* char: a BPE model with no merges whose vocabulary is the characters, no pre-tokenizer and a
  Fuse decoder, so every character is one token with bricklm's id and decoding concatenates.
  A character outside the vocabulary is dropped (bricklm's encode raises instead).
* bpe: the run's own tokenizer JSON (bricklm trains it with `tokenizers`), unchanged.
* chat (fine-tuned runs): the base above plus the special tokens as special added tokens and the
  added characters as plain added tokens, in bricklm's order, so ids match.

llama.cpp (`gguf_vocab`) has no character tokenizer, but its byte-level BPE ("gpt2") can be made
one: each character is stored as its UTF-8 bytes in GPT-2's byte-to-character alphabet, and
merges rebuild every multi-byte character from its bytes. A merge's left side always starts
with a UTF-8 lead byte and its right side is a continuation byte, so no merge can join two
characters, and each character comes out as exactly one token. BPE runs keep their merges.
"""

from __future__ import annotations

import json

from tokenizers import AddedToken, Tokenizer, decoders, models

from bricklm.errors import UserError
from bricklm.text.tokenizer import ASSISTANT, END, ROLE_TOKEN, BPETokenizer, CharTokenizer, ChatTokenizer

# llama.cpp's token types (gguf.TokenType): plain, user-defined (matched in text), control (special).
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4


def split_chat(tok) -> tuple[object, list[str], list[str]]:
    """(base tokenizer, special tokens, added characters); a plain run has neither specials nor added chars."""
    if isinstance(tok, ChatTokenizer):
        return tok.base, list(tok.specials), list(tok.added_chars)
    return tok, [], []


def base_hf_tokenizer(base) -> Tokenizer:
    if isinstance(base, CharTokenizer):
        hf = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(base.chars)}, merges=[]))
        hf.decoder = decoders.Fuse()  # concatenate, not the default join-with-spaces
        return hf
    if isinstance(base, BPETokenizer):
        return Tokenizer.from_str(base.hf.to_str())
    raise UserError(f"cannot export a {type(base).__name__} tokenizer (bricklm knows char, bpe and chat)")


def hf_tokenizer(tok) -> Tokenizer:
    """The run's tokenizer as a `tokenizers.Tokenizer` that gives every piece bricklm's id."""
    base, specials, added = split_chat(tok)
    hf = base_hf_tokenizer(base)
    # Added in bricklm's order, each gets the next id: specials at base.vocab_size.., then added chars.
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    hf.add_tokens([AddedToken(c, special=False, normalized=False) for c in added])
    check_ids(hf, tok)
    return hf


def check_ids(hf: Tokenizer, tok) -> None:
    """A bug, not a user error, if any id differs: every later comparison depends on it."""
    base, specials, added = split_chat(tok)
    if hf.get_vocab_size(with_added_tokens=True) != tok.vocab_size:
        raise AssertionError(f"exported vocabulary has {hf.get_vocab_size()} tokens, the run {tok.vocab_size}")
    expected = {s: tok.special_ids[s] for s in specials} | {c: tok.encode(c)[0] for c in added}
    if isinstance(base, CharTokenizer):
        expected |= {c: i for i, c in enumerate(base.chars)}
    for piece, i in expected.items():
        if hf.token_to_id(piece) != i:
            raise AssertionError(f"exported tokenizer maps {piece!r} to {hf.token_to_id(piece)}, bricklm to {i}")


def chat_template() -> str:
    """Jinja for `apply_chat_template` that renders exactly what bricklm's chat_data.render_text renders."""
    branches = "".join(
        f"{'{%- if' if i == 0 else '{%- elif'} message['role'] == '{role}' -%}}{token}"
        for i, (role, token) in enumerate(ROLE_TOKEN.items())
    )
    return (
        "{%- for message in messages -%}"
        + branches
        + "{%- else -%}{{ raise_exception('unknown role: ' + message['role']) }}{%- endif -%}"
        + "{{ message['content'] }}"
        + END
        + "{%- endfor -%}"
        + "{%- if add_generation_prompt -%}"
        + ASSISTANT
        + "{%- endif -%}"
    )


def tokenizer_config(tok, block_size: int) -> dict:
    """tokenizer_config.json: the generic fast tokenizer, no space clean-up, and the chat template if any."""
    _, specials, _ = split_chat(tok)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,  # True would turn " ." into "." when decoding
        "model_max_length": block_size,
        "bos_token": None,
        "eos_token": END if specials else None,
        "pad_token": END if specials else None,
        "unk_token": None,
    }
    if specials:
        config["additional_special_tokens"] = [s for s in specials if s != END]
        config["chat_template"] = chat_template()
    return config


# --- llama.cpp -----------------------------------------------------------------------------------


def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte → character table: printable Latin-1 bytes stand for themselves, the rest get U+0100 on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


def byte_level(text: str, alphabet: dict[int, str]) -> str:
    return "".join(alphabet[b] for b in text.encode("utf-8"))


def char_merges(chars, alphabet: dict[int, str]) -> list[str]:
    """Merges that rebuild each multi-byte character from its bytes, left to right, without repeats."""
    merges: dict[str, None] = {}
    for c in chars:
        pieces = [alphabet[b] for b in c.encode("utf-8")]
        for k in range(1, len(pieces)):
            merges["".join(pieces[:k]) + " " + pieces[k]] = None
    return list(merges)


def bpe_tokens_and_merges(base: BPETokenizer) -> tuple[list[str], list[str]]:
    d = json.loads(base.hf.to_str())
    model = d["model"]
    if model.get("type") != "BPE" or d.get("added_tokens"):
        raise UserError("cannot export this BPE tokenizer to gguf: it is not a plain byte-level BPE")
    vocab = model["vocab"]
    tokens = [""] * len(vocab)
    for piece, i in vocab.items():
        tokens[i] = piece
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def gguf_vocab(tok) -> tuple[list[str], list[int], list[str]]:
    """(token texts by id, llama.cpp token types, merges) for tokenizer.ggml.* in a "gpt2" vocabulary."""
    base, specials, added = split_chat(tok)
    alphabet = byte_alphabet()
    if isinstance(base, CharTokenizer):
        tokens = [byte_level(c, alphabet) for c in base.chars]
        merges = char_merges(base.chars + added, alphabet)
        added_tokens, added_type = [byte_level(c, alphabet) for c in added], NORMAL
    elif isinstance(base, BPETokenizer):
        tokens, merges = bpe_tokens_and_merges(base)
        added_tokens, added_type = added, USER_DEFINED  # matched in the text before BPE, as bricklm does
    else:
        raise UserError(f"cannot export a {type(base).__name__} tokenizer (bricklm knows char, bpe and chat)")
    types = [NORMAL] * len(tokens) + [CONTROL] * len(specials) + [added_type] * len(added_tokens)
    tokens = tokens + specials + added_tokens
    if len(set(tokens)) != len(tokens):
        raise UserError("cannot export to gguf: two tokens of this vocabulary have the same text")
    return tokens, types, merges
