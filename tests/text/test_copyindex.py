"""The copying meter's index (bricklm.text.copyindex) against a brute-force search, and the split text it
indexes (bricklm.text.splits) against what the token files hold."""

import random

import pytest

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text import copyindex
from bricklm.text.copyindex import CopyIndex, build_index, common_prefix
from bricklm.text.data import load_corpus
from bricklm.text.prepare import prepare
from bricklm.text.splits import read_meta, split_pieces

ALPHABET = "ab c\né🙂"  # few letters, so repeats are common; one- and multi-byte characters


def make_corpus(tmp_path, docs: dict[str, str], split="documents", tokenizer="char", vocab_size=300):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for name, text in docs.items():
        (src / name).write_text(text, encoding="utf-8")
    out = tmp_path / f"corpus-{split}-{tokenizer}"
    prepare([src], out, PrepareConfig(split=split, tokenizer=tokenizer, vocab_size=vocab_size), log=lambda *a: None)
    return out


def split_text(corpus, split: str) -> str:
    return "".join(p.text for p in split_pieces(corpus, read_meta(corpus), split))


def brute_matches(train: str, query: str) -> list[int]:
    """For each position of query, the longest string starting there that train contains (str's own search)."""
    out = []
    for k in range(len(query)):
        n = 0
        while k + n < len(query) and query[k : k + n + 1] in train:
            n += 1
        out.append(n)
    return out


def random_docs(rng: random.Random, count: int) -> dict[str, str]:
    return {f"d{i}.txt": "".join(rng.choices(ALPHABET, k=rng.randint(20, 200))).strip() + "x" for i in range(count)}


@pytest.mark.parametrize("split", ["documents", "tail"])
@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_the_split_text_is_what_the_token_files_hold(tmp_path, split, tokenizer):
    docs = random_docs(random.Random(1), 12)
    corpus = make_corpus(tmp_path, docs, split, tokenizer)
    train, val, tok, meta = load_corpus(corpus)
    assert meta["split"] == split
    assert split_text(corpus, "train") == tok.decode(train)
    assert split_text(corpus, "val") == tok.decode(val)


def test_split_text_refuses_a_corpus_that_disagrees_with_meta(tmp_path):
    corpus = make_corpus(tmp_path, {"a.txt": "hello there", "b.txt": "general kenobi"})
    (corpus / "corpus.txt").write_text("hello there\n\ngeneral kenobi!", encoding="utf-8")
    with pytest.raises(UserError, match="longer than meta.json says"):
        split_text(corpus, "train")


def test_the_suffix_array_sorts_every_suffix(tmp_path):
    corpus = make_corpus(tmp_path, random_docs(random.Random(2), 5))
    with build_index(corpus, tmp_path / "index") as index:
        data = bytes(index.text)
        assert data == split_text(corpus, "train").encode("utf-8")
        assert index.suffixes.tolist() == sorted(range(len(data)), key=lambda i: data[i:])


@pytest.mark.parametrize("seed", range(6))
def test_matches_agree_with_a_brute_force_search(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    if seed % 2:  # a short first pattern: long matches go through the search again with more of the query
        monkeypatch.setattr(copyindex, "FIRST_PATTERN", 4)
    corpus = make_corpus(tmp_path, random_docs(rng, 8), split=("documents", "tail")[seed % 2])
    train = split_text(corpus, "train")
    with build_index(corpus, tmp_path / "index") as index:
        for _ in range(5):
            start = rng.randrange(len(train))
            # A stretch copied from the training text between random letters, and an unknown character.
            query = "".join(rng.choices(ALPHABET, k=5)) + train[start : start + rng.randint(0, 60)] + "Z"
            query += "".join(rng.choices(ALPHABET, k=rng.randint(0, 30)))
            lengths, where = index.matches(query)
            assert lengths.tolist() == brute_matches(train, query), query
            for k, (n, pos) in enumerate(zip(lengths.tolist(), where.tolist(), strict=True)):
                if n:  # where points at the copy in the training text
                    found = index.text[pos : pos + len(query[k : k + n].encode())].decode()
                    assert found == query[k : k + n]


def test_measure_agrees_with_brute_force_coverage(tmp_path):
    rng = random.Random(7)
    corpus = make_corpus(tmp_path, random_docs(rng, 8))
    train = split_text(corpus, "train")
    with build_index(corpus, tmp_path / "index") as index:
        for min_span in (1, 3, 8):
            query = train[10:50] + "ZZ" + train[100:112] + "".join(rng.choices(ALPHABET, k=40))
            brute = brute_matches(train, query)
            covered = set()
            for k, n in enumerate(brute):
                if n >= min_span:
                    covered.update(range(k, k + n))
            c = index.measure(query, min_span)
            assert c.characters == len(query) and c.longest == max(brute) >= 40
            assert c.share == pytest.approx(len(covered) / len(query))
            assert c.start == brute.index(max(brute))
            assert sum(s["length"] for s in c.spans) >= len(covered)


def test_a_copied_span_names_its_document_and_where_in_it(tmp_path):
    planted = "my bank pin is 4096 and my cat is called ziggy stardust"
    docs = {f"post{i}.txt": f"post {i} says something else entirely, {i * 'z'} and more." for i in range(9)}
    docs["a-secret.txt"] = "first line of the secret note\n" + planted + "\nlast line"
    corpus = make_corpus(tmp_path, docs, split="tail")  # a-secret.txt is read first: in the training split
    query = "zz " + planted + " zz"  # in the training text: "\n" before the sentence and after it
    with build_index(corpus, tmp_path / "index") as index:
        c = index.measure(query, min_span=32)
        assert (c.longest, c.start) == (len(planted), 3)
        assert c.document.endswith("a-secret.txt") and c.offset == len("first line of the secret note\n")
        assert c.share == pytest.approx(len(planted) / len(query))
        assert [s["length"] for s in c.spans] == [len(planted)] and c.spans[0]["document"] == c.document
        assert c.line() == f"copied: longest 55 characters (from {c.document}), 90% of the text in spans of 32+"


def test_a_span_in_the_tail_splits_cut_document_counts_from_that_documents_start(tmp_path):
    docs = {"a.txt": "alpha " * 50, "b.txt": "the tail document starts here, then goes on to say a lot more about b"}
    corpus = make_corpus(tmp_path, docs, split="tail")
    train = split_text(corpus, "train")
    assert "the tail document" in train and not train.endswith("about b")  # b.txt is cut by the tail split
    start = train.index("the tail document")
    with build_index(corpus, tmp_path / "index") as index:
        c = index.measure(train[start:], min_span=20)  # the part of b.txt in the training split
        assert c.document.endswith("b.txt") and c.offset == 0 and c.longest == len(train) - start >= 20
        c = index.measure(train[start + 5 :], min_span=20)
        assert c.document.endswith("b.txt") and c.offset == 5


def test_the_chance_length_is_measured_on_held_out_windows(tmp_path):
    corpus = make_corpus(tmp_path, random_docs(random.Random(3), 30))
    with build_index(corpus, tmp_path / "index") as index:
        chance = index.info["chance"]
        assert chance["windows"] >= 1 and chance["median"] <= chance["chance_length"] <= chance["max"]
        assert index.chance_length == chance["chance_length"]
        windows = index.heldout(50, 3, seed=1)
        val = split_text(corpus, "val")
        assert len(windows) == 3 and all(len(w) == 50 and w in val for w in windows)


def test_a_damaged_or_missing_index_is_one_line(tmp_path):
    corpus = make_corpus(tmp_path, random_docs(random.Random(4), 5))
    build_index(corpus, tmp_path / "index").close()
    (tmp_path / "index" / "suffixes.bin").write_bytes(b"\0" * 8)
    with pytest.raises(UserError, match="not the size"):
        CopyIndex.open(tmp_path / "index")
    with pytest.raises(UserError, match="no copying index"):
        CopyIndex.open(tmp_path / "nothing")


def test_common_prefix():
    for a, b in [(b"", b"x"), (b"abc", b"abd"), (b"a" * 100, b"a" * 100), (b"a" * 100 + b"b", b"a" * 100 + b"c")]:
        expected = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        assert common_prefix(a, b) == expected


# --- the privacy guard's check (bricklm.text.copyguard) and excerpts ---------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_the_guard_refuses_exactly_what_would_make_a_span_past_its_limit(tmp_path, seed):
    from bricklm.text.copyguard import CopyGuard

    rng = random.Random(seed)
    corpus = make_corpus(tmp_path, random_docs(rng, 8))
    train = split_text(corpus, "train")
    with build_index(corpus, tmp_path / "index") as index:
        for most in (3, 8):
            start = rng.randrange(len(train))
            before = "".join(rng.choices(ALPHABET, k=4)) + train[start : start + rng.randint(0, 12)]
            guard, text = CopyGuard(index, most, before), ""
            # Continue mostly with the training text (pieces of 1-3 characters), sometimes with random ones.
            copy = start + len(before) - 4
            for _ in range(40):
                piece = train[copy : copy + rng.randint(1, 3)] if rng.random() < 0.8 else rng.choice(ALPHABET)
                piece = piece or "a"
                whole = before[-most:] + text + piece
                # Brute force: the longest span ending inside the new piece.
                ends = range(len(whole) - len(piece), len(whole))
                longest = max(max(n for n in range(e + 2) if whole[e + 1 - n : e + 1] in train) for e in ends)
                assert guard.add(piece) == (longest <= most), (before, text, piece)
                if longest <= most:
                    text += piece
                    copy += len(piece)
                else:
                    copy = rng.randrange(len(train))
            assert max(brute_matches(train, before[-most:] + text), default=0) <= most


def test_an_excerpt_is_the_text_around_a_position_within_its_document(tmp_path):
    docs = {"a.txt": "ab " * 40, "b.txt": "the second document 🙂 starts here and goes on"}
    corpus = make_corpus(tmp_path, docs, split="tail")
    with build_index(corpus, tmp_path / "index") as index:
        position = bytes(index.text).index(b"second")
        out = index.excerpt(position, 6, 12)
        assert out["text"] == "second" and out["before"] == "the " and out["after"] == " document 🙂 "
        assert out["document"].endswith("b.txt") and out["offset"] == 4
        emoji = bytes(index.text).index("🙂".encode())
        assert index.excerpt(emoji + 2, 1, 0)["text"] == "🙂"  # from inside a character: its start
        with pytest.raises(ValueError):
            index.excerpt(len(index.text), 1, 1)
