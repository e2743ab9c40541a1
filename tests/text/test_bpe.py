"""Byte-level BPE (Hugging Face tokenizers) through prepare, train, sample and info."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.data import load_corpus
from bricklm.text.prepare import prepare
from bricklm.text.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer, tokenizer_from_dict
from conftest import TINY_FLAGS, TINY_TEXT

ODD = "naïve café e\u0301 🙂👩‍👩‍👧 漢字かな 한국어 \x00\x07\x1b[0m\t\r\n  trailing  \u200d\ufeff\U0010ffff"


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train([TINY_TEXT] * 3, vocab_size=400)


def quiet(*args, **kwargs):
    pass


def test_trained_vocabulary_is_bytes_plus_merges(bpe):
    assert 256 < bpe.vocab_size <= 400
    assert bpe.kind == "bpe"
    # Common words became single tokens: far fewer tokens than characters.
    assert len(bpe.encode(TINY_TEXT)) < len(TINY_TEXT) / 3


def test_any_unicode_round_trips_and_never_errors(bpe):
    ids = bpe.encode(ODD)
    assert bpe.decode(ids) == ODD
    assert max(ids) < bpe.vocab_size
    assert bpe.encode("") == [] and bpe.decode([]) == ""
    assert np.array_equal(bpe.encode_array(ODD), np.array(ids))


def test_fast_encode_array_equals_plain_encode(bpe):
    text = (TINY_TEXT + ODD + "  \n\n x\t\r\n") * 20
    assert bpe.encode_array(text).tolist() == bpe.hf.encode(text).ids == bpe.encode(text)


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_round_trip_property(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text == bpe.decode(bpe.encode_array(text))


def test_saved_as_tokenizer_json_with_a_type(bpe, tmp_path):
    bpe.save(tmp_path / "tokenizer.json")
    d = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert d["type"] == "bpe" and d["hf"]["model"]["type"] == "BPE"
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded == bpe and tokenizer_from_dict(bpe.to_dict()) == bpe
    assert loaded.encode(ODD) == bpe.encode(ODD)


def test_decode_rejects_ids_outside_the_vocabulary(bpe):
    with pytest.raises(ValueError, match="token ids must be in"):
        bpe.decode([bpe.vocab_size])


def test_prepare_bpe_tokens_decode_to_the_corpus(tmp_path):
    (tmp_path / "posts").mkdir()
    for i in range(4):
        (tmp_path / "posts" / f"p{i}.txt").write_text(f"Post {i} 🙂 漢字\n\n" + TINY_TEXT, encoding="utf-8")
    for split in ("documents", "tail"):
        out = tmp_path / split
        report = prepare(
            [tmp_path / "posts"], out, PrepareConfig(split=split, tokenizer="bpe", vocab_size=400), log=quiet
        )
        train, val, tok, meta = load_corpus(out)
        assert isinstance(tok, BPETokenizer) and meta["tokenizer"] == "bpe" and meta["vocab_size"] == tok.vocab_size
        assert report.train_tokens + report.val_tokens < report.characters / 2  # merges happened
        corpus = (out / "corpus.txt").read_text(encoding="utf-8")
        if split == "tail":
            assert tok.decode(train) + tok.decode(val) == corpus
            cut = int(0.9 * len(corpus))
            assert tok.decode(train) == corpus[:cut]  # the cut is in characters, as for char
        else:
            assert len(tok.decode(val)) > 0 and tok.decode(train).startswith("Post")


def test_char_stays_the_default(tmp_path):
    (tmp_path / "a.txt").write_text(TINY_TEXT)
    prepare([tmp_path / "a.txt"], tmp_path / "out", log=quiet)
    assert isinstance(load_tokenizer(tmp_path / "out" / "tokenizer.json"), CharTokenizer)


def test_vocab_size_below_the_byte_alphabet_is_a_user_error(tmp_path, capsys):
    (tmp_path / "a.txt").write_text(TINY_TEXT)
    with pytest.raises(UserError, match="at least 256"):
        prepare([tmp_path / "a.txt"], tmp_path / "out", PrepareConfig(tokenizer="bpe", vocab_size=100), log=quiet)
    assert not (tmp_path / "out").exists()
    assert (
        main(
            [
                "prepare",
                str(tmp_path / "a.txt"),
                "--out",
                str(tmp_path / "o"),
                "--tokenizer",
                "bpe",
                "--vocab-size",
                "10",
            ]
        )
        == 1
    )
    assert "bricklm: error: --vocab-size must be at least 256" in capsys.readouterr().err


def test_train_sample_info_work_with_bpe_and_unseen_prompts_fall_back_to_bytes(tmp_path, capsys):
    (tmp_path / "posts").mkdir()
    for i in range(4):
        (tmp_path / "posts" / f"p{i}.md").write_text(f"# Post {i}\n\n" + TINY_TEXT)
    data, run = tmp_path / "data", tmp_path / "run"
    args = ["prepare", str(tmp_path / "posts"), "--out", str(data), "--tokenizer", "bpe", "--vocab-size", "300"]
    assert main(args) == 0
    assert "BPE tokens" in capsys.readouterr().out
    assert main(["train", "--data", str(data), "--out", str(run), *TINY_FLAGS]) == 0
    capsys.readouterr()
    # Characters the corpus never had (emoji, CJK, a control character): bytes, not an error.
    prompt = "Zebra 🦓 漢\x07"
    assert main(["sample", "--run", str(run), "--prompt", prompt, "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.startswith(prompt)
    assert main(["info", "--run", str(run)]) == 0
    assert "vocabulary" in capsys.readouterr().out


def test_char_prompt_outside_the_vocabulary_is_still_the_clear_error(tiny_run, capsys):
    assert main(["sample", "--run", str(tiny_run), "--prompt", "🦓", "--max-new-tokens", "3"]) == 1
    assert "not in the vocabulary" in capsys.readouterr().err
