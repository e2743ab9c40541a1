"""What training has logged, followed as it grows, and the runs table's row of each run.

    live_runs = LiveRuns(runs)                # one per server: a LiveRun per run, shared by every page
    live = live_runs.get(run)                 # refreshed at most every REFRESH_S, reading only new bytes
    cursor, delta = live.since(cursor)        # what a live page has not seen yet ({"reset": True, ...} at first)
    describe(runs, run, live)                 # the runs table's row: config, parameters, best val loss, status

A trainer appends whole lines to metrics.jsonl and samples.jsonl, and `--resume` rewrites both from
scratch (a new file, renamed into place). storage.metrics.LogTail reads what was appended, line by
line with the checks every command applies, and says when a file started over; a LiveRun then
begins a new epoch so pages redraw instead of appending. config.json and summary.json are checked
by storage.runs too; a damaged one leaves its run in the table, without what the file would say.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bricklm.config import ModelConfig
from bricklm.errors import UserError
from bricklm.model.gpt import count_params
from bricklm.recipes import build
from bricklm.storage.metrics import METRICS, SAMPLES, LogTail
from bricklm.storage.runs import CONFIG, SUMMARY, check_run_config, check_summary, read_json_object
from bricklm.studio.runsdir import MAX_JSON_BYTES, Run, RunsDir

MAX_STEP_POINTS = 4000  # per-step losses kept per run; beyond it every other one is dropped
RATE_WINDOW = 50  # recent steps the tokens/s and ETA are measured over
REFRESH_S = 0.5  # one read of a run's files serves every page that asks within this


@dataclass
class Cursor:
    """How much of a LiveRun a page has seen."""

    epoch: int = -1
    evals: int = 0
    steps: int = 0
    samples: int = 0


class LiveRun:
    """One run's evaluations, per-step losses (thinned past MAX_STEP_POINTS) and samples, kept current."""

    def __init__(self, runs: RunsDir, run: Run):
        self.run = run
        self.metrics = LogTail(lambda: runs.file(run, METRICS))
        self.sample_file = LogTail(lambda: runs.file(run, SAMPLES))
        self.lock = threading.Lock()
        self.read_at = float("-inf")
        self._clear()

    def _clear(self) -> None:
        self.epoch = getattr(self, "epoch", -1) + 1
        self.evals: list[dict[str, float]] = []
        self.steps: list[tuple[int, float]] = []
        self.stride, self.seen_steps = 1, 0
        self.samples: list[dict[str, Any]] = []
        self.recent: deque[tuple[int, float]] = deque(maxlen=RATE_WINDOW)  # (step, training seconds)
        self.last_step = 0

    def refresh(self) -> None:
        """Read what was appended since the last refresh (at most once per REFRESH_S)."""
        with self.lock:
            if time.monotonic() - self.read_at < REFRESH_S:
                return
            self.read_at = time.monotonic()
            reset, records = self.metrics.read()
            reset_s, samples = self.sample_file.read()
            if reset or reset_s:  # `--resume` rewrote the logs: read both again from their start
                self._clear()
                self.metrics.restart()
                self.sample_file.restart()
                _, records = self.metrics.read()
                _, samples = self.sample_file.read()
            for rec in records:
                self._add_metric(rec)
            self.samples += [_sample(s) for s in samples]

    def _add_metric(self, rec: dict[str, Any]) -> None:
        """One checked line of metrics.jsonl (storage.metrics: its step is an integer, its losses numbers)."""
        step = rec["step"]
        self.last_step = max(self.last_step, step)
        if rec.get("eval"):
            self.evals.append(
                {"step": step, "train_loss": _number(rec["train_loss"]), "val_loss": _number(rec["val_loss"])}
            )
            return
        loss, seconds = _number(rec.get("loss")), _number(rec.get("time"))
        if loss is None:
            return  # a health line or another kind of record, or a skipped step
        if seconds is not None:
            self.recent.append((step, seconds))
        if self.seen_steps % self.stride == 0:
            self.steps.append((step, loss))
        self.seen_steps += 1
        if len(self.steps) > MAX_STEP_POINTS:  # thin out; pages start over from the thinned list
            self.steps, self.stride, self.epoch = self.steps[::2], self.stride * 2, self.epoch + 1

    def since(self, cursor: Cursor) -> tuple[Cursor, dict[str, Any] | None]:
        """What a page with this cursor hasn't seen: everything (reset) after a new epoch, else the new tail."""
        with self.lock:
            now = Cursor(self.epoch, len(self.evals), len(self.steps), len(self.samples))
            if cursor.epoch != self.epoch:
                return now, {"reset": True, "evals": self.evals[:], "steps": self.steps[:], "samples": self.samples[:]}
            if (cursor.evals, cursor.steps, cursor.samples) == (now.evals, now.steps, now.samples):
                return now, None
            return now, {
                "reset": False,
                "evals": self.evals[cursor.evals :],
                "steps": self.steps[cursor.steps :],
                "samples": self.samples[cursor.samples :],
            }

    def best(self) -> tuple[float | None, int | None]:
        """(best val loss, its step) among the evaluations so far."""
        scored = [e for e in self.evals if e["val_loss"] is not None]
        if not scored:
            return None, None
        b = min(scored, key=lambda e: e["val_loss"])
        return b["val_loss"], b["step"]

    def tokens_per_s(self, tokens_per_step: int) -> float | None:
        """Training throughput over the last RATE_WINDOW steps (training time only, as `time` in the log)."""
        with self.lock:
            if len(self.recent) < 2:
                return None
            (s0, t0), (s1, t1) = self.recent[0], self.recent[-1]
        return (s1 - s0) * tokens_per_step / (t1 - t0) if t1 > t0 and s1 > s0 else None


class LiveRuns:
    """The LiveRun of every run a page has asked about, by id."""

    def __init__(self, runs: RunsDir):
        self.runs = runs
        self.followed: dict[str, LiveRun] = {}
        self.lock = threading.Lock()

    def get(self, run: Run) -> LiveRun:
        """This run's LiveRun, refreshed if it is older than REFRESH_S (reads files: call it off the event loop)."""
        with self.lock:
            live = self.followed.get(run.id)
            if live is None or live.run.path != run.path:
                live = self.followed[run.id] = LiveRun(self.runs, run)
        live.refresh()
        return live


def _number(x) -> float | None:
    """A finite float from a log field, or None: NaN and inf (a skipped step, no evaluation yet) are not
    drawable and not JSON, and anything else is a torn or foreign record."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _sample(rec: dict[str, Any]) -> dict[str, Any]:
    text = rec.get("text")
    return {
        "step": rec["step"],
        "val_loss": _number(rec.get("val_loss")),
        "train_loss": _number(rec.get("train_loss")),
        "text": text if isinstance(text, str) else "",
    }


# --- the runs table's row ------------------------------------------------------------------------


def read_checked(runs: RunsDir, run: Run, name: str, check: Callable[[Any, Path], dict]) -> dict[str, Any]:
    """A run's config.json or summary.json, checked by storage.runs (check_run_config, check_summary), or {} if
    it is missing, outside the folder or damaged: the run stays in the table, without what the file would say."""
    path = runs.file(run, name)
    try:
        return check(read_json_object(path, name, MAX_JSON_BYTES), path) if path is not None else {}
    except UserError:
        return {}


def run_config(runs: RunsDir, run: Run) -> dict[str, Any]:
    """config.json checked, with its model table in today's terms ({} if it is missing or damaged)."""
    return read_checked(runs, run, CONFIG, check_run_config)


def tokens_per_step(config: dict[str, Any]) -> int:
    """Tokens one optimiser step learns from on one process (0 if the config doesn't say)."""
    train, model = config.get("train", {}), config.get("model", {})
    return train.get("batch_size", 0) * train.get("grad_accum", 1) * model.get("block_size", 0)


def parameters(config: dict[str, Any]) -> int | None:
    """The model's parameter count from its checked config, or None if that doesn't describe a model."""
    if "model" not in config:
        return None
    model = build(ModelConfig, config["model"], "model")  # check_run_config built it once already
    return count_params(model) if model.vocab_size > 0 else None  # no vocabulary: not a run's config


def mtime(path) -> float:
    """When a file was last written; 0 if it vanished since it was found (a run deleted under us)."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def describe(runs: RunsDir, run: Run, live: LiveRun) -> dict[str, Any]:
    """A run as the runs table and /api/runs show it."""
    config = run_config(runs, run)
    summary = read_checked(runs, run, SUMMARY, check_summary)
    status = runs.status(run)
    best_val, best_step = live.best()
    if status == "finished" and _number(summary.get("best_val_loss")) is not None:
        best_val, best_step = _number(summary["best_val_loss"]), summary["best_step"]
    max_iters = config.get("train", {}).get("max_iters")
    speed = live.tokens_per_s(tokens_per_step(config)) if status == "running" else _number(summary.get("tokens_per_s"))
    rate = speed / tokens_per_step(config) if speed and tokens_per_step(config) else None
    eta = (max_iters - live.last_step) / rate if status == "running" and rate and isinstance(max_iters, int) else None
    mtimes = [mtime(p) for p in (runs.file(run, METRICS), runs.file(run, CONFIG)) if p]
    return {
        "id": run.id,
        "name": run.name,
        "group": run.group,
        "group_kind": run.group_kind,
        "status": status,
        "chat": "finetune" in config,
        "config": {k: config[k] for k in ("model", "train", "finetune", "init_from") if k in config},
        "parameters": summary["parameters"] if summary else parameters(config),
        "best_val_loss": best_val,
        "best_step": best_step,
        "step": live.last_step,
        "max_iters": max_iters,
        "tokens_per_s": speed,
        "eta_s": max(0.0, eta) if eta is not None else None,
        "updated": max(mtimes, default=0.0),
        "checkpoints": runs.checkpoints(run),
        "snapshots": runs.snapshots(run),
    }
