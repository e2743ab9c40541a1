"""A run's copying index, RUN/copying/: built from the run's corpus when training starts, or on first use.

    index, why = run_index("runs/blog", log=print)   # (CopyIndex, None), or (None, one line saying why not)
    if index:
        print(index.measure(text).line())
        index.close()

The index (text/copyindex.py) lives in the run folder, so whatever reads a run reads only inside it. A run
trained before the index existed gets one the first time it is asked for, if the corpus its config.json
names (data.dir; RUN/corpus for the built-in one) is still there and still the corpus it trained on (the
sha256 of corpus.txt in config.json). A fine-tuned run copies from its base run's text: its base run's
index is used. build=False only reads: nothing is ever written then.
"""

from __future__ import annotations

import time
from pathlib import Path

from bricklm.errors import UserError
from bricklm.files import sha256_file
from bricklm.storage.runs import read_run_config
from bricklm.text.copyindex import INDEX, CopyIndex, build_index

COPYING = "copying"


def run_index(run_dir: str | Path, build: bool = True, log=print) -> tuple[CopyIndex | None, str | None]:
    """The run's index, built first if it is missing or was made from another corpus (and build is True).

    Returns (index, None), or (None, why) when there is none to be had; the caller closes the index. Only a
    run directory that can't be read at all is a UserError.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    base = config.get("finetune", {}).get("from")
    if base:
        if not Path(base).is_dir():
            return None, f"{run_dir} is fine-tuned from {base}, which is gone (moved or deleted)"
        return run_index(base, build, log)
    folder = run_dir / COPYING
    trained_on = config.get("data", {}).get("corpus_sha256")
    if (folder / INDEX).is_file():
        try:
            index = CopyIndex.open(folder)
        except UserError as exc:
            if not build:
                return None, str(exc)
        else:
            if trained_on in (None, index.info.get("corpus_sha256")):
                return index, None
            index.close()  # made from another corpus (a resume with other --data): made again below
    if not build:
        return None, f"{run_dir} has no copying index"
    return _build(run_dir, folder, config, trained_on, log)


def _build(run_dir: Path, folder: Path, config: dict, trained_on: str | None, log) -> tuple[CopyIndex | None, str]:
    named = config.get("data", {}).get("dir")
    corpus = next((Path(d) for d in (named, run_dir / "corpus") if d and (Path(d) / "corpus.txt").is_file()), None)
    if corpus is None:
        where = f" ({named})" if named else ""
        return None, (
            f"{run_dir} has no copying index, and the corpus it was trained on{where} is gone (moved or deleted); "
            "put it back to build the index"
        )
    digest = sha256_file(corpus / "corpus.txt")
    if trained_on and digest != trained_on:
        return None, f"{run_dir} has no copying index, and the corpus at {corpus} has changed since it trained there"
    start = time.perf_counter()
    try:
        index = build_index(corpus, folder, extra={"corpus_sha256": digest})
    except UserError as exc:
        return None, f"cannot index {corpus}: {exc}"
    except OSError as exc:
        return None, f"cannot write the copying index into {folder}: {exc.strerror or exc}"
    seconds = time.perf_counter() - start
    log(
        f"copying meter: indexed {index.info['characters']:,} characters of training text in {seconds:.1f} s ({folder})"
    )
    return index, None
