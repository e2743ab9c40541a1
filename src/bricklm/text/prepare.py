"""`bricklm prepare`: turn writing into a corpus folder that `bricklm train` reads.

    bricklm prepare _posts notes/ --out data/blog          # your writing
    bricklm prepare export.xml vault.zip --out data/all     # a WordPress export, a zipped vault
    bricklm prepare --out data/pydocs                       # built-in: Python's reference docs
    bricklm prepare --explain _posts/2020-01-01-hello.md    # one file before and after cleaning
    prepare(["_posts"], "data/blog", PrepareConfig(split="tail"))   # the same from Python

gather (corpus.py, a reader per kind of source) -> clean -> write corpus.txt -> build vocabulary
-> split -> tokenize -> train.bin/val.bin -> meta.json. Documents are cleaned and written one at
a time (an export is streamed), then corpus.txt is read back one document (or chunk) at a time,
so memory holds one document, not the corpus.

The folder is built under a hidden name beside --out and swapped in whole (files.swap_in), under
a lock beside it (files.RunLock), like a checkpoint: two prepares into one folder can't mix their
files, and a crash leaves the old corpus or the new one. --out must be new, empty, or a corpus
prepare wrote (replaced only with overwrite=True); a folder holding anything else is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from itertools import chain
from pathlib import Path

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.files import (
    RunLock,
    atomic_write_json,
    check_out_dir,
    clean_swap,
    fsync_tree,
    make_dir,
    sha256_file,
    swap_in,
    temp_sibling,
)
from bricklm.text.archive import Archive, Limits, Member
from bricklm.text.corpus import BUILTINS, builtin_documents, read_sources, scan_sources
from bricklm.text.data import CORPUS_NAMES, TokenWriter, load_tokens, split_bytes, split_documents, tail_split_index
from bricklm.text.documents import Document, Skipped, display_path
from bricklm.text.readers import described
from bricklm.text.report import PrepareReport
from bricklm.text.splits import SEPARATOR
from bricklm.text.streaming import build_tokenizer, char_progress, with_progress
from bricklm.text.tokenizer import grow, load_tokenizer, unknown_chars

CHUNK_CHARS = 1 << 20


def prepare(
    sources: list[str | Path],
    out: str | Path,
    config: PrepareConfig | None = None,
    *,
    builtin: str | None = None,
    overwrite: bool = False,
    log=print,
) -> PrepareReport:
    """Build a corpus folder at out from sources (files and folders), or from a built-in corpus.

    No sources and no builtin means builtin="python-docs". Writes corpus.txt, tokenizer.json,
    train.bin, val.bin and meta.json; returns the report. config: how to clean, split and tokenize
    (PrepareConfig's defaults if None; recipes.resolve_table merges one from a recipe and flags).
    overwrite: replace the corpus already in out (never anything else).
    """
    cfg = config or PrepareConfig()
    cfg.validate()  # a config built by hand is checked as one built from a recipe is
    sources = [str(s) for s in sources]
    if sources and builtin:
        raise UserError("give SRC paths or --builtin, not both")
    if not sources and builtin is None:
        builtin = "python-docs"
    if builtin is not None and builtin not in BUILTINS:
        raise UserError(f"unknown built-in corpus {builtin!r}; choose from: {', '.join(BUILTINS)}")
    out = Path(out)
    check_out_dir(out)
    _check_apart(out, sources)
    reused = reused_tokenizer(cfg.tokenizer_from) if cfg.tokenizer_from else None  # refused before any work
    report = PrepareReport(
        out=str(out),
        sources=[display_path(s) for s in sources] or [f"builtin:{builtin}"],
        builtin=builtin,
        code=cfg.code,
        images=cfg.images,
        tables=cfg.tables,
        titles=cfg.titles,
        include_drafts=cfg.include_drafts,
        comments=cfg.comments,
        split=cfg.split,
        split_requested=cfg.split,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        tokenizer=reused.kind if reused else cfg.tokenizer,
        bricklm_version=_version(),
    )
    if builtin:
        items = with_progress(builtin_documents(builtin))
    else:  # listed before the lock and temp folder exist beside out, which may be inside a source
        scan = scan_sources(sources, exclude=[out], limits=Limits.of(cfg))
        report.files_skipped = [{"path": s.path, "reason": s.reason} for s in scan.skipped]
        report.files_ignored = dict(scan.ignored)
        report.ignored_extensions = dict(scan.ignored_extensions)
        report.archives = scan.archives
        for file, reader in scan.readers.items():
            if reader.export:
                report.add_export(
                    file.name if isinstance(file, (Member, Archive)) else display_path(file), reader.label
                )
        items = chain.from_iterable(with_progress(read_sources(scan, cfg), scan.files))
    make_dir(out.parent, f"--out {out}: its parent")
    # The lock and the folder being built sit beside out, not in it: out is replaced whole at the end.
    with RunLock(out.parent, name=f".{out.name}.lock", doing="prepared", subject=out):
        for what in clean_swap(out, complete=lambda p: (p / "meta.json").is_file()):
            log(f"note: {out}: {what} (left by a prepare that was cut short)")
        replacing = _existing_corpus(out)
        if replacing and not overwrite:
            raise UserError(f"{out} already holds a corpus; add --overwrite to replace it, or pick a new --out")
        if not builtin:
            log(f"reading {len(scan.files)} files from {', '.join(report.sources)}")
        _build(items, out, cfg, report, reused)
    replaced = " (replacing the corpus that was there: --overwrite)" if replacing else ""
    log(f"wrote {out}/: {', '.join(CORPUS_NAMES)}{replaced}")
    return report


def _build(items, out: Path, cfg: PrepareConfig, report: PrepareReport, reused=None) -> None:
    """Write the corpus into a hidden folder beside out, then swap it in whole: a crash leaves the old or the new."""
    tmp = temp_sibling(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        names, lengths, chars = _write_corpus(items, tmp / "corpus.txt", report)
        if not lengths:
            raise UserError(_no_text_message(report))
        if reused is None:
            tok = encoder = build_tokenizer(cfg.tokenizer, chars, tmp / "corpus.txt", cfg.vocab_size)
        else:
            tok, encoder = _reuse(reused, chars, cfg, report)
        tok.save(tmp / "tokenizer.json")
        report.vocab_size = tok.vocab_size
        _write_splits(encoder, tmp / "corpus.txt", tmp / "train.bin", tmp / "val.bin", names, lengths, cfg, report)
        report.sha256["corpus.txt"] = sha256_file(tmp / "corpus.txt")
        report.sha256["tokenizer.json"] = sha256_file(tmp / "tokenizer.json")
        meta = {k: v for k, v in report.to_dict().items() if k != "out"}
        atomic_write_json(tmp / "meta.json", meta)
        fsync_tree(tmp)
        swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a swap; what a failure left otherwise


def reused_tokenizer(source: str | Path):
    """The tokenizer of a run or corpus folder (its tokenizer.json), or of a tokenizer.json file; one that is not
    bricklm's is a UserError naming it."""
    path = Path(source)
    path = path / "tokenizer.json" if path.is_dir() else path
    if not path.is_file():
        raise UserError(
            f"--tokenizer-from {source}: no tokenizer.json there (give a run or corpus folder, or the file)"
        )
    try:
        return load_tokenizer(path)
    except UserError as e:
        raise UserError(f"--tokenizer-from {source}: not a bricklm tokenizer ({e})") from None


def _reuse(base, chars: set[str], cfg: PrepareConfig, report: PrepareReport):
    """(the tokenizer to save, the one that encodes) for a reused tokenizer: unknown characters added after its
    ids, dropped while encoding, or refused, as cfg.unknown_chars says; the report counts them."""
    unknown = unknown_chars(base, chars)
    report.tokenizer_from = cfg.tokenizer_from
    report.unknown_chars = {"mode": cfg.unknown_chars, "characters": unknown, "dropped": 0}
    if not unknown:
        return base, base
    listed = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown[:20]) + (", ..." if len(unknown) > 20 else "")
    if cfg.unknown_chars == "error":
        raise UserError(
            f"the writing has {len(unknown)} characters the tokenizer of {cfg.tokenizer_from} lacks: {listed}; "
            "give --unknown-chars add (new tokens) or drop"
        )
    if cfg.unknown_chars == "add":
        grown = grow(base, unknown)
        return grown, grown
    return base, _Dropping(base, unknown, report)


class _Dropping:
    """Encodes with base after removing the characters it lacks, counting them in the report."""

    def __init__(self, base, unknown: list[str], report: PrepareReport):
        self.base, self.vocab_size, self.report = base, base.vocab_size, report
        self.table = dict.fromkeys(map(ord, unknown))

    def encode_array(self, text: str):
        kept = text.translate(self.table)
        self.report.unknown_chars["dropped"] += len(text) - len(kept)
        return self.base.encode_array(kept)

    def token_bytes(self):
        return self.base.token_bytes()


def _check_apart(out: Path, sources: list[str]) -> None:
    """out is replaced whole: it must not be, or hold, a source or the folder we run in."""
    target = os.path.realpath(out)
    named = [(f"the source {display_path(s)}", s) for s in sources] + [("the current folder", ".")]
    for what, path in named:
        real = os.path.realpath(path)
        if real == target or real.startswith(target.rstrip(os.sep) + os.sep):
            raise UserError(
                f"--out {out} {'is' if real == target else 'holds'} {what}; prepare replaces --out whole, "
                "so give it a folder of its own"
            )


def _existing_corpus(out: Path) -> bool:
    """True if out holds a corpus prepare wrote; False if it is absent or empty; a UserError if it holds
    anything else (a user's files must never be replaced, even with --overwrite)."""
    if not out.is_dir():
        return False
    names = {p.name for p in out.iterdir()}
    if not names:
        return False
    foreign = sorted(names - set(CORPUS_NAMES))
    if foreign or "meta.json" not in names or not _looks_like_meta(out / "meta.json"):
        shown = ", ".join(display_path(n) for n in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        why = f"it holds {shown}" if foreign else "it has no meta.json that prepare wrote"
        raise UserError(
            f"--out {out} is not empty and is not a bricklm corpus ({why}); prepare replaces --out whole, "
            "so give a new or empty folder"
        )
    return True


def _looks_like_meta(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("sha256"), dict) and "vocab_size" in meta


def _write_corpus(items, path: Path, report: PrepareReport) -> tuple[list[str], list[int], set[str]]:
    """Write the documents to corpus.txt one at a time; return their names, lengths and the character set."""
    names, lengths, chars = [], [], set()
    with open(path, "w", encoding="utf-8", newline="") as f:  # newline="": "\n" stays "\n" on every OS
        for item in items:
            if isinstance(item, Skipped):
                report.skip(item)
                continue
            assert isinstance(item, Document)
            if not report.read(item):
                continue
            if lengths:
                f.write(SEPARATOR)
                chars.update(SEPARATOR)
            f.write(item.text)
            chars.update(item.text)
            names.append(item.name)
            lengths.append(len(item.text))
    report.documents = len(lengths)
    report.characters = sum(lengths) + len(SEPARATOR) * max(len(lengths) - 1, 0)
    return names, lengths, chars


def _write_splits(
    tokenizer, corpus_path: Path, train_path, val_path, names, lengths, cfg: PrepareConfig, report: PrepareReport
) -> None:
    """Read corpus.txt back piece by piece and write the train and val token files. The split asked for is
    cfg.split; the report records the one used (one document forces "tail")."""
    held_out = set()
    if cfg.split == "documents":
        held_out = set(split_documents(lengths, cfg.val_fraction, cfg.seed))
        if not held_out:
            report.split = "tail"
            report.split_note = (
                "only one document, so its end is held out instead"
                if len(lengths) == 1
                else "no document could be held out, so the end of the text is instead"
            )
    train = TokenWriter(train_path, tokenizer.vocab_size)
    val = TokenWriter(val_path, tokenizer.vocab_size)
    ok = False
    bar = char_progress(report.characters)
    try:
        with open(corpus_path, encoding="utf-8", newline="") as f:
            if report.split == "tail":
                # The cut is in characters, so a BPE token never straddles it; each side is encoded apart.
                cut, pos = tail_split_index(report.characters, cfg.val_fraction), 0
                while chunk := f.read(CHUNK_CHARS):
                    chunk += f.readline(CHUNK_CHARS)  # end chunks at a line end: BPE merges don't span them
                    k = min(max(cut - pos, 0), len(chunk))
                    train.write(tokenizer.encode_array(chunk[:k]))
                    val.write(tokenizer.encode_array(chunk[k:]))
                    pos += len(chunk)
                    bar.update(len(chunk))
            else:
                separator = tokenizer.encode_array(SEPARATOR)
                for i, length in enumerate(lengths):
                    if i:
                        f.read(len(SEPARATOR))
                    writer = val if i in held_out else train
                    if writer.count:
                        writer.write(separator)
                    writer.write(tokenizer.encode_array(f.read(length)))
                    bar.update(length)
                report.val_documents = [names[i] for i in sorted(held_out)]
        ok = True
    finally:
        bar.close()
        train.close(keep=ok)
        val.close(keep=ok)
    report.train_tokens, report.val_tokens = train.count, val.count
    report.train_bytes = split_bytes(load_tokens(train_path), tokenizer) if train.count else 0
    report.val_bytes = split_bytes(load_tokens(val_path), tokenizer) if val.count else 0
    report.dtype = train.dtype.name
    report.sha256.update({"train.bin": train.sha256, "val.bin": val.sha256})


def _no_text_message(report: PrepareReport) -> str:
    where = ", ".join(report.sources)
    details = []
    if report.files_skipped:
        details.append(f"{len(report.files_skipped)} files skipped")
    if report.files_ignored.get("extension"):
        details.append(f"{report.files_ignored['extension']} ignored for their extension")
    if left_out := report.left_out_summary():
        details.append(f"left out of exports: {left_out}")
    tail = f" ({', '.join(details)})" if details else ""
    skipped = [f"{f['path']} ({f['reason']})" for f in report.files_skipped]
    named = f"; skipped: {', '.join(skipped[:3])}" + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    return f"no text found in {where}{tail}; bricklm reads {described()}" + (named if skipped else "")


def _version() -> str | None:
    try:
        return metadata.version("bricklm")
    except metadata.PackageNotFoundError:
        return None
