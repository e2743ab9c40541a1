"""Character tokenizer (bricklm.text.tokenizer)."""

import json

import numpy as np
import pytest
import torch

from bricklm.errors import UserError
from bricklm.text.tokenizer import CharTokenizer, load_tokenizer, tokenizer_from_dict

ODD_TEXT = "naïve cafe\u0301 🙂 — 𝔘𝔫𝔦 ‮rtl‬ tab\there\nline\r\n\x00 末"


def test_vocabulary_is_sorted_unique_characters():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.vocab_size == 8
    assert tok.kind == "char"
    assert tok.encode("hold") == [3, 5, 4, 1]


def test_round_trip_with_odd_unicode():
    tok = CharTokenizer.from_text(ODD_TEXT)
    ids = tok.encode(ODD_TEXT)
    assert len(ids) == len(ODD_TEXT)  # emoji and astral characters are one token, combining marks their own
    assert tok.decode(ids) == ODD_TEXT


def test_encode_matches_a_plain_dictionary_lookup():
    tok = CharTokenizer(["z", "a", "🙂", "\u0301", "m"])  # ids follow list order, even unsorted
    text = "a🙂zm\u0301a"
    stoi = {c: i for i, c in enumerate(tok.chars)}
    assert tok.encode(text) == [stoi[c] for c in text]
    assert tok.encode("") == []


def test_decode_accepts_lists_iterables_tensors_and_arrays():
    tok = CharTokenizer.from_text("abc")
    assert tok.decode([0, 1, 2]) == "abc"
    assert tok.decode(iter([2, 1])) == "cb"
    assert tok.decode(torch.tensor([2, 0])) == "ca"
    assert tok.decode(np.array([1, 1], dtype=np.uint16)) == "bb"
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="0..2"):
        tok.decode([3])


def test_unknown_characters_are_all_listed_once():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UserError) as e:
        tok.encode("abé🙂é\n")
    assert str(e.value) == ("prompt has characters not in the vocabulary: 'é' (U+00E9), '🙂' (U+1F642), '\\n' (U+000A)")


def test_lone_surrogate_is_reported_not_crashed_on():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UserError, match=r"U\+DCFF"):
        tok.encode("a\udcff")


def test_bad_vocabularies_are_rejected():
    with pytest.raises(ValueError, match="duplicates"):
        CharTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab"])


def test_save_and_load_round_trip(tmp_path):
    tok = CharTokenizer.from_text(ODD_TEXT)
    tok.save(tmp_path / "tokenizer.json")
    data = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert data == {"type": "char", "chars": tok.chars}
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded == tok
    assert loaded.decode(loaded.encode(ODD_TEXT)) == ODD_TEXT
    assert tokenizer_from_dict(tok.to_dict()) == tok


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read tokenizer"),
        ('{"type": "wordpiece", "vocab": []}', "unknown tokenizer type 'wordpiece'"),
        ('{"type": "bpe", "merges": []}', 'bpe tokenizer has no "hf" object'),
        ('{"type": "bpe", "hf": {"model": 3}}', "cannot read the bpe tokenizer"),
        ('{"chars": ["a"]}', 'no "type" field'),
        ('{"type": "char"}', 'no "chars" list'),
        ('{"type": "char", "chars": ["a", "a"]}', "duplicates"),
    ],
)
def test_bad_tokenizer_files_are_user_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as e:
        load_tokenizer(path)
    assert str(path) in str(e.value)


def test_missing_tokenizer_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="tokenizer file not found: .*nope.json"):
        load_tokenizer(tmp_path / "nope.json")
