"""The studio's copying side: each run's copying index, the privacy guard (--max-copied) and the highlight.

    copying = Copying(runs, max_copied=60)        # None: no guard
    copying.check_start()                         # UserError: a run whose chance length is over 60
    guard = copying.guard(run, tokenizer, prompt) # ApiError 403 when the run has no index to guard with
    for token in generate(..., veto=guard.veto): ...   # guard.stopped: it ended generation
    copying.spans(run, text)                      # {"min_span", "longest", "spans"} for the page's highlight
    copying.excerpt(run, position, length)        # the training text around a span

Where an index is read: a run's own copying/ folder, or its base run's for a fine-tuned run (as every
command reads it). The guard may follow a base run wherever the run's config names it: it only ever
withholds text. What shows training text (spans' documents, excerpts) reads only an index inside the
runs folder, and only in `bricklm studio` without the guard: `bricklm serve` is for sharing a model,
and with the guard on an excerpt would hand out what the guard withholds. Indexes are opened once
(memory-mapped, read-only) and kept while their index.json stays.
"""

from __future__ import annotations

import threading
from pathlib import Path

from bricklm.errors import UserError
from bricklm.storage.copying import COPYING, run_index
from bricklm.storage.runs import read_run_config
from bricklm.studio.api import ApiError
from bricklm.studio.models import inside_names
from bricklm.studio.runsdir import Run, RunsDir
from bricklm.text.copyguard import CopyGuard
from bricklm.text.copyindex import INDEX, MIN_SPAN, SUFFIXES, TEXT, CopyIndex

TRIES = 4  # a refused token is picked again, without it, this many times before generation stops
MAX_EXCERPT = 400  # characters of training text either side of a span, at most
MAX_SPAN = 4096  # characters of the span itself, at most
WINDOW = 8  # tokens decoded before a new one: enough for the longest character a token may finish


class TokenGuard:
    """One generation's guard, token by token: `veto` for generate(); `stopped` once it ended generation."""

    def __init__(self, index: CopyIndex, most: int, tokenizer, before: str, skip=(), tries: int = TRIES):
        self.guard, self.tokenizer, self.skip = CopyGuard(index, most, before), tokenizer, set(skip)
        self.tries = tries
        self.ids: list[int] = []
        self.refused = 0  # refusals since the last token let through

    @property
    def stopped(self) -> bool:
        return self.refused > 0  # generation ends right after a refusal only when every try was refused

    def veto(self, token: int) -> bool:
        """True refuses the token; False lets it through and counts its text as generated."""
        if token in self.skip:  # <|end|> and the like: no text
            self.refused = 0
            return False
        recent = self.ids[-WINDOW:]
        # A token may finish a character begun by earlier ones: hold back what doesn't decode yet.
        done = self.tokenizer.decode(recent).rstrip("\ufffd")
        now = self.tokenizer.decode([*recent, token]).rstrip("\ufffd")
        if not now.startswith(done) or not self.guard.add(now[len(done) :]):  # (a decoder that rewrote text: refuse)
            self.refused += 1
            return True
        self.ids.append(token)
        self.refused = 0
        return False


class Copying:
    """Each run's index, opened once; the guard's limit (None: off)."""

    def __init__(self, runs: RunsDir, max_copied: int | None = None):
        if max_copied is not None and max_copied < 1:
            raise UserError(f"--max-copied must be at least 1, got {max_copied}")
        self.runs, self.max_copied = runs, max_copied
        # Training text (excerpts, document names) is shown by `bricklm studio` without the guard only:
        # `bricklm serve` is for sharing a model, and with the guard an excerpt would hand out what it holds back.
        self.shows_text = max_copied is None and not runs.single_run
        self.tries = TRIES
        self.lock = threading.Lock()
        self.opened: dict[Path, tuple[float, CopyIndex]] = {}

    def index(self, run: Run, shown: bool) -> tuple[CopyIndex | None, str | None]:
        """(the run's index, None) or (None, why not). shown: it will show training text, so it must be
        inside the runs folder."""
        path = run.path
        try:
            for _ in range(8):  # a fine-tuned run's base, and its base's, ...
                base = read_run_config(path).get("finetune", {}).get("from")
                if not base:
                    break
                path = Path(base).resolve()
                if shown and self.runs.inside(path) is None:
                    return None, f"run {run.id!r} copies from a base run outside the runs folder"
        except UserError as exc:
            return None, f"run {run.id!r} has no readable config: {exc}"
        folder = path / COPYING
        if shown and any(self.runs.inside(folder / name) is None for name in (INDEX, TEXT, SUFFIXES)):
            return None, f"run {run.id!r} has no copying index in the runs folder"
        try:
            stamp = (folder / INDEX).stat().st_mtime
        except OSError:
            return None, f"run {run.id!r} has no copying index (it is built when training starts)"
        with self.lock:
            if folder in self.opened and self.opened[folder][0] == stamp:
                return self.opened[folder][1], None
            index, why = run_index(path, build=False)
            if index is None:
                return None, f"run {run.id!r}: {inside_names(str(why), self.runs.root)}"
            self.opened[folder] = (stamp, index)  # a replaced index's old map stays open for its readers
            return index, None

    def check_start(self) -> None:
        """With the guard on: a UserError naming the first run whose corpus matches held-out text by chance
        for longer than --max-copied (such a limit would refuse ordinary text); serving one run (`bricklm
        serve`), a UserError too if that run has no index to guard with."""
        if self.max_copied is None:
            return
        for run in self.runs.runs():
            index, why = self.index(run, shown=False)
            if index is None and self.runs.single_run:
                raise UserError(f"--max-copied needs the run's copying index, and {why}")
            self.refuse_below_chance(run, index)

    def refuse_below_chance(self, run: Run, index: CopyIndex | None) -> None:
        chance = index.chance_length if index is not None else None
        if chance is not None and self.max_copied < chance:
            raise UserError(
                f"--max-copied {self.max_copied} is below {chance}, the length held-out text of run {run.id!r} "
                f"already matches by chance in its corpus; give --max-copied {chance} or more"
            )

    def guard(self, run: Run, tokenizer, before: str, skip=()) -> TokenGuard | None:
        """A guard for one generation (None with the guard off); ApiError 403 if the run can't be guarded."""
        if self.max_copied is None:
            return None
        index, why = self.index(run, shown=False)
        if index is None:
            message = f"this server guards against reciting training text (--max-copied), and {why}"
            raise ApiError(403, message, "model", "copy_guard_unavailable")
        try:
            self.refuse_below_chance(run, index)
        except UserError as exc:
            raise ApiError(403, str(exc), "model", "copy_guard_unavailable") from None
        return TokenGuard(index, self.max_copied, tokenizer, before, skip, self.tries)

    def spans(self, run: Run, text: str) -> dict:
        """The copied spans of a generated text, for the highlight (blocking): spans of at least MIN_SPAN
        characters, or of more than the corpus's chance length if that is longer."""
        index, why = self.index(run, shown=self.shows_text)  # positions alone show no text
        if index is None:
            return {"available": False, "why": why}
        least = max(MIN_SPAN, (index.chance_length or 0) + 1)
        found = index.measure(text, min_span=least)
        if not self.shows_text:  # no excerpts to point at, and no names of documents
            spans = [{k: s[k] for k in ("start", "length")} for s in found.spans]
        else:
            spans = found.spans
        return {"available": True, "min_span": least, "longest": found.longest, "spans": spans}

    def excerpt(self, run: Run, position: int, length: int) -> dict:
        """The training text around a span (blocking); ApiError when it can't or mustn't be shown."""
        if not self.shows_text:
            why = "--max-copied guards it" if self.max_copied is not None else "`bricklm serve` is for sharing a model"
            raise ApiError(
                403, f"this server does not show training text ({why}); `bricklm studio` does", code="guarded"
            )
        index, why = self.index(run, shown=True)
        if index is None:
            raise ApiError(404, why, "model", "no_copying_index")
        try:
            return index.excerpt(position, min(length, MAX_SPAN), MAX_EXCERPT)
        except ValueError as exc:
            raise ApiError(400, str(exc), "position") from None
