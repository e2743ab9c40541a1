"""Bad input, wide: hypothesis throws folders of hostile files at `bricklm prepare`, and hostile flag values
at `train`, `sample` and `prepare`.

Arbitrary bytes, text in several encodings (and broken UTF-16), huge single lines made of the
openers the cleaner's regexes look for, empty files, symlink loops, broken links, unreadable
files, FIFOs, names that aren't UTF-8, folders named like text files. Each example must end
in a corpus that loads or in a one-line `bricklm: error:`; never another exception, never a
hang (a watchdog fails the example after WATCHDOG_S). Bounded so the file runs in seconds.
"""

import contextlib
import os
import shutil
import signal
import tempfile
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bricklm.cli import main
from bricklm.text.data import load_corpus
from conftest import TINY_FLAGS

WATCHDOG_S = 30
EXTENSIONS = [".md", ".txt", ".html", ".markdown", ".htm", ".jpg", "", ".xml", ".ipynb", ".zip", ".json"]
# Openers that the cleaner scans from: a line of thousands of them must stay linear.
OPENERS = ["[", "![", "{{", "{%", "<a ", "<!--", "<script>", "`", "```", "&#", "](", "<", "---\n", "\r", "\u0301"]
OPENERS += ["{:", "[^", ":x:", "| a ", "> ", "- "]  # and the Markdown parser's: attribute lists, footnotes, ...
OPENERS += ["[[", "![[", "%%", "> [!note]\n"]  # and Obsidian's


def encoded(text: str, encoding: str) -> bytes:
    if encoding == "utf-16":
        return text.encode("utf-16")  # with a BOM
    if encoding == "broken-utf-16":
        return b"\xff\xfe" + text.encode("utf-8") + b"\xd8"  # a BOM, then not UTF-16 at all
    return text.encode(encoding, errors="replace")


contents = st.one_of(
    st.binary(max_size=3000),
    st.builds(
        encoded,
        st.text(max_size=800),
        st.sampled_from(["utf-8", "utf-16", "broken-utf-16", "latin-1", "cp1252", "utf-8-sig"]),
    ),
    st.builds(
        lambda op, n, tail: (op * n + tail).encode(),
        st.sampled_from(OPENERS),
        st.integers(1, 60_000),
        st.text(max_size=20),
    ),
    st.just(b""),
)

entry = st.one_of(
    st.tuples(st.just("file"), st.sampled_from(EXTENSIONS), contents),
    st.tuples(st.just("bad-name"), st.sampled_from(EXTENSIONS), contents),
    st.tuples(st.sampled_from(["loop", "self-link", "broken-link", "unreadable", "fifo", "dir-named-md", "empty-dir"])),
)


@contextlib.contextmanager
def watchdog(seconds):
    def hung(signum, frame):
        raise AssertionError(f"prepare took more than {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def build(root: Path, entries) -> None:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    for i, e in enumerate(entries):
        kind = e[0]
        if kind == "file":
            (src / "sub" / f"f{i}{e[1]}").write_bytes(e[2])
        elif kind == "bad-name":
            os.makedirs(os.fsencode(src) + b"/bad\xff", exist_ok=True)
            with open(os.fsencode(src) + f"/bad\xff/n\xfe{i}{e[1]}".encode("latin-1"), "wb") as fh:
                fh.write(e[2])
        elif kind == "loop":
            os.symlink("..", src / "sub" / f"loop{i}")
        elif kind == "self-link":
            os.symlink(f"self{i}.md", src / f"self{i}.md")
        elif kind == "broken-link":
            os.symlink("nowhere.md", src / f"broken{i}.md")
        elif kind == "unreadable":
            p = src / f"unreadable{i}.md"
            p.write_text("secret text " * 20)
            p.chmod(0)
        elif kind == "fifo":
            os.mkfifo(src / f"fifo{i}.txt")
        elif kind == "dir-named-md":
            (src / f"folder{i}.md").mkdir(exist_ok=True)
        elif kind == "empty-dir":
            (src / f"empty{i}").mkdir(exist_ok=True)


real_read_bytes = Path.read_bytes


def read_bytes_as_non_root(self):
    """chmod 0 doesn't stop root (these tests may run as root): refuse those files as the OS would."""
    if self.name.startswith("unreadable"):
        raise PermissionError(13, "Permission denied", str(self))
    return real_read_bytes(self)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is reproducible, not flaky
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(entries=st.lists(entry, max_size=6), split=st.sampled_from(["documents", "tail"]))
def test_prepare_makes_a_corpus_or_a_one_line_error(capsys, entries, split):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, entries)
        out = root / "corpus"
        with watchdog(WATCHDOG_S), mock.patch.object(Path, "read_bytes", read_bytes_as_non_root):
            code = main(["prepare", str(root / "src"), "--out", str(out), "--split", split])
        stdout, err = capsys.readouterr()
        if code == 0:
            train, val, tok, meta = load_corpus(out)
            assert len(train) + len(val) > 0 and tok.vocab_size > 0
            assert meta["characters"] >= len(train) + len(val) - 2  # separators aside, one token per character
        else:
            assert code == 1 and err.startswith("bricklm: error: ") and err.count("\n") == 1, err
            assert not out.exists() or not (out / "meta.json").exists()


def test_prepare_reports_each_hostile_entry(tmp_path, capsys):
    """One folder with one of everything: each is read or skipped with its reason, none crashes the run."""
    entries = [
        ("file", ".md", b"Hello there, a post of real text. " * 20),
        ("bad-name", ".txt", "caf\xe9 in latin-1 ".encode("latin-1") * 10),
        ("loop",),
        ("self-link",),
        ("broken-link",),
        ("unreadable",),
        ("fifo",),
        ("dir-named-md",),
        ("file", ".txt", b"\x00\x01binary" * 100),
        ("file", ".md", b"[" * 100_000),
    ]
    build(tmp_path, entries)
    with watchdog(WATCHDOG_S), mock.patch.object(Path, "read_bytes", read_bytes_as_non_root):
        assert main(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "corpus")]) == 0
    out = capsys.readouterr().out
    for reason in ("symlink loop", "broken symlink", "unreadable (Permission denied)", "not a regular file", "binary"):
        assert reason in out, reason
    assert "bad\\xff/n\\xfe1.txt: decoded as cp1252" in out  # the non-UTF-8 name, shown escaped
    load_corpus(tmp_path / "corpus")


def test_prepare_of_nothing_but_empty_files_is_a_clear_error(tmp_path, capsys):
    for i in range(3):
        (tmp_path / f"e{i}.md").write_bytes(b"")
    assert main(["prepare", str(tmp_path), "--out", str(tmp_path / "corpus")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: no text found") and err.count("\n") == 1


# --- the command line's flags ------------------------------------------------------------------------
#
# Hypothesis picks a few flags of `train`, `sample` and `prepare` and gives each a hostile value (nan, inf,
# negative, zero, 2**64, text where a number belongs, an unknown choice) on top of a tiny run's settings.
# Every example must end in exit 0, in argparse's usage error (exit 2), or in one `bricklm: error:` line.
# Values that would only make a run long (max_iters, eval_iters, sample_chars, grad_accum, max_new_tokens,
# num_samples) stay small; sizes may be huge, since a huge model, batch or window must be refused before
# any work. --compile is left out: on a CPU it can take minutes to fall back.

SMALL = st.sampled_from(["-1", "0", "1", "2", "3"])
SIZE = st.sampled_from(["-1", "0", "1", "2", "3", "7", str(2**40), str(2**64), "x"])
FLOAT = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e-12", "0.5", "1", "1e300", "x"])
SEED = st.sampled_from(["-1", "0", "7", str(2**32), str(2**64), "x"])


def choices(*valid: str):
    return st.sampled_from([*valid, "nonsense"])


SWITCH = st.none()  # a flag without a value
TRAIN_FLAGS = {
    "--n-layer": SIZE,
    "--n-head": SIZE,
    "--n-embd": SIZE,
    "--block-size": SIZE,
    "--batch-size": SIZE,
    "--vocab-size": SIZE,
    "--eval-interval": SIZE,
    "--warmup-iters": SIZE,
    "--keep-last": SIZE,
    "--max-nonfinite-steps": SIZE,
    "--early-stop": SIZE,
    "--threads": SIZE,
    "--dist-timeout": SIZE,
    "--max-iters": SMALL,
    "--eval-iters": SMALL,
    "--sample-chars": SMALL,
    "--grad-accum": SMALL,
    "--seed": SEED,
    "--learning-rate": FLOAT,
    "--min-lr": FLOAT,
    "--dropout": FLOAT,
    "--weight-decay": FLOAT,
    "--beta1": FLOAT,
    "--beta2": FLOAT,
    "--grad-clip": FLOAT,
    "--max-seconds": FLOAT,
    "--target-val-loss": FLOAT,
    "--attention": choices("manual", "torch_mha", "sdpa", "none"),
    "--positional": choices("learned", "none"),
    "--norm": choices("layernorm", "none"),
    "--residual": choices("on", "off", "bug"),
    "--activation": choices("gelu", "relu"),
    "--schedule": choices("cosine", "constant"),
    "--dtype": choices("float32", "bfloat16"),
    "--device": choices("cpu", "cuda", "mps"),
    "--adamw": choices("auto", "fused", "foreach", "plain"),
    "--loss-levels": st.sampled_from(["", "4,3", "nan", "-1", "a,b", "1e309", ",,,"]),
    "--tie-weights": SWITCH,
    "--bias": SWITCH,
    "--eval-full": SWITCH,
    "--log-health": SWITCH,
    "--fsdp": SWITCH,
    "--recompute-activations": SWITCH,
    "--recompute-attention": SWITCH,
    "--no-eval-samples": SWITCH,
    "--no-memory-check": SWITCH,
}
SAMPLE_FLAGS = {
    "--max-new-tokens": SMALL,
    "--num-samples": SMALL,
    "--temperature": FLOAT,
    "--top-k": SIZE,
    "--top-p": FLOAT,
    "--seed": SEED,
    "--prompt": st.text(max_size=12),
    "--no-cache": SWITCH,
    "--device": choices("cpu", "auto"),
    "--checkpoint": st.sampled_from(["best", "last", "step-000000003", "step-9", "..", "../../x", "", "checkpoints"]),
}
PREPARE_FLAGS = {
    "--val-fraction": FLOAT,
    "--seed": SEED,
    "--split": choices("documents", "tail"),
    "--code": choices("drop", "keep"),
    "--tokenizer": choices("char", "bpe"),
    "--overwrite": SWITCH,
    "--vocab-size": st.sampled_from(["-1", "0", "255", "256", "300", str(2**32), str(2**64)]),
    "--tokenizer-from": st.sampled_from(["", ".", "/", "missing", "/dev/null", "src/post.md"]),
    "--unknown-chars": choices("add", "drop", "error"),
}
OUTS = ["new", "a corpus", "a file", "through a file", "the source", "a folder of notes"]


def some_flags(spec: dict):
    """A few of spec's flags with values, as argv (`--flag=value`, so a value may start with a dash)."""

    def argv(names):
        values = st.tuples(*(spec[n] for n in names))
        return values.map(lambda vs: [n if v is None else f"{n}={v}" for n, v in zip(names, vs, strict=True)])

    return st.lists(st.sampled_from(sorted(spec)), min_size=1, max_size=4, unique=True).flatmap(argv)


def ends_cleanly(capsys, argv: list[str]) -> int:
    """Run the command; it must exit 0, 2 (argparse's usage error) or 1 with one error line."""
    try:
        with watchdog(WATCHDOG_S):
            code = main(argv)
    except SystemExit as exc:
        code = exc.code
        assert code == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    if code == 1:
        assert err.startswith("bricklm: error: ") and err.count("\n") == 1, (argv, err)
    else:
        assert code in (0, 2), (argv, code, err)
    return code


FUZZ = dict(derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.slow
@settings(max_examples=16, deadline=timedelta(seconds=20), **FUZZ)
@given(flags=some_flags(TRAIN_FLAGS))
def test_train_flags_end_cleanly(tiny_corpus, capsys, flags):
    with tempfile.TemporaryDirectory() as tmp:
        ends_cleanly(capsys, ["train", "--data", str(tiny_corpus), "--out", f"{tmp}/run", *TINY_FLAGS, *flags])


@settings(max_examples=25, deadline=timedelta(seconds=5), **FUZZ)
@given(flags=some_flags(SAMPLE_FLAGS))
def test_sample_flags_end_cleanly(tiny_run, capsys, flags):
    ends_cleanly(capsys, ["sample", "--run", str(tiny_run), "--max-new-tokens", "5", *flags])


@settings(max_examples=20, deadline=timedelta(seconds=10), **FUZZ)
@given(flags=some_flags(PREPARE_FLAGS), out=st.sampled_from(OUTS))
def test_prepare_flags_end_cleanly(tiny_corpus, capsys, flags, out):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "src"
        src.mkdir()
        (src / "post.md").write_text("A post with enough words to split and tokenize. " * 40)
        target = {
            "new": root / "corpus",
            "a corpus": root / "old",
            "a file": root / "notes.txt",
            "through a file": root / "notes.txt" / "corpus",
            "the source": src,
            "a folder of notes": root / "mine",
        }[out]
        shutil.copytree(tiny_corpus, root / "old")
        (root / "notes.txt").write_text("mine\n")
        (root / "mine").mkdir()
        (root / "mine" / "novel.md").write_text("mine\n")
        kept = {p: p.read_bytes() for p in [root / "notes.txt", root / "mine" / "novel.md"]}
        if ends_cleanly(capsys, ["prepare", str(src), "--out", str(target), *flags]) == 0:
            load_corpus(target)
        assert {p: p.read_bytes() for p in kept} == kept  # a user's files are never touched
