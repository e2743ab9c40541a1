"""Models the studio serves: each checkpoint loaded once, verified, and kept in a small LRU cache.

    models = ModelCache(runs, capacity=4)
    served = models.get(run, "best")      # or "last", "step-000000600", "loss-2.50" (a snapshot)

`get` reads and verifies files, so it blocks: call it off the event loop. "best" and "last" are
resolved to a concrete checkpoint on every call, so a run that is still training is served from
its newest best checkpoint as soon as one appears, while a checkpoint already loaded stays cached
under its own name. Only names from the run's own listing (runsdir) are ever loaded: safetensors
and JSON, verified against the manifest, never a pickle.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from bricklm.errors import UserError
from bricklm.model.gpt import GPT
from bricklm.storage.runs import CONFIG, load_run
from bricklm.storage.snapshots import list_snapshots, load_snapshot_model
from bricklm.studio.runsdir import Run, RunsDir
from bricklm.text.tokenizer import ChatTokenizer, Tokenizer, load_tokenizer

NAMED = ("best", "last")


class NotFound(Exception):
    """The run has no such checkpoint (or none yet)."""


class LoadFailed(Exception):
    """The checkpoint exists but cannot be loaded (damaged, or pruned while it was read)."""


@dataclass
class Served:
    """A loaded model and what serving it needs."""

    run_id: str
    checkpoint: str  # a checkpoint directory ("step-000000600") or a snapshot ("loss-2.50")
    model: GPT
    tokenizer: Tokenizer

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    @property
    def chat(self) -> bool:
        """Fine-tuned by `bricklm finetune`: its vocabulary has the chat template's special tokens."""
        return isinstance(self.tokenizer, ChatTokenizer)


class ModelCache:
    """At most `capacity` loaded models, least recently used dropped first."""

    def __init__(self, runs: RunsDir, capacity: int = 4):
        if capacity < 1:
            raise ValueError("the model cache needs room for at least one model")
        self.runs, self.capacity = runs, capacity
        self.cache: OrderedDict[tuple[str, str, str], Served] = OrderedDict()
        self.lock = threading.Lock()  # guards `cache`
        self.loading = threading.Lock()  # one load at a time: two requests for a new model load it once

    def resolve(self, run: Run, which: str) -> str:
        """The concrete checkpoint or snapshot name that `which` means now; NotFound if there is none."""
        if which == "best":
            name = self.runs.best_checkpoint(run)
        elif which == "last":
            name = (self.runs.checkpoints(run) or [None])[-1]
        elif which.startswith("loss-"):
            name = which if which in self.runs.snapshots(run) else None
        else:
            name = which if which in self.runs.checkpoints(run) else None
        if name is None:
            what = "no complete checkpoint yet" if which in NAMED else f"no checkpoint or snapshot {which!r}"
            raise NotFound(f"run {run.id!r} has {what}")
        return name

    def get(self, run: Run, which: str = "best") -> Served:
        """The model for `which` checkpoint of `run`, loading it on first use (blocking)."""
        try:
            return self._get(run, which)
        except LoadFailed:
            if which not in NAMED:
                raise
            return self._get(run, which)  # pruned between listing and reading? "best" names another now

    def _get(self, run: Run, which: str) -> Served:
        name = self.resolve(run, which)
        key = (run.id, str(run.path), name)
        with self.lock:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        with self.loading:
            with self.lock:
                if key in self.cache:  # loaded by the request we waited for
                    return self.cache[key]
            try:
                served = self._load(run, name)
            except UserError as exc:
                raise LoadFailed(f"cannot load {run.id}@{name}: {inside_names(str(exc), self.runs.root)}") from None
        with self.lock:
            self.cache[key] = served
            while len(self.cache) > self.capacity:
                self.cache.popitem(last=False)
        return served

    def _load(self, run: Run, name: str) -> Served:
        if name.startswith("loss-"):
            if self.runs.file(run, CONFIG) is None or self.runs.file(run, "tokenizer.json") is None:
                raise UserError("its config.json or tokenizer.json is missing")
            snapshot = next((s for s in list_snapshots(run.path) if s["path"].name == name), None)
            if snapshot is None:
                raise UserError(f"snapshot {name} is gone")
            model = load_snapshot_model(run.path, snapshot)
            return Served(run.id, name, model, load_tokenizer(run.path / "tokenizer.json"))
        loaded = load_run(run.path, name)
        return Served(run.id, name, loaded.model, loaded.tokenizer)

    def loaded(self) -> list[str]:
        """`run@checkpoint` of every model in memory, oldest use first."""
        with self.lock:
            return [f"{s.run_id}@{s.checkpoint}" for s in self.cache.values()]


def inside_names(message: str, root: Path) -> str:
    """`message` with the runs folder's absolute path taken out: an error body names a file by its path in
    the folder ("blog/checkpoints/step-000000600/model.safetensors"), never where the server keeps it."""
    return message.replace(f"{root}{os.sep}", "").replace(str(root), ".")
