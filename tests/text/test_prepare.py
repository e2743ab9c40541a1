"""The prepare pipeline end to end (bricklm.text.prepare)."""

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from bricklm.cli import build_parser
from bricklm.cli import prepare as prepare_command
from bricklm.cli.prepare import prepare_config
from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.recipes import load_config
from bricklm.text.data import load_corpus
from bricklm.text.prepare import prepare


def quiet(*_):
    pass


FIRST_POST = """---
layout: post
title: "First post"
tags: [a, b]
---
Welcome to my **blog**. I wrote about [Jekyll](https://jekyllrb.com) and
[other things][other] on my site{% if site.comments %} with comments{% endif %}.
Posted in {{ page.category }}

![screenshot](/assets/shot.png)

{% highlight ruby %}
def hello
  puts "hi"
end
{% endhighlight %}

<div class="note">A note with <em>emphasis</em> &amp; an entity.</div>
<!-- TODO: finish this -->

---

After the rule, the post goes on.\r
{% include footer.html %}



[other]: https://example.com/other
"""

FIRST_POST_CLEAN = """Welcome to my blog. I wrote about Jekyll and
other things on my site with comments.
Posted in

A note with emphasis & an entity.

---

After the rule, the post goes on."""


def make_jekyll_site(root):
    """A small Jekyll _posts folder with the usual mess; returns the folder."""
    posts = root / "_posts"
    (posts / "drafts").mkdir(parents=True)
    (posts / "images").mkdir()
    (posts / "2020-01-01-first.md").write_text(FIRST_POST, encoding="utf-8", newline="")
    (posts / "2020-02-01-second.markdown").write_bytes(
        "---\ntitle: Old\n---\nIt’s an “old” post — café.\n".encode("cp1252")
    )
    (posts / "2020-03-01-third.html").write_text(
        '---\nlayout: page\n---\n<h1>About</h1>\n<p>I write <a href="/x">here</a>.</p>\n'
    )
    (posts / "binary.md").write_bytes(b"\x00\x01\x02 not text")
    os.symlink(posts / "missing.md", posts / "dead.md")
    (posts / "drafts" / "draft.md").write_text("Draft text.\n")
    (posts / "images" / "logo.png").write_bytes(b"\x89PNG")
    (posts / "notes.txt").write_text("Plain notes <kept> as written.\r\n")
    return posts


EXPECTED_CORPUS = "\n\n".join(
    [
        FIRST_POST_CLEAN,
        "It’s an “old” post — café.",
        "About\n\nI write here.",
        "Draft text.",
        "Plain notes <kept> as written.",
    ]
)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_jekyll_folder_end_to_end(tmp_path):
    posts = make_jekyll_site(tmp_path)
    out = tmp_path / "data"
    report = prepare([posts], out, PrepareConfig(split="tail"), log=quiet)

    corpus = (out / "corpus.txt").read_text(encoding="utf-8")
    assert corpus == EXPECTED_CORPUS

    assert [f["path"] for f in report.files_read] == [
        str(posts / name)
        for name in [
            "2020-01-01-first.md",
            "2020-02-01-second.markdown",
            "2020-03-01-third.html",
            "drafts/draft.md",
            "notes.txt",
        ]
    ]
    assert report.files_read[1]["note"] == "decoded as cp1252 (not valid UTF-8)"
    assert report.files_skipped == [
        {"path": str(posts / "dead.md"), "reason": "broken symlink"},
        {"path": str(posts / "binary.md"), "reason": "binary (NUL byte in the first 8 KB)"},
    ]
    assert report.files_ignored == {"extension": 1} and report.ignored_extensions == {".png": 1}
    assert report.documents == 5
    assert report.characters == len(corpus)
    assert report.vocab_size == len(set(corpus))
    assert report.train_tokens + report.val_tokens == len(corpus)

    train, val, tok, meta = load_corpus(out)
    assert tok.decode(train) + tok.decode(val) == corpus
    hashed = ["corpus.txt", "tokenizer.json", "train.bin", "val.bin"]
    assert meta["sha256"] == {name: sha256(out / name) for name in hashed}
    assert meta["dtype"] == "uint16" and meta["code"] == "drop" and meta["split"] == "tail"
    assert meta["sources"] == [str(posts)] and meta["seed"] == 1337 and meta["val_fraction"] == 0.1
    assert "bricklm_version" in meta and "out" not in meta
    assert sorted(os.listdir(out)) == ["corpus.txt", "meta.json", "tokenizer.json", "train.bin", "val.bin"]

    text = report.format()
    for line in [
        "files read: 5 (1 decoded with a fallback encoding)",
        "2020-02-01-second.markdown: decoded as cp1252 (not valid UTF-8)",
        "files skipped: 2",
        "binary.md: binary (NUL byte in the first 8 KB)",
        "dead.md: broken symlink",
        "files ignored: 1 (extension: .png 1)",
        f"characters: {len(corpus):,}",
        f"vocabulary: {len(set(corpus))} characters",
        f"train tokens: {report.train_tokens:,}",
    ]:
        assert line in text


def test_code_keep_keeps_fenced_code(tmp_path):
    (tmp_path / "post.md").write_text("Text.\n\n```\ncode here\n```\n")
    prepare([tmp_path / "post.md"], tmp_path / "keep", PrepareConfig(code="keep"), log=quiet)
    prepare([tmp_path / "post.md"], tmp_path / "drop", log=quiet)
    assert (tmp_path / "keep" / "corpus.txt").read_text() == "Text.\n\n```\ncode here\n```"
    assert (tmp_path / "drop" / "corpus.txt").read_text() == "Text."


# What prepare wrote from make_jekyll_site before exports had readers (recorded on main at 203fdfd, before
# any change): every corpus prepared before must come out byte for byte the same.
BEFORE_READERS = {
    "documents": (
        "22a39a25fc079c5bf20281829febe9f077c9545e63f6d9795eb25045b6d1fe94",
        "1193877f054f5a0af2cdbd12fcef9e3fc03c90b20454c53b05c7e380283e02f3",
        "af7e20e40b1a6a976f9e08da931cba7fef9c2d463e1db143c46630ed3aa85afe",
    ),
    "tail": (
        "22a39a25fc079c5bf20281829febe9f077c9545e63f6d9795eb25045b6d1fe94",
        "4bdef51d40ab524688ac6ca47bf93cca531fd42474ba00f36f446c881f3521ff",
        "7e191b4b7564aff695fe076df714c77ee1aac1d726c26db791bbfecb5e808648",
    ),
    "keep": (
        "4244b3eb32ea1646aa2e9b52f00887a5103e7161dc4417eb49c7aabae05df9ec",
        "08a4a46283e6cd3c8df060c74c234d745be83d2412d0373f3bc99503ed9df830",
        "3a77c626da4768dfaa7a2cd854e5e39207af6ba3e49bf1263d12b3fe07b75cb6",
    ),
}
SETTINGS = {
    "documents": PrepareConfig(),
    "tail": PrepareConfig(split="tail"),
    "keep": PrepareConfig(code="keep", images="alt", tables="drop"),
}
# The blog's text (../shared/data beside the repository, when this machine has it), prepared with the defaults.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BLOG_BEFORE_READERS = (
    "167b22414ecf003064996cc2462a2a70058e93ba11450974eab858f1aed6d39b",
    "0d5e48f643c39ef6a3074b7d659989369e5d421297cfc24bb2b67923b95d04fb",
    "d0c2bd9e81e1d25a744b8c96065c591576a82f2eb2423c2acebfd0bc1b4a4f28",
)


def corpus_hashes(out):
    return tuple(sha256(out / name) for name in ("corpus.txt", "train.bin", "val.bin"))


@pytest.mark.parametrize("setting", sorted(BEFORE_READERS))
def test_prepare_writes_what_it_wrote_before_the_readers(tmp_path, setting):
    posts = make_jekyll_site(tmp_path)
    prepare([posts], tmp_path / "out", SETTINGS[setting], log=quiet)
    assert corpus_hashes(tmp_path / "out") == BEFORE_READERS[setting]


@pytest.mark.skipif(not (SHARED_DATA / "bdunagan.com.txt").is_file(), reason="../shared/data is not on this machine")
def test_the_blog_prepares_as_before_the_readers(tmp_path):
    prepare([SHARED_DATA / "bdunagan.com.txt"], tmp_path / "out", log=quiet)
    assert corpus_hashes(tmp_path / "out") == BLOG_BEFORE_READERS


def make_posts(root, n=30):
    """n documents of different lengths, each recognisable."""
    root.mkdir()
    docs = []
    for i in range(n):
        doc = f"Post {i:02d}. " + "words " * (i % 7 + 1) + "end"
        (root / f"post{i:02d}.md").write_text(doc)
        docs.append(doc)
    return docs


def test_documents_split_holds_out_whole_documents(tmp_path):
    docs = make_posts(tmp_path / "posts")
    report = prepare([tmp_path / "posts"], tmp_path / "data", log=quiet)
    train, val, tok, meta = load_corpus(tmp_path / "data")
    assert report.split == meta["split"] == "documents"

    held = [int(name[-5:-3]) for name in meta["val_documents"]]  # ".../post07.md" -> 7
    kept = [i for i in range(len(docs)) if i not in held]
    assert held and kept
    assert tok.decode(val) == "\n\n".join(docs[i] for i in held)
    assert tok.decode(train) == "\n\n".join(docs[i] for i in kept)
    held_chars = sum(len(docs[i]) for i in held)
    assert held_chars >= 0.1 * sum(map(len, docs))
    # It stops once the fraction is reached, so without its last pick (at most the longest) it was short.
    assert held_chars - max(len(docs[i]) for i in held) < 0.1 * sum(map(len, docs))
    assert f"{len(held)} of 30 documents held out" in report.format()


def test_documents_split_is_seeded(tmp_path):
    make_posts(tmp_path / "posts")

    def val_docs(seed, name):
        prepare(
            [tmp_path / "posts"], tmp_path / name, PrepareConfig(seed=seed), overwrite=True, log=quiet
        )  # "a" is made twice
        return json.loads((tmp_path / name / "meta.json").read_text())["val_documents"]

    assert val_docs(1, "a") == val_docs(1, "b")
    assert (tmp_path / "a" / "val.bin").read_bytes() == (tmp_path / "b" / "val.bin").read_bytes()
    assert val_docs(1, "a") != val_docs(2, "c")


def test_vocabulary_covers_the_whole_corpus_with_documents_split(tmp_path):
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "a.md").write_text("only in a: ÄÖ " * 20)
    (tmp_path / "posts" / "b.md").write_text("only in b: 🙂 " * 20)
    report = prepare([tmp_path / "posts"], tmp_path / "data", log=quiet)
    corpus = (tmp_path / "data" / "corpus.txt").read_text(encoding="utf-8")
    assert report.vocab_size == len(set(corpus))
    assert "🙂" in json.loads((tmp_path / "data" / "tokenizer.json").read_text(encoding="utf-8"))["chars"]


def test_tail_split_holds_out_the_last_tenth(tmp_path):
    make_posts(tmp_path / "posts")
    report = prepare([tmp_path / "posts"], tmp_path / "data", PrepareConfig(split="tail"), log=quiet)
    train, val, tok, meta = load_corpus(tmp_path / "data")
    corpus = (tmp_path / "data" / "corpus.txt").read_text()
    cut = int(0.9 * len(corpus))
    assert tok.decode(train) == corpus[:cut]
    assert tok.decode(val) == corpus[cut:]
    assert report.split == "tail" and meta["val_documents"] == []


def test_single_document_falls_back_to_tail_split(tmp_path):
    (tmp_path / "only.md").write_text("abcdefghij" * 10)
    report = prepare([tmp_path / "only.md"], tmp_path / "data", log=quiet)
    assert report.split == "tail" and report.split_requested == "documents"
    assert (report.train_tokens, report.val_tokens) == (90, 10)
    assert "only one document" in report.format()


def test_large_vocabulary_writes_uint32(tmp_path):
    # 20,992 CJK + 11,172 Hangul + 42,720 CJK Extension B characters: a vocabulary past 65,535.
    ranges = [(0x4E00, 0xA000), (0xAC00, 0xD7A4), (0x20000, 0x2A6E0)]
    text = "".join(chr(c) for lo, hi in ranges for c in range(lo, hi))
    (tmp_path / "wide.txt").write_text(text, encoding="utf-8")
    report = prepare([tmp_path / "wide.txt"], tmp_path / "data", PrepareConfig(split="tail"), log=quiet)
    assert report.vocab_size == len(text) > 65535
    assert report.dtype == "uint32"
    assert (tmp_path / "data" / "train.bin").stat().st_size == 4 * report.train_tokens
    train, val, tok, _ = load_corpus(tmp_path / "data")
    assert tok.decode(val) == text[int(0.9 * len(text)) :]


def test_rerun_does_not_read_its_own_output(tmp_path):
    (tmp_path / "post.md").write_text("Hello there.")
    prepare([tmp_path], tmp_path / "data", log=quiet)
    report = prepare([tmp_path], tmp_path / "data", overwrite=True, log=quiet)  # replacing a corpus needs overwrite
    assert (tmp_path / "data" / "corpus.txt").read_text() == "Hello there."
    assert report.files_ignored == {"output folder": 1}
    assert not [p for p in os.listdir(tmp_path / "data") if p.endswith(".tmp")]


def test_empty_folder_is_a_user_error_and_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no text found in .*empty"):
        prepare([tmp_path / "empty"], tmp_path / "data", log=quiet)
    assert not (tmp_path / "data").exists()


def test_folder_without_usable_text_is_a_user_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "photo.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "src" / "blank.md").write_text("---\ntitle: x\n---\n\n   \n{% include x %}\n")
    with pytest.raises(UserError, match=r"no text found in .*src \(1 files skipped, 1 ignored for their extension\)"):
        prepare([tmp_path / "src"], tmp_path / "out", log=quiet)
    assert not (tmp_path / "out").exists()
    # An --out holding other files is refused before any reading (a folder of a user's files is never replaced).
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("pre-existing")
    with pytest.raises(UserError, match=r"--out .*out is not empty and is not a bricklm corpus \(it holds keep.txt\)"):
        prepare([tmp_path / "src"], tmp_path / "out", log=quiet)
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"val_fraction": 0.0}, "val_fraction must be more than 0 and at most 0.5"),
        ({"val_fraction": 0.6}, "val_fraction must be"),
        ({"split": "random"}, "split must be one of documents, tail"),
        ({"code": "maybe"}, "code must be one of"),
        ({"builtin": "shakespeare"}, "unknown built-in corpus 'shakespeare'"),
    ],
)
def test_bad_options_are_user_errors(tmp_path, kwargs, message):
    builtin = kwargs.pop("builtin", None)
    with pytest.raises(UserError, match=message):
        prepare([], tmp_path / "data", PrepareConfig(**kwargs), builtin=builtin, log=quiet)


def test_missing_source_and_mixed_sources_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        prepare([tmp_path / "nope"], tmp_path / "data", log=quiet)
    (tmp_path / "a.md").write_text("x")
    with pytest.raises(UserError, match="not both"):
        prepare([tmp_path / "a.md"], tmp_path / "data", builtin="python-docs", log=quiet)


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "a.md").write_text("x")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="--out must be a folder"):
        prepare([tmp_path / "a.md"], tmp_path / "file", log=quiet)


def test_builtin_python_docs(tmp_path):
    report = prepare([], tmp_path / "data", log=quiet)  # no sources: the built-in corpus
    assert report.builtin == "python-docs" and report.sources == ["builtin:python-docs"]
    assert 70 <= report.documents <= 100
    assert 400_000 <= report.characters <= 530_000
    assert 90 <= report.vocab_size <= 120
    assert report.split == "documents" and report.val_documents
    assert 0.1 <= report.val_tokens / (report.train_tokens + report.val_tokens) <= 0.5
    train, val, tok, meta = load_corpus(tmp_path / "data")
    assert len(train) == report.train_tokens and np.asarray(train).max() < tok.vocab_size
    assert "source: built-in corpus python-docs" in report.format()


def test_cli_arguments_and_run(tmp_path, capsys):
    (tmp_path / "post.md").write_text("Hello [world](http://x).")
    parser = argparse.ArgumentParser()
    prepare_command.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "prepare",
            str(tmp_path / "post.md"),
            "--out",
            str(tmp_path / "data"),
            "--split",
            "tail",
            "--val-fraction",
            "0.25",
            "--seed",
            "7",
            "--code",
            "keep",
        ]
    )
    cfg = prepare_config(args)
    assert (args.sources, args.builtin, cfg.split, cfg.val_fraction, cfg.seed, cfg.code) == (
        [str(tmp_path / "post.md")],
        None,
        "tail",
        0.25,
        7,
        "keep",
    )
    assert args.func(args) == 0
    assert "characters: 12" in capsys.readouterr().out
    assert (tmp_path / "data" / "corpus.txt").read_text() == "Hello world."

    defaults = parser.parse_args(["prepare", "--out", "x"])
    cfg = prepare_config(defaults)
    assert (defaults.sources, cfg.split, cfg.val_fraction, cfg.seed, cfg.code) == (
        [],
        "documents",
        0.1,
        1337,
        "drop",
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "a.md"])  # --out is required


def test_prepare_settings_merge_defaults_then_recipe_then_flags(tmp_path, capsys):
    """`prepare --config` reads the recipe's [prepare] table, flags win, and the same recipe trains ([prepare] is a
    known table to every reader); an unknown key or value is one line naming it."""
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[prepare]\nsplit = "tail"\nseed = 7\n\n[model]\nn_layer = 2\n')
    parser = build_parser()
    cfg = prepare_config(parser.parse_args(["prepare", "--out", "x", "--config", str(recipe), "--seed", "9"]))
    assert (cfg.split, cfg.seed, cfg.code) == ("tail", 9, "drop")
    assert load_config(recipe)[0].n_layer == 2
    recipe.write_text("[prepare]\ncolour = 1\n")
    with pytest.raises(UserError, match="unknown key prepare.colour"):
        prepare_config(parser.parse_args(["prepare", "--out", "x", "--config", str(recipe)]))
    recipe.write_text('[prepare]\nsplit = "random"\n')
    with pytest.raises(UserError, match="prepare.split must be one of documents, tail"):
        prepare_config(parser.parse_args(["prepare", "--out", "x", "--config", str(recipe)]))


def test_the_source_settings_come_from_a_recipe_or_flags(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[prepare]\ntitles = "keep"\ninclude_drafts = true\narchive_max_ratio = 500\n')
    parser = build_parser()
    cfg = prepare_config(parser.parse_args(["prepare", "--out", "x", "--config", str(recipe), "--comments"]))
    assert (cfg.titles, cfg.include_drafts, cfg.comments, cfg.archive_max_ratio) == ("keep", True, True, 500)
    assert (cfg.archive_max_member_mb, cfg.json_max_mb) == (1024, 256)
    cfg = prepare_config(parser.parse_args(["prepare", "--out", "x", "--config", str(recipe), "--no-include-drafts"]))
    assert cfg.include_drafts is False
    recipe.write_text('[prepare]\ntitles = "first"\n')
    with pytest.raises(UserError, match="prepare.titles must be one of drop, keep"):
        prepare_config(parser.parse_args(["prepare", "--out", "x", "--config", str(recipe)]))


# --- --tokenizer-from: a new corpus in an earlier run's (or corpus's) tokenizer ---------------------------------


def _writing(root: Path, name: str, *texts: str) -> Path:
    folder = root / name
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"post{i}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def old_corpus(tmp_path):
    src = _writing(tmp_path, "old", "the cat sat on the mat.\n" * 20, "a dog ran to the cat.\n" * 20)
    prepare([src], tmp_path / "c1", log=quiet)
    return tmp_path / "c1"


def test_tokenizer_from_adds_unknown_characters_after_the_old_ids(tmp_path, old_corpus):
    from bricklm.text.tokenizer import extends, load_tokenizer

    new = _writing(tmp_path, "new", "the café sat on a mat.\n" * 20, "Über the dog.\n" * 20)
    report = prepare([new], tmp_path / "c2", PrepareConfig(tokenizer_from=str(old_corpus)), log=quiet)
    old_tok, new_tok = load_tokenizer(old_corpus / "tokenizer.json"), load_tokenizer(tmp_path / "c2/tokenizer.json")
    assert new_tok.chars[: old_tok.vocab_size] == old_tok.chars and extends(new_tok, old_tok)
    assert new_tok.chars[old_tok.vocab_size :] == ["b", "f", "Ü", "é"]  # in code point order
    meta = json.loads((tmp_path / "c2/meta.json").read_text())
    assert meta["tokenizer_from"] == str(old_corpus) and meta["vocab_size"] == new_tok.vocab_size
    assert meta["unknown_chars"] == {"mode": "add", "characters": ["b", "f", "Ü", "é"], "dropped": 0}
    assert "4 characters it lacked added as new tokens" in report.format()
    train, val, tok, _ = load_corpus(tmp_path / "c2")
    text = (tmp_path / "c2/corpus.txt").read_text(encoding="utf-8")
    assert tok.decode(train) in text and tok.decode(val) in text and "é" in tok.decode(train) + tok.decode(val)


def test_tokenizer_from_drop_and_error(tmp_path, old_corpus):
    from bricklm.text.tokenizer import load_tokenizer

    new = _writing(tmp_path, "new", "the café sat.\n" * 20, "the cat sat.\n" * 20)
    cfg = PrepareConfig(tokenizer_from=str(old_corpus / "tokenizer.json"), unknown_chars="drop")
    report = prepare([new], tmp_path / "c2", cfg, log=quiet)
    assert load_tokenizer(tmp_path / "c2/tokenizer.json") == load_tokenizer(old_corpus / "tokenizer.json")
    assert report.unknown_chars == {"mode": "drop", "characters": ["f", "é"], "dropped": 40}
    # One document each side, so no separator is encoded; every "é" and "f" (40) left out, nothing else.
    assert report.train_tokens + report.val_tokens == report.characters - len("\n\n") - 40
    with pytest.raises(UserError, match=r"2 characters the tokenizer of .* lacks: 'f' \(U\+0066\), 'é'"):
        prepare([new], tmp_path / "c3", PrepareConfig(tokenizer_from=str(old_corpus), unknown_chars="error"))
    assert not (tmp_path / "c3").exists()


def test_tokenizer_from_a_bpe_run_has_nothing_unknown(tmp_path):
    from bricklm.text.tokenizer import load_tokenizer

    old = _writing(tmp_path, "old", "the cat sat on the mat.\n" * 30, "a dog ran to the cat.\n" * 30)
    prepare([old], tmp_path / "c1", PrepareConfig(tokenizer="bpe", vocab_size=300), log=quiet)
    new = _writing(tmp_path, "new", "naïve café, 東京 🐈\n" * 20, "the cat.\n" * 20)
    report = prepare([new], tmp_path / "c2", PrepareConfig(tokenizer_from=str(tmp_path / "c1")), log=quiet)
    assert report.tokenizer == "bpe" and report.unknown_chars["characters"] == []
    assert load_tokenizer(tmp_path / "c2/tokenizer.json") == load_tokenizer(tmp_path / "c1/tokenizer.json")
    assert "it knows every character of this writing (byte-level BPE)" in report.format()
    train, val, tok, _ = load_corpus(tmp_path / "c2")
    assert "🐈" in tok.decode(train) + tok.decode(val)


@pytest.mark.parametrize(
    "content", ['{"version": "1.0", "model": {"type": "BPE"}}', "not json", '{"type": "sentencepiece"}']
)
def test_tokenizer_from_a_file_that_is_not_bricklms_is_one_error_line(tmp_path, old_corpus, content, capsys):
    from bricklm.cli import main

    (tmp_path / "tok.json").write_text(content)
    new = _writing(tmp_path, "new", "the cat.\n" * 20)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert (
        main(["prepare", str(new), "--out", str(tmp_path / "c2"), "--tokenizer-from", str(tmp_path / "tok.json")]) == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bricklm: error: --tokenizer-from") and "not a bricklm" in err[0]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "c2").exists()
