"""Token files, splits and batches (bricklm.text.data)."""

import json

import numpy as np
import pytest
import torch

from bricklm.errors import UserError
from bricklm.text.data import (
    check_split_length,
    get_batch,
    load_corpus,
    load_tokens,
    split_documents,
    tail_split_index,
    token_dtype,
    write_tokens,
)
from bricklm.text.tokenizer import CharTokenizer

# ---------------------------------------------------------------- token files


def test_dtype_is_uint16_until_ids_need_more():
    assert token_dtype(107) == np.uint16
    assert token_dtype(65535) == np.uint16
    assert token_dtype(65536) == np.uint32


def test_write_tokens_uses_uint16_for_small_vocabularies(tmp_path):
    write_tokens(tmp_path / "t.bin", [0, 5, 106], vocab_size=107)
    assert (tmp_path / "t.bin").read_bytes() == np.array([0, 5, 106], dtype="<u2").tobytes()


def test_write_tokens_uses_uint32_for_large_vocabularies(tmp_path):
    write_tokens(tmp_path / "t.bin", [0, 70000], vocab_size=70001)
    assert (tmp_path / "t.bin").read_bytes() == np.array([0, 70000], dtype="<u4").tobytes()


def test_write_tokens_rejects_ids_outside_the_vocabulary(tmp_path):
    with pytest.raises(ValueError):
        write_tokens(tmp_path / "t.bin", [0, 10], vocab_size=10)
    assert not (tmp_path / "t.bin").exists()


def test_load_tokens_takes_dtype_from_meta(tmp_path):
    write_tokens(tmp_path / "t.bin", [1, 70000, 3], vocab_size=70001)
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint32"}))
    tokens = load_tokens(tmp_path / "t.bin")
    assert isinstance(tokens, np.memmap) and not tokens.flags.writeable
    assert tokens.tolist() == [1, 70000, 3]


def test_load_tokens_takes_dtype_from_tokenizer_without_meta(tmp_path):
    CharTokenizer.from_text("abc").save(tmp_path / "tokenizer.json")
    write_tokens(tmp_path / "t.bin", [2, 0, 1], vocab_size=3)
    tokens = load_tokens(tmp_path / "t.bin")
    assert tokens.dtype == np.uint16 and tokens.tolist() == [2, 0, 1]


def test_load_tokens_errors(tmp_path):
    with pytest.raises(UserError, match="token file not found"):
        load_tokens(tmp_path / "none.bin")
    (tmp_path / "t.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(UserError, match="cannot tell the dtype"):
        load_tokens(tmp_path / "t.bin")
    (tmp_path / "meta.json").write_text('{"dtype": "uint16"}')
    with pytest.raises(UserError, match="not whole uint16 tokens"):
        load_tokens(tmp_path / "t.bin")


def test_load_tokens_of_an_empty_file_is_empty(tmp_path):
    (tmp_path / "meta.json").write_text('{"dtype": "uint16"}')
    (tmp_path / "t.bin").write_bytes(b"")
    assert len(load_tokens(tmp_path / "t.bin")) == 0


# ---------------------------------------------------------------- corpus folders


def _corpus(path, train=(0, 1, 2, 1), val=(2, 0)):
    path.mkdir(exist_ok=True)
    CharTokenizer.from_text("abc").save(path / "tokenizer.json")
    write_tokens(path / "train.bin", list(train), 3)
    write_tokens(path / "val.bin", list(val), 3)
    meta = {"dtype": "uint16", "vocab_size": 3, "train_tokens": len(train), "val_tokens": len(val)}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_load_corpus_returns_splits_tokenizer_and_meta(tmp_path):
    train, val, tok, meta = load_corpus(_corpus(tmp_path / "c"))
    assert train.tolist() == [0, 1, 2, 1] and val.tolist() == [2, 0]
    assert tok.decode(train) == "abcb"
    assert meta["vocab_size"] == 3


def test_load_corpus_missing_folder(tmp_path):
    with pytest.raises(UserError, match="corpus folder not found: .*nowhere.*bricklm prepare"):
        load_corpus(tmp_path / "nowhere")


def test_load_corpus_names_the_missing_files(tmp_path):
    path = _corpus(tmp_path / "c")
    (path / "val.bin").unlink()
    (path / "meta.json").unlink()
    with pytest.raises(UserError, match=r"missing meta\.json, val\.bin\); run `bricklm prepare"):
        load_corpus(path)


def test_load_corpus_catches_files_that_disagree_with_meta(tmp_path):
    path = _corpus(tmp_path / "c")
    write_tokens(path / "train.bin", [0, 1], 3)
    with pytest.raises(UserError, match="train.bin has 2 tokens but meta.json says 4"):
        load_corpus(path)
    path = _corpus(tmp_path / "d")
    CharTokenizer.from_text("abcd").save(path / "tokenizer.json")
    with pytest.raises(UserError, match="vocab_size 3 but tokenizer.json has 4"):
        load_corpus(path)


def test_load_corpus_bad_meta_json(tmp_path):
    path = _corpus(tmp_path / "c")
    (path / "meta.json").write_text("{oops")
    with pytest.raises(UserError, match="cannot read .*meta.json"):
        load_corpus(path)


def test_check_split_length_message():
    check_split_length(np.zeros(129), 128, "val")
    with pytest.raises(UserError) as e:
        check_split_length(np.zeros(50), 128, "val")
    assert str(e.value) == (
        "the val split has 50 tokens, fewer than block_size + 1 = 129; use a smaller --block-size or more text"
    )


# ---------------------------------------------------------------- splits


def test_document_split_holds_out_whole_documents_up_to_the_fraction():
    lengths = [100] * 50
    held = split_documents(lengths, 0.1, seed=1337)
    assert len(held) == 5  # exactly reaches 10% of the characters
    assert held == sorted(set(held))


def test_document_split_is_seeded():
    lengths = list(range(10, 110))
    assert split_documents(lengths, 0.1, seed=1) == split_documents(lengths, 0.1, seed=1)
    assert split_documents(lengths, 0.1, seed=1) != split_documents(lengths, 0.1, seed=2)


def test_document_split_reaches_the_fraction_and_never_more_than_half():
    for seed in range(20):
        lengths = [5, 1000, 7, 300, 20, 1, 60]
        held = split_documents(lengths, 0.2, seed)
        held_chars = sum(lengths[i] for i in held)
        assert 0.2 * sum(lengths) <= held_chars <= sum(lengths) / 2
        assert 1 not in held  # the 1000-character post alone is more than half


def test_tail_split_index_matches_the_blog():
    assert tail_split_index(363859, 0.1) == int(0.9 * 363859)
    assert tail_split_index(100, 0.25) == 75


# ---------------------------------------------------------------- batches


def _reference_batch(tokens, batch_size, block_size, generator):
    """The plain version: one window at a time."""
    ix = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
    xs, ys = [], []
    for i in ix.tolist():
        xs.append(torch.tensor(tokens[i : i + block_size].astype(np.int64)))
        ys.append(torch.tensor(tokens[i + 1 : i + 1 + block_size].astype(np.int64)))
    return torch.stack(xs), torch.stack(ys)


@pytest.mark.parametrize("vocab_size", [200, 70000])
def test_get_batch_agrees_with_a_plain_loop(tmp_path, vocab_size):
    rng = np.random.default_rng(0)
    write_tokens(tmp_path / "t.bin", rng.integers(0, vocab_size, 1000), vocab_size)
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": str(np.dtype(token_dtype(vocab_size)))}))
    tokens = load_tokens(tmp_path / "t.bin")
    x, y = get_batch(tokens, 8, 16, torch.Generator().manual_seed(3))
    ref_x, ref_y = _reference_batch(tokens, 8, 16, torch.Generator().manual_seed(3))
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)


def test_get_batch_targets_are_inputs_shifted_by_one():
    tokens = np.arange(500, dtype=np.uint16)  # each window is a run, so the shift is visible
    x, y = get_batch(tokens, 4, 32, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y, x + 1)
    assert y.is_contiguous()
    assert int(y.max()) <= 499


def test_get_batch_is_deterministic_given_the_generator():
    tokens = np.random.default_rng(1).integers(0, 100, 2000).astype(np.uint16)
    a = get_batch(tokens, 4, 8, torch.Generator().manual_seed(42))
    b = get_batch(tokens, 4, 8, torch.Generator().manual_seed(42))
    c = get_batch(tokens, 4, 8, torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_get_batch_reaches_the_last_token():
    tokens = np.arange(10, dtype=np.uint16)
    x, y = get_batch(tokens, 200, 9, torch.Generator().manual_seed(0))
    assert torch.equal(x[0], torch.arange(9)) and torch.equal(y[0], torch.arange(1, 10))


def test_get_batch_on_too_short_split_is_a_user_error():
    with pytest.raises(UserError, match="fewer than block_size"):
        get_batch(np.arange(8, dtype=np.uint16), 2, 8, torch.Generator())


# ---------------------------------------------------------------- bits per byte


def test_bits_per_byte_is_loss_over_ln2_times_tokens_per_byte():
    import math

    from bricklm.text.data import bits_per_byte, split_bytes

    text = "aé🙂 b"  # 1 + 2 + 4 + 1 + 1 bytes in UTF-8, 5 characters
    tok = CharTokenizer.from_text(text)
    tokens = np.array(tok.encode(text * 3), dtype=np.uint16)
    assert split_bytes(tokens, tok) == 3 * 9 == len((text * 3).encode("utf-8"))
    assert split_bytes(tokens, tok, chunk=4) == 27  # counted a chunk at a time, the same
    assert bits_per_byte(2.0, 15 / 27) == pytest.approx(2.0 / math.log(2) * 15 / 27)
    assert bits_per_byte(math.log(2), 1.0) == pytest.approx(1.0)  # one nat-coin per byte is one bit


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_prepare_records_each_splits_bytes_and_old_corpora_count_them(tmp_path, kind):
    from bricklm.config import PrepareConfig
    from bricklm.text.data import tokens_per_byte
    from bricklm.text.prepare import prepare

    src = tmp_path / "notes.txt"
    src.write_text("Café au lait, s'il vous plaît 🙂.\n" * 40 + "Ünïcödé at the end.\n" * 5, encoding="utf-8")
    out = tmp_path / "corpus"
    prepare([src], out, PrepareConfig(split="tail", tokenizer=kind, vocab_size=300), log=lambda *a: None)
    train, val, tok, meta = load_corpus(out)
    assert meta["train_bytes"] == len(tok.decode(train).encode("utf-8"))
    assert meta["val_bytes"] == len(tok.decode(val).encode("utf-8"))
    ratio = tokens_per_byte(meta, {"train": train, "val": val}, tok)
    old = {k: v for k, v in meta.items() if not k.endswith("_bytes")}  # a corpus prepared before bpb
    assert tokens_per_byte(old, {"train": train, "val": val}, tok) == ratio
    assert ratio["train"] == len(train) / meta["train_bytes"] < 1  # accents and emoji take more than a byte
